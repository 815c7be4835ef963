// Rotation accounting and --no-reload (CONTRACT "Services"; docs/contracts.md sections 6-8):
// mtls_rotation_total counts reloads that changed the served leaf (success) and reloads that
// found a new generation and failed (failure), separately from mtls_reloads_total; each
// rotation writes one `rotation` line. --no-reload never reloads: a reload request (SIGHUP) is
// logged and ignored, and the poll never looks at the files.
#include "support/harness.h"
#include "support/pki.h"
#include "support/test_client.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace zt {
namespace {

using test::as;
using test::https_get;
using test::pki;
using test::ScratchIdentity;
using test::ServiceUnderTest;

std::string hello_serial(const ServiceUnderTest& svc) {
  auto r = https_get(svc.port(), "/hello", as(pki().id_dir("client")));
  return r.ok && r.status == 200 ? r.json.value("serial", "") : "error: " + r.error;
}

std::string current_generation(const ScratchIdentity& scratch) {
  return std::filesystem::canonical(scratch.dir() + "/current").filename().string();
}

TEST(Rotation, test_rotation_counts_success_and_logs_old_new_serial_generation) {
  ScratchIdentity scratch("service-a");
  std::string crl = scratch.path("crl.pem");
  test::write_file_atomic(crl, test::read_text(pki().crl("crl-empty.pem")));
  Config cfg = test::test_config(scratch.dir());
  cfg.crl = crl;
  ServiceUnderTest svc(cfg);
  const std::string old_serial = pki().serial("service-a");
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "success"}}), 0);
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "failure"}}), 0);

  const std::string new_serial = scratch.rotate();
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(hello_serial(svc), new_serial);
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "success"}}), 1);
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "success"}}), 1);
  auto line = svc.logs().wait_for("rotation");
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["old_serial"], old_serial);
  EXPECT_EQ(line["new_serial"], new_serial);
  EXPECT_EQ(line["generation"], current_generation(scratch));
  EXPECT_EQ(line["generation"].get<std::string>().rfind("gen-", 0), 0u) << line.dump();
  const std::string not_after = line.value("not_after", "");
  ASSERT_EQ(not_after.size(), 20u) << line.dump();  // RFC 3339, UTC, seconds: 2026-01-01T00:00:00Z
  EXPECT_EQ(not_after.back(), 'Z');
  EXPECT_EQ(not_after[10], 'T');

  // A CRL-only reload is a reload, not a rotation.
  test::write_file_atomic(crl, test::read_text(pki().crl("crl.pem")));
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "success"}}), 2);
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "success"}}), 1);
  // Nor is a reload with nothing changed.
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "success"}}), 3);
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "success"}}), 1);
  EXPECT_EQ(svc.logs().events("rotation").size(), 1u);

  // The next rotation counts again and names the newer generation.
  const std::string third_serial = scratch.rotate();
  ASSERT_TRUE(svc.service().reload("poll"));
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "success"}}), 2);
  auto second = svc.logs().wait_for("rotation", [&](const nlohmann::json& j) { return j.value("new_serial", "") == third_serial; });
  ASSERT_FALSE(second.is_null());
  EXPECT_EQ(second["old_serial"], new_serial);
  EXPECT_EQ(second["generation"], current_generation(scratch));
}

TEST(Rotation, test_failed_new_generation_counts_rotation_failure_other_failures_do_not) {
  ScratchIdentity scratch("service-a");
  std::string crl = scratch.path("crl.pem");
  test::write_file_atomic(crl, test::read_text(pki().crl("crl.pem")));
  Config cfg = test::test_config(scratch.dir());
  cfg.crl = crl;
  ServiceUnderTest svc(cfg);

  // A bad CRL with the generation unchanged: a failed reload, not a failed rotation.
  test::write_file_atomic(crl, test::read_text(pki().crl("crl-foreign.pem")));
  EXPECT_FALSE(svc.service().reload("signal"));
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "failure"}}), 1);
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "failure"}}), 0);
  test::write_file_atomic(crl, test::read_text(pki().crl("crl.pem")));

  // A new generation whose key does not match its certificate: both count a failure.
  scratch.swap_in_generation_of("wrong-key");
  EXPECT_FALSE(svc.service().reload("signal"));
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "failure"}}), 2);
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "failure"}}), 1);
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "success"}}), 0);
  EXPECT_TRUE(svc.logs().events("rotation").empty());
  EXPECT_EQ(hello_serial(svc), pki().serial("service-a"));

  // Repaired: the next good generation is a successful rotation.
  const std::string new_serial = scratch.rotate();
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "success"}}), 1);
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "failure"}}), 1);
  EXPECT_EQ(hello_serial(svc), new_serial);
}

