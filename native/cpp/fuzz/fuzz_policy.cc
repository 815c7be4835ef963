// libFuzzer target: Policy::parse (src/policy.cc), version 1 and 2 files, on arbitrary bytes.
// The policy file is operator input, but a bad one must be refused with a message, never
// crash the service on reload.
//
// Checks what the contract (docs/contracts.md section 4) promises of an accepted file: the
// version is 1 or 2, every v1 rule reads as callee "*" / methods {"*"}, every v2 rule has
// non-empty methods and paths, and each rule admits the request it literally names (its
// caller, callee, first method, first path, with a trailing '*' standing for any suffix).
#include "fuzz_check.h"
#include "policy.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

// A value the pattern matches: the pattern itself, or its prefix when it ends with '*'.
std::string instance_of(const std::string& pattern) {
  if (!pattern.empty() && pattern.back() == '*') return pattern.substr(0, pattern.size() - 1) + "x";
  return pattern;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto policy = zt::Policy::parse(text);
  if (!policy) {
    ZT_FUZZ_CHECK(!policy.error().empty());
    return 0;
  }
  const zt::Policy& p = *policy.value();
  ZT_FUZZ_CHECK(p.version() == 1 || p.version() == 2);
  for (const zt::PolicyRule& rule : p.rules()) {
    ZT_FUZZ_CHECK(!rule.caller.empty() && !rule.callee.empty() && !rule.methods.empty());
    if (p.version() == 1) {
      ZT_FUZZ_CHECK(rule.callee == "*" && rule.methods.size() == 1 && rule.methods[0] == "*");
    } else {
      ZT_FUZZ_CHECK(!rule.paths.empty());
    }
    if (rule.paths.empty()) continue;  // a v1 rule may allow nothing
    std::string caller = instance_of(rule.caller);
    std::string callee = instance_of(rule.callee);
    std::string method = rule.methods[0] == "*" ? "GET" : rule.methods[0];
    std::string path = instance_of(rule.paths[0]);
    ZT_FUZZ_CHECK(p.is_allowed(zt::PolicyRequest{caller, callee, method, path}));
  }
  return 0;
}
