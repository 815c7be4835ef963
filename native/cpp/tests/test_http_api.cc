// The HTTP API over completed mTLS connections (docs/contracts.md sections 4 and 5): routes,
// errors, keep-alive, and the authorisation hook (403 with a JSON reason, never a TLS failure).
#include "support/harness.h"
#include "support/pki.h"
#include "support/test_client.h"

#include <gtest/gtest.h>

#include <cmath>

namespace zt {
namespace {

using test::as;
using test::https_get;
using test::pki;
using test::ServiceUnderTest;

class HttpApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { svc_ = new ServiceUnderTest(test::test_config(pki().id_dir("service-a"))); }
  static void TearDownTestSuite() {
    delete svc_;
    svc_ = nullptr;
  }
  static ServiceUnderTest* svc_;
};
ServiceUnderTest* HttpApiTest::svc_ = nullptr;

TEST_F(HttpApiTest, test_unknown_path_is_404) {
  auto r = https_get(svc_->port(), "/nope", as(pki().id_dir("client")));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json["error"], "not_found");
  EXPECT_TRUE(r.json["reason"].is_string());
}

TEST_F(HttpApiTest, test_post_is_405) {
  std::string err;
  auto conn = test::TestConnection::open(svc_->port(), as(pki().id_dir("client")), &err);
  ASSERT_TRUE(conn) << err;
  auto r = conn->send_raw("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.json["error"], "method_not_allowed");
}

TEST_F(HttpApiTest, test_head_gets_headers_without_body) {
  std::string err;
  auto conn = test::TestConnection::open(svc_->port(), as(pki().id_dir("client")), &err);
  ASSERT_TRUE(conn) << err;
  ASSERT_TRUE(conn->write("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto head = conn->read_response(/*head_request=*/true);
  ASSERT_TRUE(head.ok) << head.error;
  EXPECT_EQ(head.status, 405);
  EXPECT_TRUE(head.body.empty());
  auto get = conn->read_response();  // framing intact: the next response parses
  ASSERT_TRUE(get.ok) << get.error;
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.json["caller"], "spiffe://zt.lab/svc/client");
}

TEST_F(HttpApiTest, test_keep_alive_serves_several_requests) {
  std::string err;
  auto conn = test::TestConnection::open(svc_->port(), as(pki().id_dir("client")), &err);
  ASSERT_TRUE(conn) << err;
  for (int i = 0; i < 5; ++i) {
    auto r = conn->get("/hello");
    ASSERT_TRUE(r.ok) << i << ": " << r.error;
    EXPECT_EQ(r.status, 200);
    EXPECT_FALSE(r.connection_close);
  }
  auto last = conn->get("/hello", /*keep_alive=*/false);
  ASSERT_TRUE(last.ok);
  EXPECT_TRUE(last.connection_close);
  EXPECT_TRUE(conn->wait_closed(2000));
}

TEST_F(HttpApiTest, test_pipelined_requests_are_answered_in_order) {
  std::string err;
  auto conn = test::TestConnection::open(svc_->port(), as(pki().id_dir("client")), &err);
  ASSERT_TRUE(conn) << err;
  ASSERT_TRUE(conn->write("GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(conn->read_response().status, 200);
  EXPECT_EQ(conn->read_response().status, 404);
  EXPECT_EQ(conn->read_response().status, 200);
}

TEST_F(HttpApiTest, test_request_is_logged_and_counted) {
  double before = svc_->metric("http_requests_total", {{"path", "/hello"}, {"code", "200"}});
  if (std::isnan(before)) before = 0;
  auto r = https_get(svc_->port(), "/hello?x=1", as(pki().id_dir("client")));
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(svc_->wait_metric("http_requests_total", {{"path", "/hello"}, {"code", "200"}}, before + 1));
  auto line = svc_->logs().wait_for("request", [](const nlohmann::json& j) {
    return j.value("path", "") == "/hello" && j.value("caller", "") == "spiffe://zt.lab/svc/client" &&
           j.value("method", "") == "GET";
  });
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["method"], "GET");
  EXPECT_EQ(line["status"], 200);
  EXPECT_TRUE(line["duration_ms"].is_number());
  for (const char* key : {"ts", "level", "component", "event"}) EXPECT_TRUE(line.contains(key)) << key;
  EXPECT_EQ(line["component"], "service-a");
  EXPECT_FALSE(line.contains("service")) << "the old key is replaced by component";
}

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("zt-policy");
    policy_ = dir_ + "/policy.json";
    test::write_file_atomic(policy_, R"({"version": 1, "rules": [
      {"caller": "spiffe://zt.lab/svc/client", "allow": ["/hello"]},
      {"caller": "spiffe://zt.lab/svc/service-*", "allow": ["*"]}
    ]})");
    Config cfg = test::test_config(pki().id_dir("service-a"));
    cfg.policy = policy_;
    svc_ = std::make_unique<ServiceUnderTest>(cfg);
  }
  void TearDown() override {
    svc_.reset();
    test::remove_tree(dir_);
  }
  std::string dir_;
  std::string policy_;
  std::unique_ptr<ServiceUnderTest> svc_;
};

TEST_F(PolicyTest, test_policy_allows_listed_path) {
  auto r = https_get(svc_->port(), "/hello", as(pki().id_dir("client")));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
}

