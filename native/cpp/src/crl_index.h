// CRLs, loaded once and indexed (docs/contracts.md section 3).
//
// Why not let OpenSSL check CRLs (X509_V_FLAG_CRL_CHECK)? Stock OpenSSL re-verifies the
// CRL's signature on every handshake: for a 100k-entry CRL that means hashing megabytes of
// DER per handshake (~2 ms, 20x the cost of the handshake itself). The signature cannot change
// between handshakes, so we verify it once, here, and keep only what a handshake needs:
// per CRL, its issuer (name and public key) and a hash set of revoked serial numbers.
// bench/bench_crl_handshake.cc measures the difference.
//
// Load rules:
//   - the file may hold several PEM CRLs (e.g. the intermediate's and a root CRL);
//   - each must be signed by a CA certificate the service knows (trust bundle or the CA
//     certificates of its own chain.pem) that may sign CRLs (cRLSign when key usage is set);
//   - each must carry nextUpdate (staleness is judged by it);
//   - delta CRLs, indirect CRLs, partitioned-by-reason CRLs and unknown critical extensions
//     are refused: we would not know what they cover (RFC 5280 5.2, 5.3);
//   - of several CRLs by the same issuer, the one with the highest CRL number wins.
#pragma once

#include "ossl.h"
#include "result.h"

#include <ctime>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace zt {

struct CrlSummary {
  std::string issuer;      // RFC 2253
  std::string crl_number;  // decimal; "" when absent
  size_t entries = 0;
  std::time_t this_update = 0;
  std::time_t next_update = 0;
};

enum class Revocation { NotCovered, Good, Revoked };

struct CrlCheck {
  Revocation status = Revocation::NotCovered;
  bool stale = false;           // the covering CRL is past nextUpdate
  std::time_t next_update = 0;  // of the covering CRL
};

class CrlIndex {
 public:
  static Result<std::shared_ptr<const CrlIndex>> load_file(const std::string& path,
                                                           const std::vector<X509*>& ca_certs,
                                                           std::time_t now);
  static Result<std::shared_ptr<const CrlIndex>> parse(const std::string& pem, const std::string& label,
                                                       const std::vector<X509*>& ca_certs,
                                                       std::time_t now);

  // Looks `cert` up in the CRL issued by `issuer` (the next certificate of the verified
  // chain). NotCovered when no loaded CRL was issued by that CA. Thread-safe.
  CrlCheck check(const X509* cert, const X509* issuer, std::time_t now) const;

  const std::string& path() const { return path_; }
  size_t entries() const;
  // Earliest nextUpdate over the loaded CRLs.
  std::time_t earliest_next_update() const;
  bool is_stale(std::time_t now) const { return now > earliest_next_update(); }
  std::vector<CrlSummary> summaries() const;

  struct Crl {
    X509NamePtr issuer;
    EvpPkeyPtr signer_key;
    // The signer's public key as encoded in its certificate (algorithm and key bits): a
    // lookup compares these bytes, not the keys. EVP_PKEY_eq costs tens of microseconds per
    // call on EC keys in OpenSSL 3, which dominated the per-connection re-check of issue 18.
    X509AlgorPtr signer_key_alg;
    std::string signer_key_bits;
    BignumPtr number;  // null when the CRL has no CRL number
    std::unordered_set<std::string> serials;
    CrlSummary summary;
  };

 private:
  CrlIndex() = default;
  std::string path_;
  std::vector<Crl> crls_;
};

// The hash-set key of a serial number: sign and big-endian magnitude bytes.
std::string serial_key(const ASN1_INTEGER* serial);

}  // namespace zt
