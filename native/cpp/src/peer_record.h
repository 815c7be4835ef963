// What a server remembers about the peer of one open connection (issue 18): the verified
// chain (serials and issuers, leaf first, trust anchor last) and the earliest notAfter in it.
//
// Why: TLS checks a peer only at the handshake. A keep-alive connection whose client was
// revoked a second later, or whose certificate expired, would otherwise be served for as long
// as the client keeps it busy. With this record the server re-checks open connections when a
// new CRL is loaded (one CrlIndex lookup per chain certificate, the same lookup a handshake
// does) and ends them when the certificate expires.
#pragma once

#include "crl_index.h"
#include "ossl.h"

#include <ctime>
#include <optional>
#include <string>
#include <vector>

namespace zt {

class PeerRecord {
 public:
  PeerRecord() = default;
  // The chain the verifier accepted for this connection (SSL_get0_verified_chain).
  static PeerRecord of(const SSL* ssl);
  // The same from a chain in hand (leaf first, trust anchor last); for tests and benchmarks.
  static PeerRecord of_chain(std::vector<X509Ptr> chain);

  // Why `crl` revokes this peer (serial and depth of the listed certificate), or nullopt.
  // Certificates whose issuer has no CRL in the index are not covered, as at the handshake.
  std::optional<std::string> revoked_by(const CrlIndex& crl, std::time_t now) const;
  // True once any certificate of the chain is past its notAfter.
  bool expired(std::time_t now) const { return has_chain() && now > not_after_; }
  std::time_t not_after() const { return not_after_; }
  bool has_chain() const { return !chain_.empty(); }

 private:
  std::vector<X509Ptr> chain_;  // up-referenced; leaf first, trust anchor last
  std::time_t not_after_ = 0;
};

}  // namespace zt
