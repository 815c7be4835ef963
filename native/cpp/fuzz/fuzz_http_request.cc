// libFuzzer target: RequestParser (src/http_request.cc) and parse_query on arbitrary bytes,
// the first thing service-a does with what a peer sends after the handshake.
//
// The first input byte picks the size of the pieces the rest is fed in (1 to 256 bytes), as
// TLS records would deliver it, so the incremental paths (a head split anywhere, pipelined
// requests, a body across pieces) are exercised, not only whole-buffer parsing. Complete
// requests are taken and the parser continues with the next one, as a keep-alive connection
// does. Checks: a failure is one of the contract's statuses (400, 413, 431) with a code, a
// taken request has a method and a path without the query, and the loop always ends.
#include "fuzz_check.h"
#include "http_request.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = size_t{data[0]} + 1;
  const char* rest = reinterpret_cast<const char*>(data + 1);
  size_t left = size - 1;
  zt::RequestParser parser;
  // Each round either consumes input or completes/fails a request: bounded by the input size.
  for (size_t rounds = 0; rounds <= 2 * size + 2; ++rounds) {
    auto state = parser.parse();
    if (state == zt::RequestParser::State::Failed) {
      const auto& err = parser.error();
      ZT_FUZZ_CHECK(err.status == 400 || err.status == 413 || err.status == 431);
      ZT_FUZZ_CHECK(!err.code.empty() && !err.reason.empty());
      return 0;
    }
    if (state == zt::RequestParser::State::Complete) {
      zt::Request r = parser.take();
      ZT_FUZZ_CHECK(!r.method.empty());
      ZT_FUZZ_CHECK(r.path.find('?') == std::string::npos);
      (void)zt::parse_query(r.query);
      continue;
    }
    if (left == 0) return 0;  // NeedMore and nothing more to give
    size_t n = std::min(piece, left);
    parser.append(rest, n);
    rest += n;
    left -= n;
  }
  (void)std::fprintf(stderr, "the parse loop did not end\n");
  std::abort();
}
