// The policy file (docs/contracts.md section 4): parsing rules and matching, table-driven, for
// version 1 (caller -> paths) and version 2 (caller -> callee, methods, paths).
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
  // A version 1 rule holds for every callee and method.
  for (const char* callee : {"spiffe://zt.lab/svc/service-a", "spiffe://zt.lab/svc/service-b"}) {
    for (const char* method : {"GET", "POST"}) {
      EXPECT_EQ(policy.value()->is_allowed({c.caller, callee, method, c.path}), c.allowed)
          << c.caller << " " << method << " " << c.path << " on " << callee;
    }
  }
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
  EXPECT_FALSE(p.value()->is_allowed({"spiffe://zt.lab/svc/a", "spiffe://zt.lab/svc/b", "GET", "/hello"}));
  auto v2 = Policy::parse(R"({"version": 2, "rules": []})");
  ASSERT_TRUE(v2.ok()) << v2.error();
  EXPECT_EQ(v2.value()->version(), 2);
  EXPECT_FALSE(v2.value()->is_allowed({"spiffe://zt.lab/svc/a", "spiffe://zt.lab/svc/b", "GET", "/hello"}));
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
                      BadCase{"version_3", R"({"version": 3, "rules": []})", "must be 1 or 2"},
                      BadCase{"version_string", R"({"version": "1", "rules": []})", "must be 1 or 2"},
                      BadCase{"version_float", R"({"version": 2.0, "rules": []})", "must be 1 or 2"},
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
                              "allow"},
                      BadCase{"v1_rule_with_v2_keys",
                              R"({"version": 1, "rules": [{"caller": "a", "callee": "*", "allow": ["/x"]}]})",
                              "unknown key \"callee\""}),
    [](const ::testing::TestParamInfo<BadCase>& p) { return std::string(p.param.name); });

// ---- version 2 ----

const char* kMesh = R"({"version": 2,
 "rules": [
   {"caller": "spiffe://zt.lab/svc/service-a", "callee": "spiffe://zt.lab/svc/service-b",
    "methods": ["GET"], "paths": ["/hello", "/call"]},
   {"caller": "spiffe://zt.lab/svc/service-b", "callee": "spiffe://zt.lab/svc/service-a",
    "methods": ["GET", "POST"], "paths": ["/hello"]},
   {"caller": "spiffe://zt.lab/svc/load", "callee": "spiffe://zt.lab/svc/*",
    "methods": ["GET"], "paths": ["/hello"]},
   {"caller": "spiffe://zt.lab/ops/*", "callee": "*", "methods": ["*"], "paths": ["*"]}
 ]})";

constexpr const char* kA = "spiffe://zt.lab/svc/service-a";
constexpr const char* kB = "spiffe://zt.lab/svc/service-b";

struct MeshCase {
  const char* name;
  const char* caller;
  const char* callee;
  const char* method;
  const char* path;
  bool allowed;
};

class PolicyV2Match : public ::testing::TestWithParam<MeshCase> {};

TEST_P(PolicyV2Match, test_policy_v2_decision) {
  auto policy = Policy::parse(kMesh);
  ASSERT_TRUE(policy.ok()) << policy.error();
  EXPECT_EQ(policy.value()->version(), 2);
  const MeshCase& c = GetParam();
  EXPECT_EQ(policy.value()->is_allowed({c.caller, c.callee, c.method, c.path}), c.allowed)
      << c.caller << " " << c.method << " " << c.path << " on " << c.callee;
}

INSTANTIATE_TEST_SUITE_P(
    Rules, PolicyV2Match,
    ::testing::Values(MeshCase{"a_to_b_hello", kA, kB, "GET", "/hello", true},
                      MeshCase{"a_to_b_call", kA, kB, "GET", "/call", true},
                      // The reason for version 2: the same caller and path on another callee.
                      MeshCase{"a_to_a_hello_denied", kA, kA, "GET", "/hello", false},
                      MeshCase{"a_to_b_post_denied", kA, kB, "POST", "/hello", false},
                      MeshCase{"a_to_b_other_path_denied", kA, kB, "GET", "/admin", false},
                      MeshCase{"b_to_a_hello", kB, kA, "GET", "/hello", true},
                      MeshCase{"b_to_a_post", kB, kA, "POST", "/hello", true},
                      MeshCase{"b_to_a_call_denied", kB, kA, "GET", "/call", false},
                      MeshCase{"b_to_b_denied", kB, kB, "GET", "/hello", false},
                      MeshCase{"callee_prefix", "spiffe://zt.lab/svc/load", kA, "GET", "/hello", true},
                      MeshCase{"callee_prefix_other_tree", "spiffe://zt.lab/svc/load", "spiffe://zt.lab/ops/x", "GET",
                               "/hello", false},
                      MeshCase{"method_is_case_sensitive", kA, kB, "get", "/hello", false},
                      MeshCase{"ops_everything", "spiffe://zt.lab/ops/oncall", kA, "DELETE", "/x/y", true},
                      MeshCase{"unknown_caller", "spiffe://zt.lab/svc/client", kB, "GET", "/hello", false}),
    [](const ::testing::TestParamInfo<MeshCase>& p) { return std::string(p.param.name); });

