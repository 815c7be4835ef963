#include "spiffe_id.h"

namespace zt {
namespace {

constexpr std::string_view kScheme = "spiffe://";
constexpr size_t kMaxIdLength = 2048;
constexpr size_t kMaxTrustDomainLength = 255;

bool is_trust_domain_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

bool is_path_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

// Names the offending character the way a person reads it.
std::string describe(char c) {
  switch (c) {
    case '@': return "'@' (userinfo is not allowed)";
    case ':': return "':' (a port is not allowed)";
    case '?': return "'?' (a query is not allowed)";
    case '#': return "'#' (a fragment is not allowed)";
    case '%': return "'%' (percent-encoding is not allowed)";
    default: break;
  }
  if (c >= 'A' && c <= 'Z') return std::string("'") + c + "' (the trust domain must be lowercase)";
  if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
    return "a non-printable or non-ASCII byte";
  }
  return std::string("'") + c + "'";
}

}  // namespace

Result<SpiffeId> SpiffeId::parse(std::string_view text) {
  std::string shown(text.substr(0, 200));
  if (text.empty()) return fail("empty SPIFFE ID");
  if (text.size() > kMaxIdLength) return fail("SPIFFE ID longer than 2048 bytes");
  if (text.substr(0, kScheme.size()) != kScheme) {
    return fail("'" + shown + "' is not a SPIFFE ID: the scheme must be spiffe://");
  }
  std::string_view rest = text.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view td = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  if (td.empty()) return fail("'" + shown + "': the trust domain is empty");
  if (td.size() > kMaxTrustDomainLength) return fail("'" + shown + "': trust domain longer than 255");
  for (char c : td) {
    if (!is_trust_domain_char(c)) {
      return fail("'" + shown + "': trust domain contains " + describe(c));
    }
  }
  // path: ("/" segment)*
  size_t pos = 0;
  while (pos < path.size()) {
    // path[pos] == '/'
    size_t next = path.find('/', pos + 1);
    std::string_view seg = path.substr(pos + 1, next == std::string_view::npos ? std::string_view::npos
                                                                               : next - pos - 1);
    if (seg.empty()) return fail("'" + shown + "': the path has an empty segment");
    if (seg == "." || seg == "..") return fail("'" + shown + "': the path has a '.' or '..' segment");
    for (char c : seg) {
      if (!is_path_char(c)) return fail("'" + shown + "': the path contains " + describe(c));
    }
    if (next == std::string_view::npos) break;
    pos = next;
  }
  return SpiffeId(std::string(text), std::string(td), std::string(path));
}

Result<SpiffeId> SpiffeId::parse_workload(std::string_view text) {
  auto id = parse(text);
  if (!id) return id;
  if (id->path().empty()) {
    return fail("'" + id->str() + "' has no path; a workload's SPIFFE ID needs one (X509-SVID 3.1)");
  }
  return id;
}

}  // namespace zt
