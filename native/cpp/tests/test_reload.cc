// Reloads (docs/contracts.md section 2): all or nothing; new connections get the new
// material, open connections finish on the old; bad material keeps the old and is counted.
#include "identity.h"
#include "support/harness.h"
#include "support/pki.h"
#include "support/test_client.h"

#include <gtest/gtest.h>

#include <openssl/evp.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace zt {
namespace {

using test::as;
using test::https_get;
using test::pki;
using test::ScratchIdentity;
using test::ServiceUnderTest;

// A sha256sum line for `data` named bundle.pem, as the agent writes it.
std::string sha256_line(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", md[i]);
    hex += b;
  }
  return hex + "  bundle.pem\n";
}

std::string hello_serial(const ServiceUnderTest& svc) {
  auto r = https_get(svc.port(), "/hello", as(pki().id_dir("client")));
  return r.ok && r.status == 200 ? r.json.value("serial", "") : "error: " + r.error;
}

TEST(Reload, test_reload_rotated_identity_new_connections_see_new_serial) {
  ScratchIdentity scratch("service-a");
  ServiceUnderTest svc(test::test_config(scratch.dir()));
  const std::string old_serial = pki().serial("service-a");
  ASSERT_EQ(hello_serial(svc), old_serial);

  // A keep-alive connection opened before the reload.
  std::string err;
  auto open_conn = test::TestConnection::open(svc.port(), as(pki().id_dir("client")), &err);
  ASSERT_TRUE(open_conn) << err;
  ASSERT_EQ(open_conn->get("/hello").status, 200);

  std::string new_serial = scratch.rotate();
  ASSERT_TRUE(svc.service().reload("signal"));

  EXPECT_EQ(hello_serial(svc), new_serial);
  std::string err2;
  auto fresh = test::TestConnection::open(svc.port(), as(pki().id_dir("client")), &err2);
  ASSERT_TRUE(fresh) << err2;
  EXPECT_EQ(fresh->server_serial(), new_serial);  // the certificate presented in the handshake

  // The old connection keeps working, on the context it was made with.
  auto again = open_conn->get("/hello");
  ASSERT_TRUE(again.ok) << again.error;
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.json["serial"], old_serial);
  EXPECT_EQ(open_conn->server_serial(), old_serial);

  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "success"}}), 1);
  EXPECT_EQ(svc.metric("mtls_cert_info", {{"serial", new_serial}, {"spiffe_id", "spiffe://zt.lab/svc/service-a"}}), 1);
  EXPECT_TRUE(std::isnan(svc.metric("mtls_cert_info", {{"serial", old_serial}, {"spiffe_id", "spiffe://zt.lab/svc/service-a"}})));
  auto line = svc.logs().wait_for("reload");
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["result"], "success");
  EXPECT_EQ(line["old_serial"], old_serial);
  EXPECT_EQ(line["new_serial"], new_serial);
  EXPECT_EQ(line["trigger"], "signal");
}

TEST(Reload, test_reload_bad_material_keeps_old_identity_and_counts_failure) {
  ScratchIdentity scratch("service-a");
  ServiceUnderTest svc(test::test_config(scratch.dir()));
  const std::string old_serial = pki().serial("service-a");
  scratch.swap_in_generation_of("wrong-key");  // key.pem does not match chain.pem

  EXPECT_FALSE(svc.service().reload("signal"));
  EXPECT_EQ(hello_serial(svc), old_serial);
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "failure"}}), 1);
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "success"}}), 0);
  auto line = svc.logs().wait_for("reload");
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["result"], "failure");
  EXPECT_EQ(line["level"], "error");
  EXPECT_EQ(line["old_serial"], old_serial);
  EXPECT_NE(line["reason"].get<std::string>().find("does not match"), std::string::npos) << line.dump();

  // Good material again: the next reload succeeds.
  std::string new_serial = scratch.rotate();
  EXPECT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(hello_serial(svc), new_serial);
}

TEST(Reload, test_reload_expired_material_keeps_old_identity) {
  ScratchIdentity scratch("service-a");
  ServiceUnderTest svc(test::test_config(scratch.dir()));
  scratch.swap_in_generation_of("expired");
  EXPECT_FALSE(svc.service().reload("signal"));
  EXPECT_EQ(hello_serial(svc), pki().serial("service-a"));
}

