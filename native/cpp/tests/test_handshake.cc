// Inbound mTLS against the real server over loopback. Every positive case has negative twins
// that assert the reason: the contract's reason name in the handshake_rejected log line and in
// mtls_handshake_failures_total, and where TLS carries it, the alert the client received.
#include "support/harness.h"
#include "support/pki.h"
#include "support/test_client.h"

#include <gtest/gtest.h>

namespace zt {
namespace {

using test::as;
using test::ClientOptions;
using test::https_get;
using test::pki;
using test::ServiceUnderTest;

class HandshakeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Config cfg = test::test_config(pki().id_dir("service-a"));
    cfg.crl = pki().crl("crl.pem");
    svc_ = new ServiceUnderTest(cfg);
  }
  static void TearDownTestSuite() {
    delete svc_;
    svc_ = nullptr;
  }
  static ServiceUnderTest* svc_;
};
ServiceUnderTest* HandshakeTest::svc_ = nullptr;

TEST_F(HandshakeTest, test_good_client_tls13_gets_hello) {
  auto r = https_get(svc_->port(), "/hello", as(pki().id_dir("client")));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json["service"], "service-a");
  EXPECT_EQ(r.json["spiffe_id"], "spiffe://zt.lab/svc/service-a");
  EXPECT_EQ(r.json["serial"], pki().serial("service-a"));
  EXPECT_EQ(r.json["caller"], "spiffe://zt.lab/svc/client");
  EXPECT_EQ(r.json["caller_serial"], pki().serial("client"));
  EXPECT_EQ(r.json["tls_version"], "TLSv1.3");
}

TEST_F(HandshakeTest, test_good_client_tls12_gets_hello) {
  ClientOptions o = as(pki().id_dir("client"));
  o.max_version = TLS1_2_VERSION;
  auto r = https_get(svc_->port(), "/hello", o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.json["tls_version"], "TLSv1.2");
}

TEST_F(HandshakeTest, test_tls11_client_is_refused_as_protocol) {
  ClientOptions o = as(pki().id_dir("client"));
  o.min_version = TLS1_VERSION;
  o.max_version = TLS1_1_VERSION;
  auto r = https_get(svc_->port(), "/hello", o);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(svc_->wait_rejection("protocol").is_null());
}

TEST_F(HandshakeTest, test_server_presents_its_chain_and_serial) {
  std::string err;
  auto conn = test::TestConnection::open(svc_->port(), as(pki().id_dir("client")), &err);
  ASSERT_TRUE(conn) << err;
  EXPECT_EQ(conn->server_serial(), pki().serial("service-a"));
}

TEST_F(HandshakeTest, test_client_with_foreign_ca_bundle_rejects_server) {
  // Negative twin of the server-side check: our server is untrusted by another trust domain.
  ClientOptions o = as(pki().id_dir("client"));
  o.ca_file = pki().root() + "/foreign/bundle.pem";
  auto r = https_get(svc_->port(), "/hello", o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("certificate verify failed"), std::string::npos) << r.error;
}

struct Rejection {
  const char* name;
  const char* identity;  // "" = no client certificate
  int max_version;
  const char* reason;
  const char* alert;  // substring of the client's error, "" = don't check
};

class HandshakeRejection : public HandshakeTest, public ::testing::WithParamInterface<Rejection> {};

TEST_P(HandshakeRejection, test_rejected_client_gets_reason) {
  const Rejection& c = GetParam();
  ClientOptions o;
  if (*c.identity != '\0') o.identity_dir = pki().id_dir(c.identity);
  o.max_version = c.max_version;
  double before = svc_->metric("mtls_handshake_failures_total", {{"reason", c.reason}});
  auto r = https_get(svc_->port(), "/hello", o);
  EXPECT_FALSE(r.ok) << "status " << r.status;
  if (*c.alert != '\0') {
    EXPECT_NE(r.error.find(c.alert), std::string::npos) << r.error;
  }
  auto line = svc_->logs().wait_for("handshake_rejected", [&](const nlohmann::json& j) {
    return j.value("reason", "") == c.reason &&
           (*c.identity == '\0' || j.value("peer_serial", "") == pki().serial(c.identity));
  });
  ASSERT_FALSE(line.is_null()) << "no handshake_rejected line with reason " << c.reason;
  EXPECT_FALSE(line.value("detail", "").empty());
  EXPECT_NE(line.value("peer_addr", ""), "");
  EXPECT_TRUE(svc_->wait_metric("mtls_handshake_failures_total", {{"reason", c.reason}}, before + 1));
  EXPECT_GE(svc_->metric("mtls_handshakes_total", {{"result", "failure"}}), 1);
}

