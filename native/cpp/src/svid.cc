#include "svid.h"

#include "x509_util.h"

namespace zt {

Result<SvidInfo> inspect_svid_leaf(X509* leaf) {
  std::vector<std::string> uris = uri_sans(leaf);
  if (uris.empty()) return fail("the certificate has no URI SAN (X509-SVID 2)");
  if (uris.size() > 1) {
    return fail("the certificate has " + std::to_string(uris.size()) +
                " URI SANs; an X509-SVID has exactly one (X509-SVID 2)");
  }
  auto id = SpiffeId::parse_workload(uris[0]);
  if (!id) return fail(id.error());

  // X509_get_extension_flags() also makes OpenSSL cache the decoded extensions.
  uint32_t flags = X509_get_extension_flags(leaf);
  if ((flags & EXFLAG_INVALID) != 0) return fail("the certificate has malformed extensions");
  if ((flags & EXFLAG_CA) != 0) {
    return fail("the certificate is a CA (cA=true); a signing certificate cannot authenticate "
                "(X509-SVID 3.2, 4.1)");
  }
  if ((flags & EXFLAG_KUSAGE) == 0) return fail("the certificate has no key usage (X509-SVID 4.3)");
  uint32_t ku = X509_get_key_usage(leaf);
  if ((ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != 0) {
    return fail("the leaf's key usage includes keyCertSign or cRLSign (X509-SVID 4.3)");
  }
  return SvidInfo{std::move(id).value(), cert_serial_hex(leaf),
                  asn1_time_to_unix(X509_get0_notAfter(leaf))};
}

std::optional<std::string> claimed_uri(const X509* leaf) {
  std::vector<std::string> uris = uri_sans(leaf);
  if (uris.empty()) return std::nullopt;
  return uris[0];
}

}  // namespace zt
