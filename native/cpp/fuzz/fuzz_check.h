// What a fuzz target does when an invariant breaks: abort, so libFuzzer records the input as
// a crash (fuzz.sh then fails and keeps it). A plain assert() would vanish under NDEBUG.
#pragma once

#include <cstdio>
#include <cstdlib>

#define ZT_FUZZ_CHECK(cond)                                                          \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      (void)std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)
