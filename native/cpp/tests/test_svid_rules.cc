// The X509-SVID leaf rules OpenSSL's TLS purposes do not enforce (docs/svid-rules.md L-4, L-7,
// L-8, L-11), as attacks against the real service-a over loopback. Each broken leaf chains to
// our root through the test PKI's intermediate and carries a valid SPIFFE ID: it breaks
// exactly one rule (native/testpki/make_test_pki.py). Inbound, the caller is refused as
// `bad_spiffe_id` (log line and metric); outbound, /call refuses such an upstream with 502
// `upstream_tls` naming the rule. The twins: a conforming leaf is served both ways. And
// service-a refuses to start with such a leaf as its own identity.
#include "ossl.h"
#include "service.h"
#include "support/harness.h"
#include "support/pki.h"
#include "support/test_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <ostream>
#include <stdexcept>
#include <thread>

namespace zt {
namespace {

using test::as;
using test::https_get;
using test::pki;
using test::ServiceUnderTest;

struct BrokenLeaf {
  const char* rule;      // docs/svid-rules.md id, for the test name
  const char* identity;  // the test PKI identity breaking it
  const char* detail;    // substring of the refusal's detail
};

// The details name the rule as svid.cc states it.
constexpr BrokenLeaf kBrokenLeaves[] = {
    {"L4_empty_subject_san_not_critical", "empty-subject", "subjectAltName extension is not critical"},
    {"L7_key_usage_not_critical", "ku-not-critical", "key usage extension is not critical"},
    {"L8_key_agreement_without_digital_signature", "ku-key-agreement", "lacks digitalSignature"},
    {"L11_eku_client_auth_only", "eku-client-only", "lacks serverAuth or clientAuth"},
};

// gtest prints a failing parameter with this instead of its bytes.
void PrintTo(const BrokenLeaf& c, std::ostream* os) { *os << c.rule << " (" << c.identity << ")"; }

std::string case_name(const ::testing::TestParamInfo<BrokenLeaf>& p) { return p.param.rule; }

class SvidRulesInbound : public ::testing::TestWithParam<BrokenLeaf> {
 protected:
  static void SetUpTestSuite() { svc_ = new ServiceUnderTest(test::test_config(pki().id_dir("service-a"))); }
  static void TearDownTestSuite() {
    delete svc_;
    svc_ = nullptr;
  }
  static ServiceUnderTest* svc_;
};
ServiceUnderTest* SvidRulesInbound::svc_ = nullptr;

TEST_P(SvidRulesInbound, test_caller_breaking_the_rule_is_refused_as_bad_spiffe_id) {
  const BrokenLeaf& c = GetParam();
  double before = svc_->metric("mtls_handshake_failures_total", {{"reason", "bad_spiffe_id"}});
  auto r = https_get(svc_->port(), "/hello", as(pki().id_dir(c.identity)));
  EXPECT_FALSE(r.ok) << "served with status " << r.status;
  // The alert the existing bad-SVID path sends (X509_V_ERR_APPLICATION_VERIFICATION).
  EXPECT_NE(r.error.find("handshake failure"), std::string::npos) << r.error;
  auto line = svc_->logs().wait_for("handshake_rejected", [&](const nlohmann::json& j) {
    return j.value("peer_serial", "") == pki().serial(c.identity);
  });
  ASSERT_FALSE(line.is_null()) << "no handshake_rejected line for " << c.identity;
  EXPECT_EQ(line["reason"], "bad_spiffe_id") << line.dump();
  EXPECT_NE(line.value("detail", "").find(c.detail), std::string::npos) << line.dump();
  EXPECT_EQ(line["peer_spiffe_id"], pki().spiffe_id(c.identity));
  EXPECT_TRUE(svc_->wait_metric("mtls_handshake_failures_total", {{"reason", "bad_spiffe_id"}}, before + 1));
}

INSTANTIATE_TEST_SUITE_P(Twins, SvidRulesInbound, ::testing::ValuesIn(kBrokenLeaves), case_name);

TEST_F(SvidRulesInbound, test_conforming_caller_is_served) {
  auto r = https_get(svc_->port(), "/hello", as(pki().id_dir("client")));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json["caller"], pki().spiffe_id("client"));
}

// An upstream that presents the given identity's chain: a one-connection OpenSSL server on a
// thread (service-a itself refuses to start with a broken leaf). It answers one request with
// 200 {} after a completed handshake. Bounded by 5 s timeouts.
class OneShotUpstream {
 public:
  explicit OneShotUpstream(const std::string& identity) {
    ctx_.reset(SSL_CTX_new(TLS_server_method()));
    std::string gen = std::filesystem::canonical(pki().id_dir(identity) + "/current").string();
    if (!ctx_ || SSL_CTX_use_certificate_chain_file(ctx_.get(), (gen + "/chain.pem").c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_.get(), (gen + "/key.pem").c_str(), SSL_FILETYPE_PEM) != 1) {
      throw std::runtime_error("upstream: cannot load " + identity + ": " + drain_openssl_errors());
    }
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listen_fd_, 4) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      close(listen_fd_);
      throw std::runtime_error("upstream: cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { outcome_ = run(); });
  }
  ~OneShotUpstream() {
    if (thread_.joinable()) thread_.join();
    close(listen_fd_);
  }
  OneShotUpstream(const OneShotUpstream&) = delete;
  OneShotUpstream& operator=(const OneShotUpstream&) = delete;

