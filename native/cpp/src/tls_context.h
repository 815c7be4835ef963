// The context builder: turns validated material (identity, CRL index) into the two
// SSL_CTXs the service uses, the server's (callers) and the /call client's (upstreams).
//
// A factory in the house style: it returns both contexts fully built and checked (the key
// matches the certificate, the chain is installed, verification is wired), or an error
// carrying the OpenSSL error stack. Settings, all from the contract:
//   - TLS 1.2 and 1.3 only;
//   - the server requires a client certificate (SSL_VERIFY_PEER | FAIL_IF_NO_PEER_CERT);
//   - peers are verified by PeerVerifier (bundle, CRL index, X509-SVID rules, trust domain);
//   - no host name check on the client: SPIFFE identity is checked instead;
//   - no session resumption on the server: a resumed session would skip the revocation and
//     staleness checks of a full handshake.
#pragma once

#include "crl_index.h"
#include "identity.h"
#include "ossl.h"
#include "peer_verifier.h"
#include "result.h"

#include <functional>
#include <memory>

namespace zt {

// How revocation is checked. Stock exists only so bench_crl_handshake can measure what the
// index saves; the service always uses Indexed.
enum class RevocationMode { Indexed, StockOpenSsl };

struct ContextOptions {
  CrlStaleMode stale_mode = CrlStaleMode::Refuse;
  RevocationMode revocation = RevocationMode::Indexed;
  std::function<void(std::time_t)> on_stale;  // see PeerVerifier
};

struct TlsContexts {
  // Declared first so it is destroyed last: both contexts point at it.
  std::unique_ptr<PeerVerifier> verifier;
  std::shared_ptr<const Identity> identity;
  std::shared_ptr<const CrlIndex> crl;
  std::shared_ptr<SSL_CTX> server;
  std::shared_ptr<SSL_CTX> client;
};

// `crl` may be null (no CRL configured). `stock_crl_pem` is only read in StockOpenSsl mode.
Result<std::shared_ptr<const TlsContexts>> build_contexts(std::shared_ptr<const Identity> identity,
                                                          std::shared_ptr<const CrlIndex> crl,
                                                          const ContextOptions& options,
                                                          const std::string& stock_crl_pem = "");

}  // namespace zt
