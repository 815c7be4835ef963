// GET /call: an outbound mTLS request with service-a's identity to a second service instance
// (docs/contracts.md section 5). The target is the same server code started with another
// identity (service-b), so both directions of mutual TLS are exercised.
#include "net.h"
#include "support/harness.h"
#include "support/pki.h"
#include "support/test_client.h"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace zt {
namespace {

using test::as;
using test::https_get;
using test::pki;
using test::ServiceUnderTest;

std::string encode(const std::string& s) {
  std::string out;
  const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '.' || c == '_') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

class CallTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Config b = test::test_config(pki().id_dir("service-b"));
    b.name = "service-b";
    target_ = new ServiceUnderTest(b);
    Config a = test::test_config(pki().id_dir("service-a"));
    a.crl = pki().crl("crl.pem");
    a.handshake_timeout_ms = 1000;
    a.idle_timeout_ms = 1500;
    caller_ = new ServiceUnderTest(a);
  }
  static void TearDownTestSuite() {
    delete caller_;
    delete target_;
  }
  static test::HttpResult call(const std::string& target_url, const std::string& expect = "") {
    std::string q = "/call?target=" + encode(target_url);
    if (!expect.empty()) q += "&expect=" + encode(expect);
    return https_get(caller_->port(), q, as(pki().id_dir("client")));
  }
  static ServiceUnderTest* caller_;
  static ServiceUnderTest* target_;
};
ServiceUnderTest* CallTest::caller_ = nullptr;
ServiceUnderTest* CallTest::target_ = nullptr;

TEST_F(CallTest, test_call_reaches_expected_peer) {
  auto r = call(target_->url("/hello"), pki().spiffe_id("service-b"));
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["service"], "service-a");
  EXPECT_EQ(r.json["target"], target_->url("/hello"));
  EXPECT_EQ(r.json["peer"], "spiffe://zt.lab/svc/service-b");
  EXPECT_EQ(r.json["peer_serial"], pki().serial("service-b"));
  EXPECT_EQ(r.json["status"], 200);
  // The target saw service-a's identity: the outbound call is mutual TLS.
  EXPECT_EQ(r.json["response"]["service"], "service-b");
  EXPECT_EQ(r.json["response"]["caller"], "spiffe://zt.lab/svc/service-a");
  EXPECT_EQ(r.json["response"]["caller_serial"], pki().serial("service-a"));
  auto line = caller_->logs().wait_for("call", [](const nlohmann::json& j) { return j.value("result", "") == "success"; });
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["peer"], "spiffe://zt.lab/svc/service-b");
  EXPECT_TRUE(caller_->wait_metric("mtls_outbound_calls_total", {{"result", "success"}}, 1));
}

TEST_F(CallTest, test_call_wrong_spiffe_id_is_502_mismatch) {
  auto r = call(target_->url("/hello"), "spiffe://zt.lab/svc/not-b");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.json["error"], "peer_identity_mismatch");
  EXPECT_EQ(r.json["reason"], "expected spiffe://zt.lab/svc/not-b, got spiffe://zt.lab/svc/service-b");
  auto line = caller_->logs().wait_for("call", [](const nlohmann::json& j) { return j.value("result", "") == "failure"; });
  ASSERT_FALSE(line.is_null());
  EXPECT_TRUE(line.contains("reason"));
  EXPECT_TRUE(caller_->wait_metric("mtls_outbound_calls_total", {{"result", "failure"}}, 1));
}

TEST_F(CallTest, test_call_without_expectation_is_400) {
  auto r = call(target_->url("/hello"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json["error"], "bad_request");
}

TEST_F(CallTest, test_call_bad_requests_are_400) {
  for (const std::string& q : {std::string("/call"), std::string("/call?target=http%3A%2F%2F127.0.0.1%3A1%2F&expect=") +
                                                          encode(pki().spiffe_id("service-b")),
                               std::string("/call?target=") + encode(target_->url("/hello")) + "&expect=nope",
                               std::string("/call?target=%zz")}) {
    auto r = https_get(caller_->port(), q, as(pki().id_dir("client")));
    ASSERT_TRUE(r.ok) << q << ": " << r.error;
    EXPECT_EQ(r.status, 400) << q;
    EXPECT_EQ(r.json["error"], "bad_request") << q;
  }
}

TEST_F(CallTest, test_call_connection_refused_is_502_upstream_error) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  uint16_t port = local_port(fd);
  close(fd);  // nothing listens there now
  auto r = call("https://127.0.0.1:" + std::to_string(port) + "/hello", pki().spiffe_id("service-b"));
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.json["error"], "upstream_error");
}