TEST(PolicyV2Parse, test_policy_v2_rule_fields_kept) {
  auto p = Policy::parse(kMesh);
  ASSERT_TRUE(p.ok()) << p.error();
  ASSERT_EQ(p.value()->rules().size(), 4U);
  const PolicyRule& r = p.value()->rules()[0];
  EXPECT_EQ(r.caller, kA);
  EXPECT_EQ(r.callee, kB);
  EXPECT_EQ(r.methods, (std::vector<std::string>{"GET"}));
  EXPECT_EQ(r.paths, (std::vector<std::string>{"/hello", "/call"}));
}

TEST(PolicyV1Parse, test_policy_v1_rule_reads_as_any_callee_any_method) {
  auto p = Policy::parse(kExample);
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p.value()->version(), 1);
  const PolicyRule& r = p.value()->rules()[0];
  EXPECT_EQ(r.callee, "*");
  EXPECT_EQ(r.methods, (std::vector<std::string>{"*"}));
  EXPECT_EQ(r.paths, (std::vector<std::string>{"/hello", "/call"}));
}

// One v2 rule with one field replaced; every case must be refused, naming the field.
std::string v2_rule(const char* body) {
  return std::string(R"({"version": 2, "rules": [)") + body + "]}";
}

class PolicyV2ParseErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(PolicyV2ParseErrors, test_policy_v2_rejects) {
  auto p = Policy::parse(v2_rule(GetParam().json));
  ASSERT_FALSE(p.ok()) << GetParam().json;
  EXPECT_NE(p.error().find(GetParam().error_contains), std::string::npos) << p.error();
  EXPECT_NE(p.error().find("rules[0]"), std::string::npos) << p.error();
}

INSTANTIATE_TEST_SUITE_P(
    Rules, PolicyV2ParseErrors,
    ::testing::Values(
        BadCase{"v1_rule_in_v2", R"({"caller": "a", "allow": ["/x"]})", "unknown key \"allow\""},
        BadCase{"unknown_key", R"({"caller": "a", "callee": "*", "methods": ["GET"], "paths": ["/"], "x": 1})",
                "unknown key \"x\""},
        BadCase{"callee_missing", R"({"caller": "a", "methods": ["GET"], "paths": ["/"]})", "\"callee\""},
        BadCase{"caller_missing", R"({"callee": "*", "methods": ["GET"], "paths": ["/"]})", "\"caller\""},
        BadCase{"methods_missing", R"({"caller": "a", "callee": "*", "paths": ["/"]})", "\"methods\""},
        BadCase{"paths_missing", R"({"caller": "a", "callee": "*", "methods": ["GET"]})", "\"paths\""},
        BadCase{"methods_empty", R"({"caller": "a", "callee": "*", "methods": [], "paths": ["/"]})", "must not be empty"},
        BadCase{"paths_empty", R"({"caller": "a", "callee": "*", "methods": ["GET"], "paths": []})", "must not be empty"},
        BadCase{"callee_not_string", R"({"caller": "a", "callee": ["*"], "methods": ["GET"], "paths": ["/"]})",
                "\"callee\""},
        BadCase{"callee_empty", R"({"caller": "a", "callee": "", "methods": ["GET"], "paths": ["/"]})", "\"callee\""},
        BadCase{"caller_not_string", R"({"caller": 7, "callee": "*", "methods": ["GET"], "paths": ["/"]})",
                "\"caller\""},
        BadCase{"methods_not_array", R"({"caller": "a", "callee": "*", "methods": "GET", "paths": ["/"]})",
                "\"methods\""},
        BadCase{"method_lower_case", R"({"caller": "a", "callee": "*", "methods": ["get"], "paths": ["/"]})",
                "upper-case"},
        BadCase{"method_pattern", R"({"caller": "a", "callee": "*", "methods": ["GE*"], "paths": ["/"]})",
                "upper-case"},
        BadCase{"method_not_string", R"({"caller": "a", "callee": "*", "methods": [1], "paths": ["/"]})",
                "\"methods\""},
        BadCase{"path_not_string", R"({"caller": "a", "callee": "*", "methods": ["GET"], "paths": [null]})",
                "\"paths\""},
        BadCase{"path_empty_string", R"({"caller": "a", "callee": "*", "methods": ["GET"], "paths": [""]})",
                "\"paths\""},
        BadCase{"rule_not_object", R"("x")", "must be an object"}),
    [](const ::testing::TestParamInfo<BadCase>& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace zt