TEST(Reload, test_reload_picks_up_new_crl) {
  ScratchIdentity scratch("service-a");
  std::string crl = scratch.path("crl.pem");
  test::write_file_atomic(crl, test::read_text(pki().crl("crl-empty.pem")));
  Config cfg = test::test_config(scratch.dir());
  cfg.crl = crl;
  ServiceUnderTest svc(cfg);
  EXPECT_EQ(svc.metric("mtls_crl_entries"), 0);
  ASSERT_TRUE(https_get(svc.port(), "/hello", as(pki().id_dir("revoked"))).ok);

  test::write_file_atomic(crl, test::read_text(pki().crl("crl.pem")));  // rename(2), as the agent does
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(svc.metric("mtls_crl_entries"), 1);
  EXPECT_FALSE(https_get(svc.port(), "/hello", as(pki().id_dir("revoked"))).ok);
  EXPECT_FALSE(svc.wait_rejection("revoked").is_null());
  EXPECT_FALSE(svc.logs().wait_for("crl_loaded", [](const nlohmann::json& j) { return j.value("entries", 0) == 1; }).is_null());
}

TEST(Reload, test_reload_bad_crl_keeps_previous_crl) {
  ScratchIdentity scratch("service-a");
  std::string crl = scratch.path("crl.pem");
  test::write_file_atomic(crl, test::read_text(pki().crl("crl.pem")));
  Config cfg = test::test_config(scratch.dir());
  cfg.crl = crl;
  ServiceUnderTest svc(cfg);
  test::write_file_atomic(crl, test::read_text(pki().crl("crl-foreign.pem")));
  EXPECT_FALSE(svc.service().reload("signal"));
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "failure"}}), 1);
  EXPECT_FALSE(https_get(svc.port(), "/hello", as(pki().id_dir("revoked"))).ok);  // still revoked
  EXPECT_TRUE(https_get(svc.port(), "/hello", as(pki().id_dir("client"))).ok);
}

TEST(Reload, test_reload_vanished_default_crl_keeps_previous_crl) {
  ScratchIdentity scratch("service-a");
  test::write_file_atomic(scratch.dir() + "/crl.pem", test::read_text(pki().crl("crl.pem")));
  ServiceUnderTest svc(test::test_config(scratch.dir()));
  std::filesystem::remove(scratch.dir() + "/crl.pem");
  EXPECT_FALSE(svc.service().reload("signal"));
  EXPECT_FALSE(https_get(svc.port(), "/hello", as(pki().id_dir("revoked"))).ok);
}

TEST(Reload, test_reload_stale_to_fresh_crl_clears_alarm) {
  ScratchIdentity scratch("service-a");
  std::string crl = scratch.path("crl.pem");
  test::write_file_atomic(crl, test::read_text(pki().crl("crl-stale.pem")));
  Config cfg = test::test_config(scratch.dir());
  cfg.crl = crl;
  ServiceUnderTest svc(cfg);
  EXPECT_EQ(svc.metric("mtls_crl_stale"), 1);
  EXPECT_FALSE(https_get(svc.port(), "/hello", as(pki().id_dir("client"))).ok);
  test::write_file_atomic(crl, test::read_text(pki().crl("crl.pem")));
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(svc.metric("mtls_crl_stale"), 0);
  EXPECT_TRUE(https_get(svc.port(), "/hello", as(pki().id_dir("client"))).ok);
}

