// The policy file (docs/contracts.md section 4): parsing rules and matching, table-driven.
#include "policy.h"

#include <gtest/gtest.h>

namespace zt {
namespace {

const char* kExample = R"({
  "version": 1,
  "rules": [
    {"caller": "spiffe://zt.lab/svc/service-a", "allow": ["/hello", "/call"]},
    {"caller": "spiffe://zt.lab/svc/load",      "allow": ["/hello"]},
    {"caller": "spiffe://zt.lab/ops/*",         "allow": ["*"]},
    {"caller": "spiffe://zt.lab/svc/admin",     "allow": ["/admin/*"]}
  ]
})";

struct MatchCase {
  const char* name;
  const char* caller;
  const char* path;
  bool allowed;
};

class PolicyMatch : public ::testing::TestWithParam<MatchCase> {};

TEST_P(PolicyMatch, test_policy_decision) {
  auto policy = Policy::parse(kExample);
  ASSERT_TRUE(policy.ok()) << policy.error();
  const MatchCase& c = GetParam();
  EXPECT_EQ(policy.value()->is_allowed(c.caller, c.path), c.allowed) << c.caller << " " << c.path;
}

INSTANTIATE_TEST_SUITE_P(
    Rules, PolicyMatch,
    ::testing::Values(MatchCase{"exact_caller_exact_path", "spiffe://zt.lab/svc/service-a", "/call", true},
                      MatchCase{"exact_caller_other_path", "spiffe://zt.lab/svc/load", "/call", false},
                      MatchCase{"unknown_caller_denied", "spiffe://zt.lab/svc/client", "/hello", false},
                      MatchCase{"caller_prefix_wildcard", "spiffe://zt.lab/ops/oncall", "/anything", true},
                      MatchCase{"caller_prefix_needs_prefix", "spiffe://zt.lab/opsx", "/hello", false},
                      MatchCase{"path_prefix_wildcard", "spiffe://zt.lab/svc/admin", "/admin/users", true},
                      MatchCase{"path_prefix_exact_base", "spiffe://zt.lab/svc/admin", "/admin/", true},
                      MatchCase{"path_prefix_not_base", "spiffe://zt.lab/svc/admin", "/admin", false},
                      MatchCase{"no_substring_match", "spiffe://zt.lab/svc/service-a", "/hello/x", false},
                      MatchCase{"caller_exact_not_prefix", "spiffe://zt.lab/svc/service-ab", "/hello", false},
                      MatchCase{"star_in_middle_is_literal", "spiffe://zt.lab/ops/*", "/x", true}),
    [](const ::testing::TestParamInfo<MatchCase>& p) { return std::string(p.param.name); });

TEST(PolicyPattern, test_pattern_matches_star_only_at_end) {
  EXPECT_TRUE(pattern_matches("*", ""));
  EXPECT_TRUE(pattern_matches("*", "/x"));
  EXPECT_TRUE(pattern_matches("/a*", "/a"));
  EXPECT_FALSE(pattern_matches("/a*b", "/axb"));  // '*' not at the end is a literal
  EXPECT_TRUE(pattern_matches("/a*b", "/a*b"));
}

TEST(PolicyParse, test_policy_empty_rules_denies_everything) {
  auto p = Policy::parse(R"({"version": 1, "rules": []})");
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p.value()->is_allowed("spiffe://zt.lab/svc/a", "/hello"));
}

struct BadCase {
  const char* name;
  const char* json;
  const char* error_contains;
};

class PolicyParseErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(PolicyParseErrors, test_policy_rejects) {
  auto p = Policy::parse(GetParam().json);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().find(GetParam().error_contains), std::string::npos) << p.error();
}

INSTANTIATE_TEST_SUITE_P(
    Rules, PolicyParseErrors,
    ::testing::Values(BadCase{"not_json", "{", "not valid JSON"},
                      BadCase{"not_object", "[]", "JSON object"},
                      BadCase{"missing_version", R"({"rules": []})", "version"},
                      BadCase{"version_2", R"({"version": 2, "rules": []})", "must be 1"},
                      BadCase{"version_string", R"({"version": "1", "rules": []})", "must be 1"},
                      BadCase{"unknown_top_key", R"({"version": 1, "rules": [], "default": "allow"})",
                              "unknown top-level key"},
                      BadCase{"rules_missing", R"({"version": 1})", "rules"},
                      BadCase{"rule_not_object", R"({"version": 1, "rules": ["x"]})", "must be an object"},
                      BadCase{"unknown_rule_key", R"({"version": 1, "rules": [{"caller": "a", "allow": [], "deny": []}]})",
                              "unknown key \"deny\""},
                      BadCase{"caller_missing", R"({"version": 1, "rules": [{"allow": ["/x"]}]})", "caller"},
                      BadCase{"allow_not_array", R"({"version": 1, "rules": [{"caller": "a", "allow": "/x"}]})",
                              "allow"},
                      BadCase{"allow_not_strings", R"({"version": 1, "rules": [{"caller": "a", "allow": [1]}]})",
                              "allow"}),
    [](const ::testing::TestParamInfo<BadCase>& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace zt
