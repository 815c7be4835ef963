// The authorisation policy file (docs/contracts.md section 4), shared with service-b.
//
//   version 1: {"version": 1, "rules": [{"caller": "<pattern>", "allow": ["<pattern>", ...]}]}
//   version 2: {"version": 2, "rules": [{"caller": "<pattern>", "callee": "<pattern>",
//                                         "methods": ["GET", ...|"*"], "paths": ["<pattern>"]}]}
//
// Version 2 lets one file serve the whole mesh: a rule names the callee (matched against the
// serving service's own SPIFFE ID), so "service-a may call service-b's /hello" does not also
// open service-a's /hello. A version 1 rule is read as callee "*", methods "*", paths = allow,
// so old files keep their meaning.
//
// Deny by default: a request is allowed when some rule matches caller, callee, method and path
// (without the query string). A pattern matches by string equality, or, when it ends with '*',
// by prefix (everything before the '*'). No other wildcards. Unknown or missing keys, empty
// lists (version 2) and non-strings are errors, so a typo never silently widens or narrows
// access.
#pragma once

#include "result.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zt {

struct PolicyRule {
  std::string caller;
  std::string callee;                // "*" for a version 1 rule
  std::vector<std::string> methods;  // upper-case methods or "*"; {"*"} for a version 1 rule
  std::vector<std::string> paths;    // version 1: the rule's "allow"
};

// What a request asks for, as the policy sees it.
struct PolicyRequest {
  std::string_view caller;  // the caller's SPIFFE ID
  std::string_view callee;  // the serving service's own SPIFFE ID
  std::string_view method;
  std::string_view path;  // without the query string
};

class Policy {
 public:
  static Result<std::shared_ptr<const Policy>> parse(std::string_view json_text);
  static Result<std::shared_ptr<const Policy>> load_file(const std::string& path);

  bool is_allowed(const PolicyRequest& request) const;
  int version() const { return version_; }
  const std::vector<PolicyRule>& rules() const { return rules_; }

 private:
  int version_ = 1;
  std::vector<PolicyRule> rules_;
};

// The contract's matching rule for one pattern.
bool pattern_matches(std::string_view pattern, std::string_view value);

}  // namespace zt