TEST(Rotation, test_open_connection_survives_rotation) {
  // Issue 18's counterpart: a peer (or we) simply rotating never cuts a keep-alive connection.
  ScratchIdentity scratch("service-a");
  std::string crl = scratch.path("crl.pem");
  test::write_file_atomic(crl, test::read_text(pki().crl("crl.pem")));
  Config cfg = test::test_config(scratch.dir());
  cfg.crl = crl;
  ServiceUnderTest svc(cfg);
  std::string err;
  auto conn = test::TestConnection::open(svc.port(), as(pki().id_dir("client")), &err);
  ASSERT_TRUE(conn) << err;
  ASSERT_EQ(conn->get("/hello").status, 200);
  scratch.rotate();
  ASSERT_TRUE(svc.service().reload("signal"));
  test::write_file_atomic(crl, test::read_text(pki().crl("crl-empty.pem")));
  ASSERT_TRUE(svc.service().reload("signal"));
  auto again = conn->get("/hello");
  ASSERT_TRUE(again.ok) << again.error;
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(svc.metric("mtls_connections_closed_total", {{"reason", "revoked"}}), 0);
}

TEST(NoReload, test_no_reload_ignores_reload_requests_and_never_polls) {
  ScratchIdentity scratch("service-a");
  Config cfg = test::test_config(scratch.dir());
  cfg.no_reload = true;
  cfg.reload_interval_s = 1;  // would poll every second without --no-reload
  ServiceUnderTest svc(cfg);
  const std::string old_serial = pki().serial("service-a");
  scratch.rotate();

  EXPECT_FALSE(svc.service().reload("signal"));
  auto ignored = svc.logs().wait_for("signal_ignored");
  ASSERT_FALSE(ignored.is_null());
  EXPECT_EQ(ignored["signal"], "SIGHUP");
  EXPECT_EQ(ignored["level"], "warn");
  EXPECT_EQ(ignored["reason"], "--no-reload");

  // Three poll intervals with a new generation on disk: nothing happens.
  EXPECT_FALSE(test::wait_until([&] { return !svc.logs().events("reload").empty(); }, 3000));
  EXPECT_EQ(hello_serial(svc), old_serial);
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "success"}}), 0);
  EXPECT_EQ(svc.metric("mtls_reloads_total", {{"result", "failure"}}), 0);
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "success"}}), 0);
  EXPECT_EQ(svc.metric("mtls_rotation_total", {{"result", "failure"}}), 0);
  auto start = svc.logs().wait_for("start");
  ASSERT_FALSE(start.is_null());
  EXPECT_EQ(start["no_reload"], true);
}

TEST(NoReload, test_parse_args_no_reload_flag) {
  auto parsed = parse_args({"--cert-dir", "/x", "--no-reload"});
  ASSERT_TRUE(std::holds_alternative<Config>(parsed));
  EXPECT_TRUE(std::get<Config>(parsed).no_reload);
  auto dflt = parse_args({"--cert-dir", "/x"});
  ASSERT_TRUE(std::holds_alternative<Config>(dflt));
  EXPECT_FALSE(std::get<Config>(dflt).no_reload);
  auto bad = parse_args({"--cert-dir", "/x", "--no-reload=yes"});
  ASSERT_TRUE(std::holds_alternative<ExitRequest>(bad));
  EXPECT_EQ(std::get<ExitRequest>(bad).code, 2);
  auto help = parse_args({"--help"});
  EXPECT_NE(std::get<ExitRequest>(help).message.find("--no-reload"), std::string::npos);
}

}  // namespace
}  // namespace zt
