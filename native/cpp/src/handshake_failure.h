// The reasons an inbound handshake is refused, as named by the contract (docs/contracts.md
// section 6). Used for the mtls_handshake_failures_total label and handshake_rejected logs.
#pragma once

#include <array>
#include <string_view>

namespace zt {

enum class FailureReason {
  NoClientCert,
  Untrusted,
  Expired,
  Revoked,
  BadSpiffeId,
  CrlStale,
  Timeout,
  Protocol,
};

constexpr std::array<FailureReason, 8> kAllFailureReasons = {
    FailureReason::NoClientCert, FailureReason::Untrusted,   FailureReason::Expired,
    FailureReason::Revoked,      FailureReason::BadSpiffeId, FailureReason::CrlStale,
    FailureReason::Timeout,      FailureReason::Protocol,
};

constexpr std::string_view reason_name(FailureReason r) {
  switch (r) {
    case FailureReason::NoClientCert: return "no_client_cert";
    case FailureReason::Untrusted: return "untrusted";
    case FailureReason::Expired: return "expired";
    case FailureReason::Revoked: return "revoked";
    case FailureReason::BadSpiffeId: return "bad_spiffe_id";
    case FailureReason::CrlStale: return "crl_stale";
    case FailureReason::Timeout: return "timeout";
    case FailureReason::Protocol: return "protocol";
  }
  return "protocol";
}

}  // namespace zt
