// The authorisation policy file (docs/contracts.md section 4), shared with service-b.
//
//   {"version": 1, "rules": [{"caller": "<pattern>", "allow": ["<pattern>", ...]}, ...]}
//
// Deny by default: a request is allowed when some rule's caller pattern matches the caller's
// SPIFFE ID and one of its allow patterns matches the path (without the query string). A
// pattern matches by string equality, or, when it ends with '*', by prefix (everything before
// the '*'). No other wildcards. Unknown keys are errors, so a typo never silently widens or
// narrows access.
#pragma once

#include "result.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zt {

struct PolicyRule {
  std::string caller;
  std::vector<std::string> allow;
};

class Policy {
 public:
  static Result<std::shared_ptr<const Policy>> parse(std::string_view json_text);
  static Result<std::shared_ptr<const Policy>> load_file(const std::string& path);

  bool is_allowed(std::string_view caller, std::string_view path) const;
  const std::vector<PolicyRule>& rules() const { return rules_; }

 private:
  std::vector<PolicyRule> rules_;
};

// The contract's matching rule for one pattern.
bool pattern_matches(std::string_view pattern, std::string_view value);

}  // namespace zt
