#include "peer_record.h"

#include "x509_util.h"

#include <algorithm>

namespace zt {

PeerRecord PeerRecord::of(const SSL* ssl) {
  std::vector<X509Ptr> certs;
  STACK_OF(X509)* chain = SSL_get0_verified_chain(ssl);
  int n = chain == nullptr ? 0 : sk_X509_num(chain);
  certs.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) certs.push_back(up_ref(sk_X509_value(chain, i)));
  return of_chain(std::move(certs));
}

PeerRecord PeerRecord::of_chain(std::vector<X509Ptr> chain) {
  PeerRecord r;
  for (size_t i = 0; i < chain.size(); ++i) {
    std::time_t t = asn1_time_to_unix(X509_get0_notAfter(chain[i].get()));
    r.not_after_ = i == 0 ? t : std::min(r.not_after_, t);
  }
  r.chain_ = std::move(chain);
  return r;
}

std::optional<std::string> PeerRecord::revoked_by(const CrlIndex& crl, std::time_t now) const {
  for (size_t i = 0; i + 1 < chain_.size(); ++i) {  // the last one is the trust anchor
    CrlCheck c = crl.check(chain_[i].get(), chain_[i + 1].get(), now);
    if (c.status == Revocation::Revoked) {
      return "certificate revoked (serial " + cert_serial_hex(chain_[i].get()) + ", depth " + std::to_string(i) + ")";
    }
  }
  return std::nullopt;
}

}  // namespace zt