TEST_F(PolicyTest, test_policy_denies_unlisted_path_with_403_json) {
  auto r = https_get(svc_->port(), "/call?target=https://127.0.0.1:1/", as(pki().id_dir("client")));
  ASSERT_TRUE(r.ok) << r.error;  // a completed TLS connection, not a handshake failure
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.json["error"], "forbidden");
  EXPECT_EQ(r.json["reason"],
            "spiffe://zt.lab/svc/client may not call GET /call on spiffe://zt.lab/svc/service-a");
  EXPECT_EQ(r.json["caller"], "spiffe://zt.lab/svc/client");
  EXPECT_EQ(r.json["callee"], "spiffe://zt.lab/svc/service-a");
  EXPECT_EQ(r.json["method"], "GET");
  EXPECT_EQ(r.json["path"], "/call");  // without the query string
  EXPECT_TRUE(svc_->wait_metric("mtls_policy_denials_total", {}, 1));
  auto line = svc_->logs().wait_for("policy_denied");
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["caller"], "spiffe://zt.lab/svc/client");
  EXPECT_EQ(line["callee"], "spiffe://zt.lab/svc/service-a");
  EXPECT_EQ(line["method"], "GET");
  EXPECT_EQ(line["path"], "/call");
  EXPECT_EQ(svc_->metric("mtls_handshakes_total", {{"result", "failure"}}), 0);
}

TEST_F(PolicyTest, test_policy_wildcard_caller_allowed_everything) {
  auto r = https_get(svc_->port(), "/hello", as(pki().id_dir("service-b")));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
  auto nf = https_get(svc_->port(), "/nope", as(pki().id_dir("service-b")));
  EXPECT_EQ(nf.status, 404);
}

TEST_F(PolicyTest, test_policy_unlisted_caller_denied_even_unknown_paths) {
  auto r = https_get(svc_->port(), "/nope", as(pki().id_dir("revoked")));  // no CRL here: a valid caller
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 403);
}

TEST(PolicyStart, test_bad_policy_refuses_to_start) {
  std::string dir = test::make_temp_dir("zt-policy");
  test::write_file_atomic(dir + "/p.json", R"({"version": 2, "rules": [{"caller": "*", "allow": ["*"]}]})");
  Config cfg = test::test_config(pki().id_dir("service-a"));
  cfg.policy = dir + "/p.json";
  Service svc(cfg, [](const std::string&) {});
  auto st = svc.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().find("policy"), std::string::npos) << st.error();
  test::remove_tree(dir);
}

// Version 2 (contract P): one mesh file; the callee is matched against our own SPIFFE ID, and
// methods count. The same file, loaded by service-a and service-b, decides differently.
TEST(PolicyV2, test_policy_v2_callee_method_and_path) {
  std::string dir = test::make_temp_dir("zt-policy");
  test::write_file_atomic(dir + "/mesh.json", R"({"version": 2, "rules": [
    {"caller": "spiffe://zt.lab/svc/client", "callee": "spiffe://zt.lab/svc/service-b",
     "methods": ["GET"], "paths": ["/hello", "/call"]},
    {"caller": "spiffe://zt.lab/svc/client", "callee": "spiffe://zt.lab/svc/service-a",
     "methods": ["GET"], "paths": ["/hello"]},
    {"caller": "spiffe://zt.lab/svc/service-*", "callee": "*", "methods": ["*"], "paths": ["*"]}
  ]})");
  Config a = test::test_config(pki().id_dir("service-a"));
  a.policy = dir + "/mesh.json";
  ServiceUnderTest svc_a(a);
  Config b = test::test_config(pki().id_dir("service-b"));
  b.name = "service-b";
  b.policy = dir + "/mesh.json";
  ServiceUnderTest svc_b(b);
  const auto client = as(pki().id_dir("client"));

  EXPECT_EQ(https_get(svc_a.port(), "/hello", client).status, 200);
  EXPECT_EQ(https_get(svc_b.port(), "/hello", client).status, 200);
  // /call: allowed on service-b (then 400: no target), denied on service-a.
  EXPECT_EQ(https_get(svc_b.port(), "/call", client).status, 400);
  auto denied = https_get(svc_a.port(), "/call", client);
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(denied.json["callee"], "spiffe://zt.lab/svc/service-a");
  // A method the rule does not list is denied before the 405 a POST would get.
  std::string err;
  auto conn = test::TestConnection::open(svc_a.port(), client, &err);
  ASSERT_TRUE(conn) << err;
  auto post = conn->send_raw("POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(post.status, 403) << post.body;
  EXPECT_EQ(post.json["method"], "POST");
  // The wildcard callee rule: service-b may do anything on service-a.
  EXPECT_EQ(https_get(svc_a.port(), "/nope", as(pki().id_dir("service-b"))).status, 404);
  auto line = svc_a.logs().wait_for("policy_denied", [](const nlohmann::json& j) { return j.value("method", "") == "POST"; });
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["callee"], "spiffe://zt.lab/svc/service-a");
  EXPECT_EQ(line["path"], "/hello");
  EXPECT_EQ(svc_a.metric("mtls_policy_denials_total"), 2);
  EXPECT_EQ(svc_b.metric("mtls_policy_denials_total"), 0);
  test::remove_tree(dir);
}

TEST(PolicyStart, test_empty_rules_deny_everything) {
  std::string dir = test::make_temp_dir("zt-policy");
  test::write_file_atomic(dir + "/p.json", R"({"version": 1, "rules": []})");
  Config cfg = test::test_config(pki().id_dir("service-a"));
  cfg.policy = dir + "/p.json";
  ServiceUnderTest svc(cfg);
  EXPECT_EQ(https_get(svc.port(), "/hello", as(pki().id_dir("client"))).status, 403);
  test::remove_tree(dir);
}

}  // namespace
}  // namespace zt