INSTANTIATE_TEST_SUITE_P(
    Twins, HandshakeRejection,
    ::testing::Values(
        Rejection{"no_client_cert_tls13", "", TLS1_3_VERSION, "no_client_cert", "certificate required"},
        Rejection{"no_client_cert_tls12", "", TLS1_2_VERSION, "no_client_cert", "handshake failure"},
        Rejection{"foreign_ca", "foreign", TLS1_3_VERSION, "untrusted", "unknown ca"},
        Rejection{"expired", "expired", TLS1_3_VERSION, "expired", "certificate expired"},
        Rejection{"not_yet_valid", "not-yet-valid", TLS1_3_VERSION, "expired", "bad certificate"},
        Rejection{"revoked_tls13", "revoked", TLS1_3_VERSION, "revoked", "certificate revoked"},
        Rejection{"revoked_tls12", "revoked", TLS1_2_VERSION, "revoked", "certificate revoked"},
        Rejection{"two_uri_sans", "two-uris", TLS1_3_VERSION, "bad_spiffe_id", ""},
        Rejection{"not_spiffe_uri", "not-spiffe", TLS1_3_VERSION, "bad_spiffe_id", ""},
        Rejection{"no_uri_san", "no-uri", TLS1_3_VERSION, "bad_spiffe_id", ""}),
    [](const ::testing::TestParamInfo<Rejection>& p) { return std::string(p.param.name); });

TEST_F(HandshakeTest, test_rejection_log_names_the_claimed_identity) {
  auto r = https_get(svc_->port(), "/hello", as(pki().id_dir("two-uris")));
  ASSERT_FALSE(r.ok);
  auto line = svc_->logs().wait_for("handshake_rejected", [](const nlohmann::json& j) {
    return j.contains("peer_spiffe_id") && j["peer_spiffe_id"] == "spiffe://zt.lab/svc/two-uris";
  });
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["reason"], "bad_spiffe_id");
  EXPECT_NE(line["detail"].get<std::string>().find("2 URI SANs"), std::string::npos) << line.dump();
}

// The log schema types peer_spiffe_id as spiffe://... or null: a presented certificate whose URI
// SAN is something else is named by its serial, its SPIFFE ID is null.
TEST_F(HandshakeTest, test_rejection_log_non_spiffe_uri_is_null_spiffe_id) {
  auto r = https_get(svc_->port(), "/hello", as(pki().id_dir("not-spiffe")));
  ASSERT_FALSE(r.ok);
  auto line = svc_->logs().wait_for("handshake_rejected", [](const nlohmann::json& j) {
    return j.contains("peer_serial") && j["peer_serial"] == pki().serial("not-spiffe");
  });
  ASSERT_FALSE(line.is_null());
  ASSERT_TRUE(line.contains("peer_spiffe_id")) << line.dump();
  EXPECT_TRUE(line["peer_spiffe_id"].is_null()) << line.dump();
}

TEST(HandshakeWithoutCrl, test_revoked_client_accepted_when_no_crl_configured) {
  // Positive twin of the revocation test: the CRL is what refuses `revoked`.
  ServiceUnderTest svc(test::test_config(pki().id_dir("service-a")));
  auto r = https_get(svc.port(), "/hello", as(pki().id_dir("revoked")));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.json["caller"], "spiffe://zt.lab/svc/revoked");
}

TEST(HandshakeCaAsLeaf, test_ca_certificate_as_client_leaf_is_bad_spiffe_id) {
  // A client that presents the intermediate CA itself (key and all): path validation passes
  // (it chains to the root) but a signing certificate never authenticates (X509-SVID 3.2).
  ServiceUnderTest svc(test::test_config(pki().id_dir("service-a")));
  std::string dir = test::make_temp_dir("zt-ca-leaf");
  std::filesystem::create_directories(dir + "/gen");
  std::filesystem::copy_file(pki().ca("intermediate.pem"), dir + "/gen/chain.pem");
  std::filesystem::copy_file(pki().ca("intermediate.key"), dir + "/gen/key.pem");
  std::filesystem::create_symlink("gen", dir + "/current");
  auto r = https_get(svc.port(), "/hello", as(dir));
  EXPECT_FALSE(r.ok);
  auto line = svc.wait_rejection("bad_spiffe_id");
  ASSERT_FALSE(line.is_null());
  EXPECT_NE(line["detail"].get<std::string>().find("CA"), std::string::npos) << line.dump();
  test::remove_tree(dir);
}

// Stale CRL (contracts section 3): refuse fails closed, warn fails open with an alarm.
TEST(StaleCrl, test_stale_crl_refuse_rejects_good_client) {
  Config cfg = test::test_config(pki().id_dir("service-a"));
  cfg.crl = pki().crl("crl-stale.pem");
  cfg.crl_stale = CrlStaleMode::Refuse;
  ServiceUnderTest svc(cfg);
  EXPECT_EQ(svc.metric("mtls_crl_stale"), 1);
  auto r = https_get(svc.port(), "/hello", as(pki().id_dir("client")));
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("certificate expired"), std::string::npos) << r.error;  // CRL_HAS_EXPIRED alert
  auto line = svc.wait_rejection("crl_stale");
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["peer_spiffe_id"], "spiffe://zt.lab/svc/client");
  auto stale = svc.logs().wait_for("crl_stale");
  ASSERT_FALSE(stale.is_null());
  EXPECT_EQ(stale["mode"], "refuse");
  EXPECT_FALSE(stale.value("next_update", "").empty());
  EXPECT_EQ(svc.logs().events("crl_stale").size(), 1u);  // once per transition, not per handshake
}

