#include "peer_verifier.h"

#include "svid.h"
#include "x509_util.h"

namespace zt {
namespace {

int outcome_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int verify_trampoline(X509_STORE_CTX* store_ctx, void* arg) {
  return static_cast<const PeerVerifier*>(arg)->verify(store_ctx);
}

}  // namespace

FailureReason reason_for_verify_error(int x509_error) {
  switch (x509_error) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
      return FailureReason::Expired;
    case X509_V_ERR_CERT_REVOKED:
      return FailureReason::Revoked;
    case X509_V_ERR_CRL_HAS_EXPIRED:
      return FailureReason::CrlStale;
    default:
      return FailureReason::Untrusted;
  }
}

PeerVerifier::PeerVerifier(std::string trust_domain, std::shared_ptr<const CrlIndex> crl,
                           CrlStaleMode mode, std::function<void(std::time_t)> on_stale)
    : trust_domain_(std::move(trust_domain)),
      crl_(std::move(crl)),
      mode_(mode),
      on_stale_(std::move(on_stale)) {}

void PeerVerifier::install(SSL_CTX* ctx) const {
  SSL_CTX_set_cert_verify_callback(ctx, verify_trampoline, const_cast<PeerVerifier*>(this));
}

void PeerVerifier::attach_outcome(SSL* ssl, VerifyOutcome* outcome) {
  SSL_set_ex_data(ssl, outcome_index(), outcome);
}

VerifyOutcome* PeerVerifier::outcome_of(const SSL* ssl) {
  return static_cast<VerifyOutcome*>(SSL_get_ex_data(ssl, outcome_index()));
}

int PeerVerifier::verify(X509_STORE_CTX* store_ctx) const {
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  VerifyOutcome scratch;
  VerifyOutcome* out = ssl == nullptr ? nullptr : outcome_of(ssl);
  if (out == nullptr) out = &scratch;

  X509* leaf = X509_STORE_CTX_get0_cert(store_ctx);
  if (leaf != nullptr) {
    out->peer_spiffe_id = claimed_uri(leaf).value_or("");
    out->peer_serial = cert_serial_hex(leaf);
  }
  auto refuse = [&](FailureReason reason, int x509_error, int depth, std::string detail) {
    X509_STORE_CTX_set_error_depth(store_ctx, depth);
    X509_STORE_CTX_set_error(store_ctx, x509_error);
    out->reason = reason;
    out->detail = std::move(detail);
    return 0;
  };

  // 1. Path validation.
  if (X509_verify_cert(store_ctx) != 1) {
    int err = X509_STORE_CTX_get_error(store_ctx);
    int depth = X509_STORE_CTX_get_error_depth(store_ctx);
    ERR_clear_error();
    if (err == X509_V_ERR_INVALID_PURPOSE && depth == 0 && leaf != nullptr &&
        (X509_get_extension_flags(leaf) & EXFLAG_CA) != 0) {
      // A CA certificate presented as a leaf: a signing certificate never authenticates.
      return refuse(FailureReason::BadSpiffeId, err, 0,
                    "the certificate is a CA (cA=true); a signing certificate cannot authenticate "
                    "(X509-SVID 3.2, 4.1)");
    }
    if (err == X509_V_ERR_INVALID_PURPOSE && depth == 0 && leaf != nullptr) {
      // The leaf's key usage or EKU does not fit the TLS role (a serverAuth-only caller, a
      // clientAuth-only upstream): an X509-SVID rule, named by the leaf check (4.3, 4.4).
      if (auto svid = inspect_svid_leaf(leaf); !svid) {
        return refuse(FailureReason::BadSpiffeId, err, 0, svid.error());
      }
    }
    return refuse(reason_for_verify_error(err), err, depth,
                  std::string(X509_verify_cert_error_string(err)) + " (depth " +
                      std::to_string(depth) + ")");
  }

  // 2. Revocation, against the index (never X509_V_FLAG_CRL_CHECK).
  if (crl_) {
    std::time_t now = std::time(nullptr);
    STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(store_ctx);
    int n = sk_X509_num(chain);
    for (int i = 0; i + 1 < n; ++i) {  // the last one is the trust anchor
      X509* cert = sk_X509_value(chain, i);
      CrlCheck c = crl_->check(cert, sk_X509_value(chain, i + 1), now);
      if (c.status == Revocation::Revoked) {
        return refuse(FailureReason::Revoked, X509_V_ERR_CERT_REVOKED, i,
                      "certificate revoked (serial " + cert_serial_hex(cert) + ", depth " +
                          std::to_string(i) + ")");
      }
      if (c.status == Revocation::Good && c.stale) {
        if (on_stale_) on_stale_(c.next_update);
        if (mode_ == CrlStaleMode::Refuse) {
          return refuse(FailureReason::CrlStale, X509_V_ERR_CRL_HAS_EXPIRED, i,
                        "the CRL covering depth " + std::to_string(i) + " is past its nextUpdate " +
                            rfc3339(c.next_update) + " (--crl-stale refuse)");
        }
      }
    }
  }

  // 3. X509-SVID leaf rules and the trust domain.
  auto svid = inspect_svid_leaf(leaf);
  if (!svid) {
    return refuse(FailureReason::BadSpiffeId, X509_V_ERR_APPLICATION_VERIFICATION, 0, svid.error());
  }
  if (svid->id.trust_domain() != trust_domain_) {
    return refuse(FailureReason::BadSpiffeId, X509_V_ERR_APPLICATION_VERIFICATION, 0,
                  svid->id.str() + " is not in trust domain " + trust_domain_);
  }
  return 1;
}

}  // namespace zt
