// The service's own identity, read from the agent's certificate directory by the reader's
// contract (docs/contracts.md section 2):
//
//   1. resolve DIR/current once (realpath) to one generation directory;
//   2. read key.pem, chain.pem and bundle.pem from that directory only;
//   3. when the generation has bundle.pem.sha256 (the agent writes it: contract B), bundle.pem
//      must hash to it, so a bundle edited on disk after the agent verified it is refused
//      rather than trusted;
//   4. validate what was read: the key matches the leaf, the chain verifies against the
//      bundle, the leaf is an X509-SVID.
//
// Because every file comes from one resolved generation, a new certificate can never be
// paired with an old key, however the agent's symlink moves while we read.
#pragma once

#include "ossl.h"
#include "result.h"
#include "spiffe_id.h"

#include <ctime>
#include <memory>
#include <string>
#include <vector>

namespace zt {

struct Identity {
  std::string generation_dir;  // realpath(DIR/current) at load time
  EvpPkeyPtr key;
  X509Ptr leaf;
  std::vector<X509Ptr> intermediates;  // chain.pem after the leaf
  std::vector<X509Ptr> bundle;         // trust anchors
  SpiffeId id;
  std::string serial;
  std::time_t not_after = 0;

  // The CA certificates this service knows (bundle and intermediates): the only
  // certificates a CRL may be signed by (contracts section 3).
  std::vector<X509*> ca_certs() const;
};

// realpath(DIR/current); an error when it does not resolve to a directory.
Result<std::string> resolve_current(const std::string& cert_dir);

Result<std::shared_ptr<const Identity>> load_identity(const std::string& cert_dir);

inline constexpr const char* kBundleChecksumFile = "bundle.pem.sha256";
// The reason every checksum failure starts with (logs and tests look for it).
inline constexpr const char* kBundleChecksumMismatch = "bundle_checksum_mismatch";

// Step 3 above: ok when `gen_dir` has no bundle.pem.sha256, or when `bundle_pem` (the bytes
// read from gen_dir/bundle.pem) hashes to the one sha256sum line it holds ("<64 hex>  bundle.pem").
// Anything else (mismatch, unreadable or malformed checksum file) is an error starting with
// kBundleChecksumMismatch.
Status check_bundle_checksum(const std::string& gen_dir, const std::string& bundle_pem);

}  // namespace zt
