#include "policy.h"

#include "x509_util.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <initializer_list>

namespace zt {

bool pattern_matches(std::string_view pattern, std::string_view value) {
  if (!pattern.empty() && pattern.back() == '*') {
    std::string_view prefix = pattern.substr(0, pattern.size() - 1);
    return value.substr(0, prefix.size()) == prefix;
  }
  return pattern == value;
}

namespace {

bool any_matches(const std::vector<std::string>& patterns, std::string_view value) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return pattern_matches(p, value); });
}

bool method_matches(const std::vector<std::string>& methods, std::string_view method) {
  return std::any_of(methods.begin(), methods.end(), [&](const std::string& m) { return m == "*" || m == method; });
}

// An HTTP method token as the contract allows it in a policy: upper-case letters only.
bool is_upper_method(const std::string& m) {
  return !m.empty() && std::all_of(m.begin(), m.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

// A non-empty array of non-empty strings; `what` names it in the error.
Result<std::vector<std::string>> string_list(const nlohmann::json& rule, const char* key, const std::string& where,
                                             bool allow_empty) {
  std::string name = where + ": \"" + key + "\"";
  if (!rule.contains(key) || !rule[key].is_array()) return fail(name + " must be an array of strings");
  if (!allow_empty && rule[key].empty()) return fail(name + " must not be empty");
  std::vector<std::string> out;
  for (const auto& v : rule[key]) {
    if (!v.is_string() || v.get<std::string>().empty()) return fail(name + " entries must be non-empty strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::string> nonempty_string(const nlohmann::json& rule, const char* key, const std::string& where) {
  if (!rule.contains(key) || !rule[key].is_string() || rule[key].get<std::string>().empty()) {
    return fail(where + ": \"" + key + "\" must be a non-empty string");
  }
  return rule[key].get<std::string>();
}

Status check_keys(const nlohmann::json& rule, std::initializer_list<const char*> keys, const std::string& where) {
  for (const auto& item : rule.items()) {
    const std::string& key = item.key();
    if (std::none_of(keys.begin(), keys.end(), [&key](const char* k) { return key == k; })) {
      return fail(std::string(where).append(": unknown key \"").append(key).append("\""));
    }
  }
  return ok_status();
}

Result<PolicyRule> parse_v1_rule(const nlohmann::json& rule, const std::string& where) {
  if (auto st = check_keys(rule, {"caller", "allow"}, where); !st) return fail(st.error());
  auto caller = nonempty_string(rule, "caller", where);
  if (!caller) return fail(caller.error());
  auto allow = string_list(rule, "allow", where, /*allow_empty=*/true);
  if (!allow) return fail(allow.error());
  return PolicyRule{std::move(caller).value(), "*", {"*"}, std::move(allow).value()};
}

Result<PolicyRule> parse_v2_rule(const nlohmann::json& rule, const std::string& where) {
  if (auto st = check_keys(rule, {"caller", "callee", "methods", "paths"}, where); !st) return fail(st.error());
  auto caller = nonempty_string(rule, "caller", where);
  if (!caller) return fail(caller.error());
  auto callee = nonempty_string(rule, "callee", where);
  if (!callee) return fail(callee.error());
  auto methods = string_list(rule, "methods", where, /*allow_empty=*/false);
  if (!methods) return fail(methods.error());
  for (const std::string& m : methods.value()) {
    if (m != "*" && !is_upper_method(m)) {
      return fail(std::string(where).append(": \"methods\" entries must be upper-case HTTP methods or \"*\", not \"")
                      .append(m)
                      .append("\""));
    }
  }
  auto paths = string_list(rule, "paths", where, /*allow_empty=*/false);
  if (!paths) return fail(paths.error());
  return PolicyRule{std::move(caller).value(), std::move(callee).value(), std::move(methods).value(),
                    std::move(paths).value()};
}

}  // namespace

bool Policy::is_allowed(const PolicyRequest& request) const {
  return std::any_of(rules_.begin(), rules_.end(), [&](const PolicyRule& rule) {
    return pattern_matches(rule.caller, request.caller) && pattern_matches(rule.callee, request.callee) &&
           method_matches(rule.methods, request.method) && any_matches(rule.paths, request.path);
  });
}

Result<std::shared_ptr<const Policy>> Policy::parse(std::string_view json_text) {
  nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail("the policy is not valid JSON");
  if (!doc.is_object()) return fail("the policy must be a JSON object");
  for (const auto& [key, value] : doc.items()) {
    if (key != "version" && key != "rules") return fail("unknown top-level key \"" + key + "\"");
  }
  if (!doc.contains("version")) return fail("\"version\" is missing");
  const auto& version = doc["version"];
  if (!version.is_number_integer() || (version.get<long long>() != 1 && version.get<long long>() != 2)) {
    return fail("\"version\" must be 1 or 2");
  }
  if (!doc.contains("rules") || !doc["rules"].is_array()) return fail("\"rules\" must be an array");
  auto policy = std::make_shared<Policy>();
  policy->version_ = static_cast<int>(version.get<long long>());
  size_t index = 0;
  for (const auto& rule : doc["rules"]) {
    std::string where = "rules[" + std::to_string(index++) + "]";
    if (!rule.is_object()) return fail(where + " must be an object");
    auto parsed = policy->version_ == 1 ? parse_v1_rule(rule, where) : parse_v2_rule(rule, where);
    if (!parsed) return fail(parsed.error());
    policy->rules_.push_back(std::move(parsed).value());
  }
  return std::shared_ptr<const Policy>(std::move(policy));
}

Result<std::shared_ptr<const Policy>> Policy::load_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return fail(text.error());
  auto policy = parse(text.value());
  if (!policy) return fail(path + ": " + policy.error());
  return policy;
}

}  // namespace zt
