// SPIFFE ID syntax, one case per rule (docs/svid-rules.md, section 1).
#include "spiffe_id.h"

#include <gtest/gtest.h>

namespace zt {
namespace {

struct IdCase {
  const char* name;
  std::string text;
  bool valid;
  const char* reason_contains;  // for invalid cases
};

class SpiffeIdSyntax : public ::testing::TestWithParam<IdCase> {};

TEST_P(SpiffeIdSyntax, test_spiffe_id_rule) {
  const IdCase& c = GetParam();
  auto id = SpiffeId::parse(c.text);
  EXPECT_EQ(id.ok(), c.valid) << c.text << (id.ok() ? "" : ": " + id.error());
  if (!c.valid && !id.ok()) {
    EXPECT_NE(id.error().find(c.reason_contains), std::string::npos) << id.error();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Rules, SpiffeIdSyntax,
    ::testing::Values(
        IdCase{"workload", "spiffe://zt.lab/svc/service-a", true, ""},
        IdCase{"trust_domain_only", "spiffe://zt.lab", true, ""},
        IdCase{"all_path_chars", "spiffe://zt.lab/A-Z_a-z.0-9", true, ""},
        IdCase{"td_chars", "spiffe://a-b_c.0", true, ""},
        IdCase{"wrong_scheme", "https://zt.lab/svc/a", false, "scheme"},
        IdCase{"uppercase_scheme", "SPIFFE://zt.lab/svc/a", false, "scheme"},
        IdCase{"no_slashes", "spiffe:zt.lab/svc/a", false, "scheme"},
        IdCase{"empty", "", false, "empty"},
        IdCase{"empty_td", "spiffe:///svc/a", false, "trust domain is empty"},
        IdCase{"uppercase_td", "spiffe://ZT.lab/svc/a", false, "lowercase"},
        IdCase{"port", "spiffe://zt.lab:8443/svc/a", false, "port"},
        IdCase{"userinfo", "spiffe://user@zt.lab/svc/a", false, "userinfo"},
        IdCase{"query", "spiffe://zt.lab/svc/a?x=1", false, "query"},
        IdCase{"fragment", "spiffe://zt.lab/svc/a#frag", false, "fragment"},
        IdCase{"percent_td", "spiffe://zt%2elab/svc/a", false, "percent"},
        IdCase{"percent_path", "spiffe://zt.lab/svc/a%20b", false, "percent"},
        IdCase{"empty_segment", "spiffe://zt.lab/svc//a", false, "empty segment"},
        IdCase{"trailing_slash", "spiffe://zt.lab/svc/a/", false, "empty segment"},
        IdCase{"root_slash", "spiffe://zt.lab/", false, "empty segment"},
        IdCase{"dot_segment", "spiffe://zt.lab/svc/./a", false, "'.' or '..'"},
        IdCase{"dotdot_segment", "spiffe://zt.lab/svc/../a", false, "'.' or '..'"},
        IdCase{"bad_path_char", "spiffe://zt.lab/svc/a+b", false, "'+'"},
        IdCase{"space", "spiffe://zt.lab/svc/a b", false, "' '"},
        IdCase{"non_ascii", "spiffe://zt.lab/svc/\xc3\xa9", false, "non-ASCII"},
        IdCase{"too_long", "spiffe://zt.lab/" + std::string(2100, 'a'), false, "2048"}),
    [](const ::testing::TestParamInfo<IdCase>& p) { return std::string(p.param.name); });

TEST(SpiffeId, test_spiffe_id_parts) {
  auto id = SpiffeId::parse("spiffe://zt.lab/svc/service-a");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->trust_domain(), "zt.lab");
  EXPECT_EQ(id->path(), "/svc/service-a");
  EXPECT_EQ(id->str(), "spiffe://zt.lab/svc/service-a");
}

TEST(SpiffeId, test_spiffe_id_workload_needs_path) {
  EXPECT_TRUE(SpiffeId::parse_workload("spiffe://zt.lab/svc/a").ok());
  auto root = SpiffeId::parse_workload("spiffe://zt.lab");
  ASSERT_FALSE(root.ok());
  EXPECT_NE(root.error().find("no path"), std::string::npos);
}

}  // namespace
}  // namespace zt