TEST(StaleCrl, test_stale_crl_warn_serves_good_client_and_alarms) {
  Config cfg = test::test_config(pki().id_dir("service-a"));
  cfg.crl = pki().crl("crl-stale.pem");
  cfg.crl_stale = CrlStaleMode::Warn;
  ServiceUnderTest svc(cfg);
  auto r = https_get(svc.port(), "/hello", as(pki().id_dir("client")));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(svc.metric("mtls_crl_stale"), 1);
  auto stale = svc.logs().wait_for("crl_stale");
  ASSERT_FALSE(stale.is_null());
  EXPECT_EQ(stale["mode"], "warn");
  // Failing open does not forget what the stale CRL says.
  auto revoked = https_get(svc.port(), "/hello", as(pki().id_dir("revoked")));
  EXPECT_FALSE(revoked.ok);
  EXPECT_FALSE(svc.wait_rejection("revoked").is_null());
}

TEST(StaleCrl, test_fresh_crl_is_not_stale) {
  Config cfg = test::test_config(pki().id_dir("service-a"));
  cfg.crl = pki().crl("crl.pem");
  ServiceUnderTest svc(cfg);
  EXPECT_EQ(svc.metric("mtls_crl_stale"), 0);
  EXPECT_TRUE(svc.logs().events("crl_stale").empty());
}

TEST(StartRefusals, test_foreign_signed_crl_refuses_to_start) {
  Config cfg = test::test_config(pki().id_dir("service-a"));
  cfg.crl = pki().crl("crl-foreign.pem");
  Service svc(cfg, [](const std::string&) {});
  auto st = svc.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().find("signature does not verify"), std::string::npos) << st.error();
}

TEST(StartRefusals, test_missing_configured_crl_refuses_to_start) {
  Config cfg = test::test_config(pki().id_dir("service-a"));
  cfg.crl = pki().crl("nope.pem");
  Service svc(cfg, [](const std::string&) {});
  EXPECT_FALSE(svc.start().ok());
}

TEST(StartRefusals, test_wrong_key_refuses_to_start) {
  Service svc(test::test_config(pki().id_dir("wrong-key")), [](const std::string&) {});
  auto st = svc.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().find("does not match"), std::string::npos) << st.error();
}

TEST(DefaultCrl, test_crl_pem_in_cert_dir_is_used_by_default) {
  test::ScratchIdentity scratch("service-a");
  test::write_file_atomic(scratch.dir() + "/crl.pem", test::read_text(pki().crl("crl.pem")));
  ServiceUnderTest svc(test::test_config(scratch.dir()));
  EXPECT_EQ(svc.service().state()->crl_path, scratch.dir() + "/crl.pem");
  EXPECT_FALSE(https_get(svc.port(), "/hello", as(pki().id_dir("revoked"))).ok);
  EXPECT_FALSE(svc.wait_rejection("revoked").is_null());
  EXPECT_TRUE(https_get(svc.port(), "/hello", as(pki().id_dir("client"))).ok);
}

TEST(RootCrl, test_root_crl_revoking_intermediate_refuses_every_leaf) {
  // The whole chain is checked where a root CRL exists.
  test::ScratchIdentity scratch("service-a");
  std::time_t now = std::time(nullptr);
  auto inter = test::load_cert(pki().ca("intermediate.pem"));
  auto root = test::load_cert(pki().ca("root.pem"));
  auto root_key = test::load_key(pki().ca("root.key"));
  auto inter_key = test::load_key(pki().ca("intermediate.key"));
  std::string crl = scratch.path("crl.pem");
  test::write_file_atomic(crl, test::make_crl_pem(inter.get(), inter_key.get(), {}, now - 60, now + 3600, 3) +
                                   test::make_crl_pem(root.get(), root_key.get(), {inter.get()}, now - 60, now + 3600, 1));
  Config cfg = test::test_config(scratch.dir());
  cfg.crl = crl;
  ServiceUnderTest svc(cfg);
  EXPECT_FALSE(https_get(svc.port(), "/hello", as(pki().id_dir("client"))).ok);
  auto line = svc.wait_rejection("revoked");
  ASSERT_FALSE(line.is_null());
  EXPECT_NE(line["detail"].get<std::string>().find("depth 1"), std::string::npos) << line.dump();
}

}  // namespace
}  // namespace zt