  std::string url() const { return "https%3A%2F%2F127.0.0.1%3A" + std::to_string(port_) + "%2Fhello"; }
  // What the upstream observed (waits for its one connection to end).
  std::string outcome() {
    if (thread_.joinable()) thread_.join();
    return outcome_;
  }

 private:
  std::string run() {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return "no connection";
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return "accept failed";
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    SslPtr ssl(SSL_new(ctx_.get()));
    SSL_set_fd(ssl.get(), fd);
    std::string result;
    if (SSL_accept(ssl.get()) != 1) {
      result = "handshake failed: " + drain_openssl_errors();
    } else {
      result = serve(ssl.get());
    }
    ssl.reset();
    close(fd);
    return result;
  }

  static std::string serve(SSL* ssl) {
    std::string head;
    char buf[4096];
    while (head.find("\r\n\r\n") == std::string::npos) {
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) return "no request: " + drain_openssl_errors();
      head.append(buf, static_cast<size_t>(n));
    }
    static const std::string kResponse =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    SSL_write(ssl, kResponse.data(), static_cast<int>(kResponse.size()));
    SSL_shutdown(ssl);
    return "served";
  }

  SslCtxPtr ctx_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::string outcome_;
};

class SvidRulesOutbound : public ::testing::TestWithParam<BrokenLeaf> {
 protected:
  static void SetUpTestSuite() { svc_ = new ServiceUnderTest(test::test_config(pki().id_dir("service-a"))); }
  static void TearDownTestSuite() {
    delete svc_;
    svc_ = nullptr;
  }
  static test::HttpResult call_through(OneShotUpstream& upstream, const std::string& identity) {
    std::string expect = "spiffe%3A%2F%2Fzt.lab%2Fsvc%2F" + identity;
    return https_get(svc_->port(), "/call?target=" + upstream.url() + "&expect=" + expect,
                     as(pki().id_dir("client")));
  }
  static ServiceUnderTest* svc_;
};
ServiceUnderTest* SvidRulesOutbound::svc_ = nullptr;

TEST_P(SvidRulesOutbound, test_upstream_breaking_the_rule_is_502_upstream_tls) {
  const BrokenLeaf& c = GetParam();
  OneShotUpstream upstream(c.identity);
  auto r = call_through(upstream, c.identity);
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(r.json["error"], "upstream_tls") << r.body;
  std::string reason = r.json.value("reason", "");
  EXPECT_NE(reason.find("certificate verify failed"), std::string::npos) << r.body;
  EXPECT_NE(reason.find(c.detail), std::string::npos) << r.body;
  EXPECT_NE(upstream.outcome(), "served");
}

INSTANTIATE_TEST_SUITE_P(Twins, SvidRulesOutbound, ::testing::ValuesIn(kBrokenLeaves), case_name);

TEST_F(SvidRulesOutbound, test_conforming_upstream_is_served) {
  OneShotUpstream upstream("service-b");
  auto r = call_through(upstream, "service-b");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["peer"], pki().spiffe_id("service-b"));
  EXPECT_EQ(r.json["status"], 200);
  EXPECT_EQ(upstream.outcome(), "served");
}

// service-a's own identity obeys the same rules: it does not start with a broken leaf (a
// reload to one fails the same way, through the same load_identity).
TEST(SvidRulesOwnIdentity, test_service_refuses_to_start_with_a_leaf_breaking_each_rule) {
  for (const BrokenLeaf& c : kBrokenLeaves) {
    Service svc(test::test_config(pki().id_dir(c.identity)), [](const std::string&) {});
    auto st = svc.start();
    ASSERT_FALSE(st.ok()) << c.rule;
    EXPECT_NE(st.error().find("not a valid X509-SVID"), std::string::npos) << st.error();
    EXPECT_NE(st.error().find(c.detail), std::string::npos) << st.error();
  }
}

}  // namespace
}  // namespace zt
