// TLS hardening (tracker issue 9), as attacks against the real server over loopback:
// on TLS 1.2 only forward-secret AEAD suites are offered (no CBC), and client-initiated
// renegotiation is refused. Each test asserts the reason the client and the server see.
#include "support/harness.h"
#include "support/one_shot_upstream.h"
#include "support/pki.h"
#include "support/test_client.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <string>

namespace zt {
namespace {

using test::as;
using test::ClientOptions;
using test::https_get;
using test::OneShotUpstream;
using test::pki;
using test::ServiceUnderTest;

// Every CBC suite OpenSSL 3 enables by default for TLS 1.2 with ECDHE, ECDSA or RSA
// authentication; each was accepted before the cipher list was narrowed.
constexpr char kCbcOnly[] =
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:"
    "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA";

class TlsHardeningTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { svc_ = new ServiceUnderTest(test::test_config(pki().id_dir("service-a"))); }
  static void TearDownTestSuite() {
    delete svc_;
    svc_ = nullptr;
  }
  static ClientOptions tls12_client() {
    ClientOptions o = as(pki().id_dir("client"));
    o.max_version = TLS1_2_VERSION;
    return o;
  }
  static ServiceUnderTest* svc_;
};
ServiceUnderTest* TlsHardeningTest::svc_ = nullptr;

TEST_F(TlsHardeningTest, test_tls12_client_offering_only_cbc_suites_is_refused) {
  ClientOptions o = tls12_client();
  o.tls12_ciphers = kCbcOnly;
  std::string err;
  auto conn = test::TestConnection::open(svc_->port(), o, &err);
  ASSERT_FALSE(conn) << "the server negotiated a CBC suite";
  // The server answers a ClientHello with no acceptable suite with handshake_failure (40).
  EXPECT_NE(err.find("sslv3 alert handshake failure"), std::string::npos) << err;
  auto line = svc_->wait_rejection("protocol");
  ASSERT_FALSE(line.is_null());
  EXPECT_NE(line["detail"].get<std::string>().find("no shared cipher"), std::string::npos) << line.dump();
}

TEST_F(TlsHardeningTest, test_tls12_client_offering_aead_suites_is_served) {
  // The twin: each AEAD family on its own is accepted (ECDSA identity here).
  for (const char* suite : {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                            "ECDHE-ECDSA-CHACHA20-POLY1305"}) {
    ClientOptions o = tls12_client();
    o.tls12_ciphers = suite;
    std::string err;
    auto conn = test::TestConnection::open(svc_->port(), o, &err);
    ASSERT_TRUE(conn) << suite << ": " << err;
    EXPECT_STREQ(SSL_get_cipher_name(conn->ssl()), suite);
    EXPECT_EQ(conn->get("/hello").status, 200) << suite;
  }
}

TEST_F(TlsHardeningTest, test_tls12_default_client_gets_an_aead_suite) {
  std::string err;
  auto conn = test::TestConnection::open(svc_->port(), tls12_client(), &err);
  ASSERT_TRUE(conn) << err;
  const SSL_CIPHER* cipher = SSL_get_current_cipher(conn->ssl());
  ASSERT_NE(cipher, nullptr);
  EXPECT_EQ(SSL_CIPHER_is_aead(cipher), 1) << SSL_CIPHER_get_name(cipher);
  EXPECT_EQ(SSL_CIPHER_get_kx_nid(cipher), NID_kx_ecdhe) << SSL_CIPHER_get_name(cipher);
}

TEST_F(TlsHardeningTest, test_client_initiated_renegotiation_is_refused) {
  std::string err;
  auto conn = test::TestConnection::open(svc_->port(), tls12_client(), &err);
  ASSERT_TRUE(conn) << err;
  ASSERT_EQ(conn->get("/hello").status, 200);

  // The attack: a renegotiating ClientHello on the established connection. Each one would
  // cost the server a full handshake for the price of a few bytes (CVE-2011-1473).
  SSL* ssl = conn->ssl();
  ERR_clear_error();
  ASSERT_EQ(SSL_renegotiate(ssl), 1) << "the test client itself refused to renegotiate";
  int rc = SSL_do_handshake(ssl);
  EXPECT_NE(rc, 1) << "the server renegotiated";
  // The server's no_renegotiation alert (100); OpenSSL's client turns it into this error.
  unsigned long e = ERR_peek_error();
  EXPECT_EQ(ERR_GET_REASON(e), SSL_R_NO_RENEGOTIATION) << drain_openssl_errors();
  ERR_clear_error();

  // The refusal cost the attacker its connection, nobody else anything.
  auto r = https_get(svc_->port(), "/hello", as(pki().id_dir("client")));
  EXPECT_EQ(r.status, 200) << r.error;
}

// The outbound side: an upstream an attacker controls, with service-b's real identity (so our
// /call verifies it and gets as far as TLS lets it).
test::HttpResult call_through(uint16_t caller_port, const OneShotUpstream& upstream) {
  return https_get(caller_port, "/call?target=" + upstream.url() + "&expect=spiffe%3A%2F%2Fzt.lab%2Fsvc%2Fservice-b",
                   as(pki().id_dir("client")));
}

TEST_F(TlsHardeningTest, test_outbound_call_to_cbc_only_upstream_is_refused) {
  OneShotUpstream upstream(
      "service-b",
      [](SSL_CTX* ctx) {
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_cipher_list(ctx, kCbcOnly);
      },
      [](SSL*) { return std::string("negotiated a CBC suite"); });
  auto r = call_through(svc_->port(), upstream);
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(r.json["error"], "upstream_tls") << r.body;
  // We offered no suite it accepts: it says so with handshake_failure.
  EXPECT_NE(r.json["reason"].get<std::string>().find("handshake failure"), std::string::npos) << r.body;
  EXPECT_NE(upstream.outcome().find("no shared cipher"), std::string::npos) << upstream.outcome();
}

TEST_F(TlsHardeningTest, test_outbound_call_refuses_upstream_initiated_renegotiation) {
  // The upstream asks us to renegotiate (HelloRequest) right after the handshake. We answer
  // no_renegotiation, which OpenSSL's server treats as fatal; had we renegotiated, it would
  // have answered 200.
  OneShotUpstream upstream("service-b", [](SSL_CTX* ctx) { SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION); },
                         [](SSL* ssl) -> std::string {
                           if (SSL_renegotiate(ssl) != 1 || SSL_do_handshake(ssl) != 1) {
                             return "could not send HelloRequest: " + drain_openssl_errors();
                           }
                           if (!OneShotUpstream::read_request_head(ssl)) return "no request: " + drain_openssl_errors();
                           char buf[256];
                           ERR_clear_error();
                           int n = SSL_read(ssl, buf, sizeof buf);  // drives the renegotiation, if any
                           if (n <= 0 && ERR_GET_REASON(ERR_peek_error()) == SSL_R_NO_RENEGOTIATION) {
                             ERR_clear_error();
                             return "peer refused renegotiation";
                           }
                           std::string errors = drain_openssl_errors();
                           if (SSL_renegotiate_pending(ssl) == 0) {
                             const std::string resp =
                                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                                 "Connection: close\r\n\r\n{}";
                             SSL_write(ssl, resp.data(), static_cast<int>(resp.size()));
                             return "renegotiated";
                           }
                           return "neither: " + errors;
                         });
  auto r = call_through(svc_->port(), upstream);
  EXPECT_EQ(upstream.outcome(), "peer refused renegotiation");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(r.json["error"], "upstream_tls") << r.body;
}

}  // namespace
}  // namespace zt