TEST(Reload, test_reload_policy_change_and_bad_policy) {
  ScratchIdentity scratch("service-a");
  std::string policy = scratch.path("policy.json");
  test::write_file_atomic(policy, R"({"version": 1, "rules": [{"caller": "*", "allow": ["*"]}]})");
  Config cfg = test::test_config(scratch.dir());
  cfg.policy = policy;
  ServiceUnderTest svc(cfg);
  std::string err;
  auto open_conn = test::TestConnection::open(svc.port(), as(pki().id_dir("client")), &err);
  ASSERT_TRUE(open_conn) << err;
  EXPECT_EQ(open_conn->get("/hello").status, 200);

  test::write_file_atomic(policy, R"({"version": 1, "rules": [{"caller": "spiffe://zt.lab/svc/ops", "allow": ["*"]}]})");
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(https_get(svc.port(), "/hello", as(pki().id_dir("client"))).status, 403);
  EXPECT_EQ(open_conn->get("/hello").status, 403);  // a narrowed policy applies at once

  test::write_file_atomic(policy, R"({"version": 1, "rules": [{"caller": "*", "allow": ["*"], "deny": []}]})");
  EXPECT_FALSE(svc.service().reload("signal"));
  EXPECT_EQ(https_get(svc.port(), "/hello", as(pki().id_dir("client"))).status, 403);  // old policy kept
  auto line = svc.logs().wait_for("reload", [](const nlohmann::json& j) { return j.value("result", "") == "failure"; });
  ASSERT_FALSE(line.is_null());
  EXPECT_NE(line["reason"].get<std::string>().find("policy"), std::string::npos);
}

// All or nothing (tracker issue 8): a new generation with a good certificate arrives together
// with one bad piece. The reload must change nothing: the old certificate is still what a
// real TLS client is shown, the old policy and CRL still apply, the outbound identity is
// still the old one, and exactly one failed reload is counted.
struct BadPiece {
  std::string name;
  std::string reason_fragment;  // what the failed reload's log line must name
};

class ReloadAllOrNothing : public ::testing::TestWithParam<BadPiece> {};

TEST_P(ReloadAllOrNothing, test_reload_good_certificate_with_bad_piece_changes_nothing) {
  const BadPiece& bad = GetParam();
  ScratchIdentity scratch("service-a");
  std::string crl = scratch.path("crl.pem");
  std::string policy = scratch.path("policy.json");
  test::write_file_atomic(crl, test::read_text(pki().crl("crl.pem")));
  test::write_file_atomic(policy, R"({"version": 1, "rules": [{"caller": "*", "allow": ["*"]}]})");
  Config cfg = test::test_config(scratch.dir());
  cfg.crl = crl;
  cfg.policy = policy;
  ServiceUnderTest svc(cfg);
  Config b = test::test_config(pki().id_dir("service-b"));
  b.name = "service-b";
  ServiceUnderTest target(b);
  const std::string old_serial = pki().serial("service-a");
  const double failures_before = svc.metric("mtls_reloads_total", {{"result", "failure"}});

  const std::string new_serial = scratch.rotate();  // a good certificate, key and chain
  ASSERT_NE(new_serial, old_serial);
  if (bad.name == "bundle") {
    // The new generation's bundle is another trust domain's root: our new chain does not
    // verify against it, and it would trust strangers.
    std::string gen = std::filesystem::canonical(scratch.dir() + "/current").string();
    test::write_file_atomic(gen + "/bundle.pem", test::read_text(pki().root() + "/foreign/bundle.pem"));
  } else if (bad.name == "bundle_checksum") {
    // The agent's checksum of the bundle it verified, then a bundle that still verifies our
    // chain but also trusts a stranger's root: only the checksum can tell.
    std::string gen = std::filesystem::canonical(scratch.dir() + "/current").string();
    std::string bundle = test::read_text(gen + "/bundle.pem");
    test::write_file_atomic(gen + "/bundle.pem.sha256", sha256_line(bundle));
    test::write_file_atomic(gen + "/bundle.pem", bundle + test::read_text(pki().root() + "/foreign/bundle.pem"));
  } else if (bad.name == "policy") {
    test::write_file_atomic(policy, R"({"version": 1, "rules": [{"caller": "*", "allow": ["*"], "deny": []}]})");
  } else {
    test::write_file_atomic(crl, test::read_text(pki().crl("crl-foreign.pem")));  // wrong signer
  }

  EXPECT_FALSE(svc.service().reload("signal"));

  // The certificate a real TLS client is shown in the handshake, and the serial /hello reports.
  std::string err;
  auto conn = test::TestConnection::open(svc.port(), as(pki().id_dir("client")), &err);
  ASSERT_TRUE(conn) << err;
  EXPECT_EQ(conn->server_serial(), old_serial);
  auto hello = conn->get("/hello");
  EXPECT_EQ(hello.status, 200) << "the old allow-all policy no longer applies";
  EXPECT_EQ(hello.json.value("serial", ""), old_serial);
  // The old CRL still applies.
  auto revoked = https_get(svc.port(), "/hello", as(pki().id_dir("revoked")));
  EXPECT_FALSE(revoked.ok && revoked.status == 200) << "the old CRL no longer applies";
  // The outbound stack still presents the old identity.
  std::string q = "/call?target=https%3A%2F%2F127.0.0.1%3A" + std::to_string(target.port()) +
                  "%2Fhello&expect=spiffe%3A%2F%2Fzt.lab%2Fsvc%2Fservice-b";
  auto call = https_get(svc.port(), q, as(pki().id_dir("client")));
  ASSERT_EQ(call.status, 200) << call.body;
  EXPECT_EQ(call.json["response"]["caller_serial"], old_serial);

  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "failure"}}), failures_before + 1);
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "success"}}), 0);
  EXPECT_EQ(svc.metric("mtls_cert_info", {{"serial", old_serial}, {"spiffe_id", "spiffe://zt.lab/svc/service-a"}}), 1);
  EXPECT_TRUE(std::isnan(svc.metric("mtls_cert_info", {{"serial", new_serial}, {"spiffe_id", "spiffe://zt.lab/svc/service-a"}})));
  auto line = svc.logs().wait_for("reload", [](const nlohmann::json& j) { return j.value("result", "") == "failure"; });
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["old_serial"], old_serial);
  EXPECT_EQ(line["new_serial"], old_serial);  // still serving the old one
  EXPECT_NE(line["reason"].get<std::string>().find(bad.reason_fragment), std::string::npos) << line.dump();
  EXPECT_EQ(line["changed"], nlohmann::json::array());
  EXPECT_TRUE(line["rejected"].is_array() && !line["rejected"].empty()) << line.dump();
}

