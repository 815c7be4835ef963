#include "policy.h"

#include "x509_util.h"

#include <nlohmann/json.hpp>

namespace zt {

bool pattern_matches(std::string_view pattern, std::string_view value) {
  if (!pattern.empty() && pattern.back() == '*') {
    std::string_view prefix = pattern.substr(0, pattern.size() - 1);
    return value.substr(0, prefix.size()) == prefix;
  }
  return pattern == value;
}

bool Policy::is_allowed(std::string_view caller, std::string_view path) const {
  for (const PolicyRule& rule : rules_) {
    if (!pattern_matches(rule.caller, caller)) continue;
    for (const std::string& allow : rule.allow) {
      if (pattern_matches(allow, path)) return true;
    }
  }
  return false;
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
  if (!version.is_number_integer() || version.get<long long>() != 1) {
    return fail("\"version\" must be 1");
  }
  if (!doc.contains("rules") || !doc["rules"].is_array()) return fail("\"rules\" must be an array");
  auto policy = std::make_shared<Policy>();
  size_t index = 0;
  for (const auto& rule : doc["rules"]) {
    std::string where = "rules[" + std::to_string(index++) + "]";
    if (!rule.is_object()) return fail(where + " must be an object");
    for (const auto& [key, value] : rule.items()) {
      if (key != "caller" && key != "allow") return fail(where.append(": unknown key \"").append(key).append("\""));
    }
    if (!rule.contains("caller") || !rule["caller"].is_string() ||
        rule["caller"].get<std::string>().empty()) {
      return fail(where + ": \"caller\" must be a non-empty string");
    }
    if (!rule.contains("allow") || !rule["allow"].is_array()) {
      return fail(where + ": \"allow\" must be an array of strings");
    }
    PolicyRule r{rule["caller"].get<std::string>(), {}};
    for (const auto& a : rule["allow"]) {
      if (!a.is_string() || a.get<std::string>().empty()) {
        return fail(where + ": \"allow\" entries must be non-empty strings");
      }
      r.allow.push_back(a.get<std::string>());
    }
    policy->rules_.push_back(std::move(r));
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
