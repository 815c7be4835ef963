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
#include "support/one_shot_upstream.h"
#include "support/pki.h"
#include "support/test_client.h"

#include <gtest/gtest.h>

#include <ostream>

namespace zt {
namespace {

using test::as;
using test::https_get;
using test::OneShotUpstream;
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
  OneShotUpstream upstream(c.identity, nullptr, OneShotUpstream::answer_hello);
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
  OneShotUpstream upstream("service-b", nullptr, OneShotUpstream::answer_hello);
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