// Contract B: with a matching bundle.pem.sha256 the generation loads; the checksum file
// alone changes nothing else.
TEST(Reload, test_reload_generation_with_matching_bundle_checksum) {
  ScratchIdentity scratch("service-a");
  ServiceUnderTest svc(test::test_config(scratch.dir()));
  const std::string new_serial = scratch.rotate();
  std::string gen = std::filesystem::canonical(scratch.dir() + "/current").string();
  test::write_file_atomic(gen + "/bundle.pem.sha256", sha256_line(test::read_text(gen + "/bundle.pem")));
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(hello_serial(svc), new_serial);
}

TEST(Reload, test_start_refuses_bundle_checksum_mismatch) {
  ScratchIdentity scratch("service-a");
  std::string gen = std::filesystem::canonical(scratch.dir() + "/current").string();
  test::write_file_atomic(gen + "/bundle.pem.sha256", std::string(64, 'a') + "  bundle.pem\n");
  Service svc(test::test_config(scratch.dir()), [](const std::string&) {});
  auto st = svc.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().find("bundle_checksum_mismatch"), std::string::npos) << st.error();
}

TEST(BundleChecksum, test_check_bundle_checksum_formats) {
  std::string dir = test::make_temp_dir("zt-sum");
  const std::string bundle = "-----BEGIN CERTIFICATE-----\nxyz\n-----END CERTIFICATE-----\n";
  EXPECT_TRUE(check_bundle_checksum(dir, bundle).ok()) << "no checksum file: nothing to check";
  std::string line = sha256_line(bundle);
  struct Case {
    std::string file;
    bool ok;
  };
  std::string upper = line.substr(0, 64);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Case& c : {Case{line, true}, Case{line.substr(0, 64) + " *bundle.pem\n", true},
                        Case{line.substr(0, 64) + "  bundle.pem", true}, Case{upper + "  bundle.pem\n", true},
                        Case{line.substr(0, 64) + "  other.pem\n", false}, Case{line.substr(0, 63) + "  bundle.pem\n", false},
                        Case{"", false}, Case{line + line, false}, Case{sha256_line(bundle + " "), false}}) {
    test::write_file_atomic(dir + "/bundle.pem.sha256", c.file);
    auto st = check_bundle_checksum(dir, bundle);
    EXPECT_EQ(st.ok(), c.ok) << c.file;
    if (!st.ok()) {
      EXPECT_EQ(st.error().rfind("bundle_checksum_mismatch: ", 0), 0U) << st.error();
    }
  }
  test::remove_tree(dir);
}

