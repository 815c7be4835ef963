// SPIFFE ID syntax (spiffe/spiffe standards/SPIFFE-ID.md, summarised in
// docs/svid-rules.md, section 1):
//
//   spiffe://<trust-domain><path>
//   - scheme exactly "spiffe"; no userinfo, port, query or fragment;
//   - trust domain: non-empty, lowercase, only a-z 0-9 . - _, no percent-encoding;
//   - path: empty (the trust domain's own ID) or "/"-separated segments that are non-empty,
//     not "." or "..", and use only A-Z a-z 0-9 . - _;
//   - at most 2048 bytes in all, trust domain at most 255.
//
// Parsing is strict and never normalises: a string either is a SPIFFE ID exactly as written
// or it is rejected with a reason.
#pragma once

#include "result.h"

#include <string>
#include <string_view>

namespace zt {

class SpiffeId {
 public:
  static Result<SpiffeId> parse(std::string_view text);
  // A workload (leaf) ID: like parse(), and the path must not be empty (X509-SVID 3.1).
  static Result<SpiffeId> parse_workload(std::string_view text);

  const std::string& str() const { return text_; }
  const std::string& trust_domain() const { return trust_domain_; }
  const std::string& path() const { return path_; }  // "" or starts with "/"

  friend bool operator==(const SpiffeId& a, const SpiffeId& b) { return a.text_ == b.text_; }

 private:
  SpiffeId(std::string text, std::string td, std::string path)
      : text_(std::move(text)), trust_domain_(std::move(td)), path_(std::move(path)) {}
  std::string text_;
  std::string trust_domain_;
  std::string path_;
};

}  // namespace zt
