// The /call client: one outbound mTLS GET with the service's current identity
// (docs/contracts.md section 5).
//
// The upstream's chain is verified like a caller's (bundle, CRL index, X509-SVID rules, our
// trust domain) by the client SSL_CTX of the current snapshot; the host name is not checked,
// the SPIFFE ID is: it must equal the expected ID exactly. Connect and handshake are bounded
// by the handshake timeout, the response by the idle timeout.
#pragma once

#include "spiffe_id.h"
#include "tls_context.h"

#include <string>

namespace zt {

struct CallOptions {
  int handshake_timeout_ms = 5000;
  int response_timeout_ms = 30000;
};

struct CallOutcome {
  enum class Kind { Ok, BadTarget, UpstreamTls, IdentityMismatch, UpstreamError, Timeout };
  Kind kind = Kind::UpstreamError;
  std::string reason;       // for failures
  std::string peer;         // the upstream's SPIFFE ID, when the handshake got that far
  std::string peer_serial;
  int status = 0;           // the upstream's HTTP status
  std::string body;         // the upstream's body
};

// Validates an https URL and splits it; an error for anything else.
struct TargetUrl {
  std::string host;
  uint16_t port = 443;
  std::string path_and_query;
  std::string host_header;
};
Result<TargetUrl> parse_target_url(const std::string& url);

CallOutcome call_upstream(const TlsContexts& tls, const TargetUrl& target, const SpiffeId& expect,
                          const CallOptions& options);

}  // namespace zt