// Contracts section 9: every reload line says what changed; a CRL- or policy-only reload too.
TEST(Reload, test_reload_line_names_changed_parts) {
  ScratchIdentity scratch("service-a");
  std::string crl = scratch.path("crl.pem");
  std::string policy = scratch.path("policy.json");
  test::write_file_atomic(crl, test::read_text(pki().crl("crl-empty.pem")));
  test::write_file_atomic(policy, R"({"version": 1, "rules": [{"caller": "*", "allow": ["*"]}]})");
  Config cfg = test::test_config(scratch.dir());
  cfg.crl = crl;
  cfg.policy = policy;
  ServiceUnderTest svc(cfg);
  const std::string serial = pki().serial("service-a");
  auto nth_reload = [&](size_t n) {
    EXPECT_TRUE(test::wait_until([&] { return svc.logs().events("reload").size() >= n; }, 5000));
    auto lines = svc.logs().events("reload");
    return lines.size() >= n ? lines[n - 1] : nlohmann::json();
  };

  test::write_file_atomic(crl, test::read_text(pki().crl("crl.pem")));
  ASSERT_TRUE(svc.service().reload("signal"));
  auto line = nth_reload(1);
  EXPECT_EQ(line["changed"], nlohmann::json::array({"crl"})) << line.dump();
  EXPECT_EQ(line["old_serial"], serial);
  EXPECT_EQ(line["new_serial"], serial);

  test::write_file_atomic(policy, R"({"version": 2, "rules": [{"caller": "*", "callee": "*", "methods": ["GET"], "paths": ["*"]}]})");
  ASSERT_TRUE(svc.service().reload("signal"));
  line = nth_reload(2);
  EXPECT_EQ(line["changed"], nlohmann::json::array({"policy"})) << line.dump();
  EXPECT_EQ(line["new_serial"], serial);

  ASSERT_TRUE(svc.service().reload("signal"));  // nothing changed on disk
  EXPECT_EQ(nth_reload(3)["changed"], nlohmann::json::array());

  const std::string new_serial = scratch.rotate();
  ASSERT_TRUE(svc.service().reload("signal"));
  line = nth_reload(4);
  EXPECT_EQ(line["changed"], nlohmann::json::array({"identity"})) << line.dump();
  EXPECT_EQ(line["new_serial"], new_serial);

  test::write_file_atomic(policy, "{");
  EXPECT_FALSE(svc.service().reload("signal"));
  line = nth_reload(5);
  EXPECT_EQ(line["result"], "failure");
  EXPECT_EQ(line["changed"], nlohmann::json::array());
  EXPECT_EQ(line["rejected"], nlohmann::json::array({"policy"})) << line.dump();
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "failure"}}), 1);
}

INSTANTIATE_TEST_SUITE_P(BadPieces, ReloadAllOrNothing,
                         ::testing::Values(BadPiece{"bundle", "bundle"}, BadPiece{"policy", "policy"},
                                           BadPiece{"crl", "crl:"},
                                           BadPiece{"bundle_checksum", "bundle_checksum_mismatch"}),
                         [](const ::testing::TestParamInfo<BadPiece>& p) { return p.param.name; });

TEST(Reload, test_reload_by_poll_when_current_moves) {
  ScratchIdentity scratch("service-a");
  Config cfg = test::test_config(scratch.dir());
  cfg.reload_interval_s = 1;
  ServiceUnderTest svc(cfg);
  std::string new_serial = scratch.rotate();
  auto line = svc.logs().wait_for("reload", nullptr, 10000);
  ASSERT_FALSE(line.is_null()) << "no poll-triggered reload within 10 s";
  EXPECT_EQ(line["trigger"], "poll");
  EXPECT_EQ(line["new_serial"], new_serial);
  EXPECT_EQ(hello_serial(svc), new_serial);
}

TEST(Reload, test_poll_counts_bad_material_once) {
  ScratchIdentity scratch("service-a");
  Config cfg = test::test_config(scratch.dir());
  cfg.reload_interval_s = 1;
  ServiceUnderTest svc(cfg);
  scratch.swap_in_generation_of("wrong-key");
  ASSERT_TRUE(svc.wait_metric("mtls_reloads_total", {{"result", "failure"}}, 1, 10000));
  // Two more poll intervals without a change on disk: no further attempts.
  EXPECT_FALSE(test::wait_until([&] { return svc.metric("mtls_reloads_total", {{"result", "failure"}}) > 1; }, 2500));
  EXPECT_EQ(hello_serial(svc), pki().serial("service-a"));
}

TEST(Reload, test_outbound_call_uses_current_identity) {
  ScratchIdentity scratch("service-a");
  ServiceUnderTest target(test::test_config(pki().id_dir("service-b")));
  ServiceUnderTest caller(test::test_config(scratch.dir()));
  std::string new_serial = scratch.rotate();
  ASSERT_TRUE(caller.service().reload("signal"));
  std::string q = "/call?target=https%3A%2F%2F127.0.0.1%3A" + std::to_string(target.port()) +
                  "%2Fhello&expect=spiffe%3A%2F%2Fzt.lab%2Fsvc%2Fservice-b";
  auto r = https_get(caller.port(), q, as(pki().id_dir("client")));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["response"]["caller_serial"], new_serial);
}

}  // namespace
}  // namespace zt
