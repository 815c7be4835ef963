// The per-handshake check of a peer's certificate chain, shared by the server (callers) and
// the /call client (upstreams).
//
// Installed with SSL_CTX_set_cert_verify_callback, so it runs in place of OpenSSL's own
// X509_verify_cert call and sees the whole result at once:
//
//   1. RFC 5280 path validation against the trust bundle (OpenSSL, no CRL flags);
//   2. revocation: each certificate of the verified chain except the trust anchor is looked
//      up in the CrlIndex (a hash lookup: the CRL signatures were verified at load);
//      a covering CRL past nextUpdate refuses the handshake in `refuse` mode;
//   3. the X509-SVID leaf rules, and the caller's trust domain must be ours.
//
// A failure sets the X509 error OpenSSL reports to the peer as an alert (certificate revoked,
// certificate expired, ...) and records the contract's reason name for metrics and logs in a
// VerifyOutcome attached to the SSL object.
#pragma once

#include "crl_index.h"
#include "handshake_failure.h"
#include "ossl.h"

#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace zt {

enum class CrlStaleMode { Refuse, Warn };

// What the verifier learnt about one peer; filled during the handshake.
struct VerifyOutcome {
  std::optional<FailureReason> reason;  // set when the verifier refused the chain
  std::string detail;                   // human-readable cause
  std::string peer_spiffe_id;           // the claimed URI SAN, when present
  std::string peer_serial;
};

class PeerVerifier {
 public:
  // `on_stale` is called (from handshake threads) whenever a stale CRL covered a peer's chain.
  PeerVerifier(std::string trust_domain, std::shared_ptr<const CrlIndex> crl, CrlStaleMode mode,
               std::function<void(std::time_t next_update)> on_stale);

  // Installs this verifier on `ctx`; it must outlive `ctx`.
  void install(SSL_CTX* ctx) const;

  // Where the verifier records its findings for one connection (may be never set).
  static void attach_outcome(SSL* ssl, VerifyOutcome* outcome);
  static VerifyOutcome* outcome_of(const SSL* ssl);

  // The X509_verify_cert replacement; returns 1 to accept.
  int verify(X509_STORE_CTX* store_ctx) const;

  const std::string& trust_domain() const { return trust_domain_; }

 private:
  std::string trust_domain_;
  std::shared_ptr<const CrlIndex> crl_;
  CrlStaleMode mode_;
  std::function<void(std::time_t)> on_stale_;
};

// Maps an X509_V_ERR_* code from path validation to the contract's reason.
FailureReason reason_for_verify_error(int x509_error);

}  // namespace zt
