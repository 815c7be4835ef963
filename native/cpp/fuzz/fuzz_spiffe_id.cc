// libFuzzer target: SpiffeId::parse and parse_workload (src/spiffe_id.cc) on arbitrary bytes.
// Caller SPIFFE IDs come from peer certificates, so every byte of them is attacker-chosen.
//
// Beyond "no crash, no sanitizer report", it checks what the parser promises: an accepted ID
// is exactly the input (never normalised), splits into "spiffe://" + trust domain + path,
// parses again to itself, and a workload ID is an ID with a non-empty path.
#include "fuzz_check.h"
#include "spiffe_id.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto id = zt::SpiffeId::parse(text);
  auto workload = zt::SpiffeId::parse_workload(text);
  if (workload) {
    ZT_FUZZ_CHECK(id.ok());
    ZT_FUZZ_CHECK(!workload->path().empty());
  }
  if (!id) {
    ZT_FUZZ_CHECK(!id.error().empty());
    return 0;
  }
  ZT_FUZZ_CHECK(id->str() == text);
  ZT_FUZZ_CHECK(id->str() == "spiffe://" + id->trust_domain() + id->path());
  ZT_FUZZ_CHECK(!id->trust_domain().empty());
  ZT_FUZZ_CHECK(id->path().empty() || id->path().front() == '/');
  auto again = zt::SpiffeId::parse(id->str());
  ZT_FUZZ_CHECK(again.ok() && again.value() == id.value());
  ZT_FUZZ_CHECK(workload.ok() == !id->path().empty());
  return 0;
}
