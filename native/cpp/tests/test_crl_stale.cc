// A CRL going stale while the service runs (CONTRACT "Services"; docs/contracts.md sections 3
// and 7): refuse mode refuses handshakes with reason crl_stale, warn mode serves; both set
// mtls_crl_stale and log crl_stale once per CRL (not per handshake, not per refresh; a new
// stale CRL logs again); both recover when a fresh CRL is loaded. A stale CRL still revokes.
#include "support/harness.h"
#include "support/pki.h"
#include "support/test_client.h"

#include "x509_util.h"

#include <gtest/gtest.h>

namespace zt {
namespace {

using test::as;
using test::https_get;
using test::pki;

struct StaleCase {
  const char* name;
  CrlStaleMode mode;
};

class CrlStaleLifecycle : public ::testing::TestWithParam<StaleCase> {
 protected:
  std::string crl_pem(std::time_t this_update, std::time_t next_update, long number) {
    auto inter = test::load_cert(pki().ca("intermediate.pem"));
    auto key = test::load_key(pki().ca("intermediate.key"));
    auto revoked = test::load_cert(pki().id_dir("revoked") + "/cert.pem");
    return test::make_crl_pem(inter.get(), key.get(), {revoked.get()}, this_update, next_update, number);
  }
};

TEST_P(CrlStaleLifecycle, test_crl_going_stale_logs_once_per_crl_refuses_or_warns_and_recovers) {
  const StaleCase& c = GetParam();
  const bool refuse = c.mode == CrlStaleMode::Refuse;
  test::ScratchIdentity scratch("service-a");
  std::string crl = scratch.path("crl.pem");
  std::time_t now = std::time(nullptr);
  const std::time_t next_update = now + 2;
  test::write_file_atomic(crl, crl_pem(now - 60, next_update, 10));
  Config cfg = test::test_config(scratch.dir());
  cfg.crl = crl;
  cfg.crl_stale = c.mode;
  test::ServiceUnderTest svc(cfg);
  EXPECT_EQ(svc.metric("mtls_crl_stale"), 0);
  EXPECT_TRUE(https_get(svc.port(), "/hello", as(pki().id_dir("client"))).ok);
  EXPECT_TRUE(svc.logs().events("crl_stale").empty());

  // nextUpdate passes while the service runs.
  ASSERT_TRUE(svc.wait_metric("mtls_crl_stale", {}, 1, 8000)) << "mtls_crl_stale never became 1";
  auto line = svc.logs().wait_for("crl_stale");
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["level"], "warn");
  EXPECT_EQ(line["mode"], refuse ? "refuse" : "warn");
  EXPECT_EQ(line["next_update"], rfc3339(next_update));
  for (int i = 0; i < 3; ++i) {
    auto r = https_get(svc.port(), "/hello", as(pki().id_dir("client")));
    if (refuse) {
      EXPECT_FALSE(r.ok) << "refuse mode served a handshake under a stale CRL";
    } else {
      ASSERT_TRUE(r.ok) << r.error;
      EXPECT_EQ(r.status, 200);
    }
  }
  if (refuse) {
    EXPECT_TRUE(svc.wait_metric("mtls_handshake_failures_total", {{"reason", "crl_stale"}}, 3));
    EXPECT_FALSE(svc.wait_rejection("crl_stale").is_null());
  } else {
    EXPECT_EQ(svc.metric("mtls_handshake_failures_total", {{"reason", "crl_stale"}}), 0);
  }
  // What the stale CRL lists stays revoked in both modes.
  EXPECT_FALSE(https_get(svc.port(), "/hello", as(pki().id_dir("revoked"))).ok);
  EXPECT_FALSE(svc.wait_rejection("revoked").is_null());
  // Handshakes and the once-a-second refresh do not repeat the line; neither does re-reading
  // the same CRL.
  EXPECT_FALSE(test::wait_until([&] { return svc.logs().events("crl_stale").size() > 1; }, 1500));
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(svc.logs().events("crl_stale").size(), 1u);

  // Another CRL, stale too: one more line.
  test::write_file_atomic(crl, crl_pem(now - 120, now - 30, 11));
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_TRUE(test::wait_until([&] { return svc.logs().events("crl_stale").size() == 2; }, 3000));
  EXPECT_EQ(svc.metric("mtls_crl_stale"), 1);
  EXPECT_EQ(svc.logs().events("crl_stale").back()["next_update"], rfc3339(now - 30));

  // A fresh CRL: the alarm clears and refuse mode serves again.
  test::write_file_atomic(crl, crl_pem(now - 60, now + 3600, 12));
  ASSERT_TRUE(svc.service().reload("signal"));
  EXPECT_EQ(svc.metric("mtls_crl_stale"), 0);
  auto ok = https_get(svc.port(), "/hello", as(pki().id_dir("client")));
  ASSERT_TRUE(ok.ok) << ok.error;
  EXPECT_EQ(ok.status, 200);
  EXPECT_FALSE(https_get(svc.port(), "/hello", as(pki().id_dir("revoked"))).ok);
  EXPECT_FALSE(test::wait_until([&] { return svc.metric("mtls_crl_stale") != 0; }, 1500));
  EXPECT_EQ(svc.logs().events("crl_stale").size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Modes, CrlStaleLifecycle,
                         ::testing::Values(StaleCase{"refuse", CrlStaleMode::Refuse},
                                           StaleCase{"warn", CrlStaleMode::Warn}),
                         [](const ::testing::TestParamInfo<StaleCase>& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace zt
