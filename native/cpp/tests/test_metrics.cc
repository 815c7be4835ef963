// The metrics port (docs/contracts.md section 6): every contract metric with its labels, and
// /healthz.
#include "metrics.h"
#include "support/harness.h"
#include "support/pki.h"
#include "support/test_client.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

namespace zt {
namespace {

using test::as;
using test::https_get;
using test::pki;
using test::ServiceUnderTest;

TEST(Metrics, test_metrics_endpoint_shows_contract_metrics) {
  Config cfg = test::test_config(pki().id_dir("service-a"));
  cfg.crl = pki().crl("crl.pem");
  ServiceUnderTest svc(cfg);
  ASSERT_EQ(https_get(svc.port(), "/hello", as(pki().id_dir("client"))).status, 200);
  EXPECT_FALSE(https_get(svc.port(), "/hello", as(pki().id_dir("revoked"))).ok);
  ASSERT_TRUE(svc.wait_metric("mtls_handshake_failures_total", {{"reason", "revoked"}}, 1));

  test::HttpResult r = test::http_get_plain(svc.metrics_port(), "/metrics");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
  const std::string& text = r.body;
  auto v = [&](const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return test::metric_value(text, name, labels);
  };
  EXPECT_GE(v("mtls_handshakes_total", {{"result", "success"}}), 1);
  EXPECT_GE(v("mtls_handshakes_total", {{"result", "failure"}}), 1);
  for (const char* reason : {"no_client_cert", "untrusted", "expired", "revoked", "bad_spiffe_id", "crl_stale",
                             "timeout", "protocol"}) {
    EXPECT_FALSE(std::isnan(v("mtls_handshake_failures_total", {{"reason", reason}}))) << reason;
  }
  EXPECT_EQ(v("mtls_handshake_failures_total", {{"reason", "revoked"}}), 1);
  const Identity& id = svc.service().state()->identity();
  // Seconds until notAfter at the scrape: between the values for "just before" and "just after".
  const auto unix_now = [] {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  };
  double before = unix_now();
  std::string again = test::http_get_plain(svc.metrics_port(), "/metrics").body;
  double after = unix_now();
  double left = test::metric_value(again, "mtls_cert_expiry_seconds", {});
  EXPECT_LE(left, static_cast<double>(id.not_after) - before);
  EXPECT_GE(left, static_cast<double>(id.not_after) - after);
  EXPECT_GT(left, 0);
  EXPECT_EQ(v("mtls_cert_not_after_timestamp_seconds"), static_cast<double>(id.not_after));
  EXPECT_EQ(v("mtls_cert_info", {{"serial", pki().serial("service-a")}, {"spiffe_id", "spiffe://zt.lab/svc/service-a"}}), 1);
  EXPECT_EQ(v("mtls_reloads_total", {{"result", "success"}}), 0);
  EXPECT_EQ(v("mtls_reloads_total", {{"result", "failure"}}), 0);
  EXPECT_EQ(v("mtls_crl_entries"), 1);
  EXPECT_GT(v("mtls_crl_next_update_seconds"), static_cast<double>(std::time(nullptr)));
  EXPECT_EQ(v("mtls_crl_stale"), 0);
  EXPECT_EQ(v("mtls_policy_denials_total"), 0);
  EXPECT_EQ(v("mtls_outbound_calls_total", {{"result", "success"}}), 0);
  EXPECT_EQ(v("mtls_outbound_calls_total", {{"result", "failure"}}), 0);
  EXPECT_GE(v("http_requests_total", {{"path", "/hello"}, {"code", "200"}}), 1);
  EXPECT_NE(text.find("# TYPE mtls_handshakes_total counter"), std::string::npos);
  EXPECT_NE(text.find("# TYPE mtls_crl_stale gauge"), std::string::npos);
}

// mtls_cert_expiry_seconds is computed when scraped, so it falls with time and goes negative
// after notAfter, while the timestamp gauge stays put.
TEST(Metrics, test_cert_expiry_is_seconds_left_at_scrape_time) {
  Metrics m;
  m.set_certificate("1a", "spiffe://zt.lab/svc/service-a", 1000);
  auto at = [&](double now, const char* name) { return test::metric_value(m.serialize(now), name, {}); };
  EXPECT_EQ(at(400, "mtls_cert_expiry_seconds"), 600);
  EXPECT_EQ(at(999.5, "mtls_cert_expiry_seconds"), 0.5);
  EXPECT_EQ(at(1500, "mtls_cert_expiry_seconds"), -500);
  EXPECT_EQ(at(1500, "mtls_cert_not_after_timestamp_seconds"), 1000);
  m.set_certificate("1b", "spiffe://zt.lab/svc/service-a", 5000);  // a rotation
  EXPECT_EQ(at(1500, "mtls_cert_expiry_seconds"), 3500);
  EXPECT_EQ(at(1500, "mtls_cert_not_after_timestamp_seconds"), 5000);
}

TEST(Metrics, test_crl_next_update_is_zero_without_crl) {
  ServiceUnderTest svc(test::test_config(pki().id_dir("service-a")));
  EXPECT_EQ(svc.metric("mtls_crl_next_update_seconds"), 0);
  EXPECT_EQ(svc.metric("mtls_crl_entries"), 0);
}

TEST(Metrics, test_healthz_reports_serial) {
  ServiceUnderTest svc(test::test_config(pki().id_dir("service-a")));
  auto r = test::http_get_plain(svc.metrics_port(), "/healthz");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json["status"], "ok");
  EXPECT_EQ(r.json["serial"], pki().serial("service-a"));
  EXPECT_EQ(test::http_get_plain(svc.metrics_port(), "/other").status, 404);
}

}  // namespace
}  // namespace zt