TEST_F(CallTest, test_call_silent_upstream_is_504_timeout) {
  // Accepts TCP and never speaks TLS.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  listen(fd, 4);
  auto r = call("https://127.0.0.1:" + std::to_string(local_port(fd)) + "/hello", pki().spiffe_id("service-b"));
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(r.json["error"], "upstream_timeout");
  close(fd);
}

TEST_F(CallTest, test_call_revoked_upstream_is_502_upstream_tls) {
  Config c = test::test_config(pki().id_dir("revoked"));
  ServiceUnderTest revoked(c);
  auto r = call(revoked.url("/hello"), pki().spiffe_id("revoked"));
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.json["error"], "upstream_tls");
  EXPECT_NE(r.json["reason"].get<std::string>().find("certificate revoked"), std::string::npos) << r.body;
}

TEST_F(CallTest, test_call_foreign_upstream_is_502_upstream_tls) {
  // We refuse the upstream: its chain does not verify against our bundle.
  ServiceUnderTest foreign(test::test_config(pki().id_dir("foreign")));
  auto r = call(foreign.url("/hello"), "spiffe://other.lab/svc/foreign");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.json["error"], "upstream_tls") << r.body;
  EXPECT_NE(r.json["reason"].get<std::string>().find("certificate verify failed"), std::string::npos) << r.body;
}

TEST_F(CallTest, test_call_upstream_that_refuses_us_is_502_upstream_tls) {
  // The upstream refuses us: its CRL revokes service-a. In TLS 1.3 its alert arrives after
  // our side of the handshake completed; it is still a TLS failure, not a bad response.
  std::string dir = test::make_temp_dir("zt-call-crl");
  auto inter = test::load_cert(pki().ca("intermediate.pem"));
  auto key = test::load_key(pki().ca("intermediate.key"));
  auto a = test::load_cert(pki().id_dir("service-a") + "/cert.pem");
  std::time_t now = std::time(nullptr);
  test::write_file_atomic(dir + "/crl.pem", test::make_crl_pem(inter.get(), key.get(), {a.get()}, now - 60, now + 3600, 1));
  Config c = test::test_config(pki().id_dir("service-b"));
  c.crl = dir + "/crl.pem";
  ServiceUnderTest b(c);
  auto r = call(b.url("/hello"), pki().spiffe_id("service-b"));
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.json["error"], "upstream_tls") << r.body;
  EXPECT_NE(r.json["reason"].get<std::string>().find("certificate revoked"), std::string::npos) << r.body;
  EXPECT_FALSE(b.wait_rejection("revoked").is_null());
  test::remove_tree(dir);
}

TEST_F(CallTest, test_call_forwards_upstream_policy_denial) {
  std::string dir = test::make_temp_dir("zt-call-policy");
  test::write_file_atomic(dir + "/p.json", R"({"version": 1, "rules": []})");
  Config c = test::test_config(pki().id_dir("service-b"));
  c.policy = dir + "/p.json";
  ServiceUnderTest b(c);
  auto r = call(b.url("/hello"), pki().spiffe_id("service-b"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["status"], 403);
  EXPECT_EQ(r.json["response"]["error"], "forbidden");
  test::remove_tree(dir);
}

TEST(CallExpectPeer, test_call_uses_expect_peer_flag) {
  Config b = test::test_config(pki().id_dir("service-b"));
  ServiceUnderTest target(b);
  Config a = test::test_config(pki().id_dir("service-a"));
  a.expect_peer = pki().spiffe_id("service-b");
  ServiceUnderTest caller(a);
  auto ok = https_get(caller.port(), "/call?target=" + encode(target.url("/hello")), as(pki().id_dir("client")));
  ASSERT_EQ(ok.status, 200) << ok.body;
  // ?expect= overrides the flag.
  auto bad = https_get(caller.port(),
                       "/call?target=" + encode(target.url("/hello")) + "&expect=" + encode(pki().spiffe_id("x")),
                       as(pki().id_dir("client")));
  EXPECT_EQ(bad.status, 502);
  EXPECT_EQ(bad.json["error"], "peer_identity_mismatch");
}

}  // namespace
}  // namespace zt
