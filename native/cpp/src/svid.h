// The X509-SVID checks a validator makes on a leaf, beyond RFC 5280 path validation
// (spiffe/spiffe standards/X509-SVID.md section 5.2; docs/svid-rules.md, section 2):
//
//   - exactly one URI SAN, and it is a SPIFFE ID with a non-root path (2, 3.1);
//   - an empty Subject only with a critical subjectAltName extension (3.1; RFC 5280 4.1.2.6);
//   - basicConstraints cA=false: a signing certificate never authenticates (3.2, 4.1);
//   - key usage present and critical, with digitalSignature, without keyCertSign or cRLSign
//     (4.3);
//   - an EKU, when present, with both serverAuth and clientAuth (4.4).
//
// These are stricter than OpenSSL's TLS purpose checks, which accept keyAgreement in place
// of digitalSignature and need only the EKU of the role.
//
// Chain validation, validity periods and revocation are checked elsewhere (the chain by
// OpenSSL, revocation by CrlIndex); this file only looks at the leaf itself.
#pragma once

#include "ossl.h"
#include "result.h"
#include "spiffe_id.h"

#include <ctime>
#include <optional>
#include <string>

namespace zt {

struct SvidInfo {
  SpiffeId id;
  std::string serial;  // contract format (x509_util.h)
  std::time_t not_after = 0;
};

Result<SvidInfo> inspect_svid_leaf(X509* leaf);

// The caller's claimed identity for log lines about a rejected peer: its first URI SAN
// (whatever it is), or nothing. Never used for an authorisation decision.
std::optional<std::string> claimed_uri(const X509* leaf);

}  // namespace zt
