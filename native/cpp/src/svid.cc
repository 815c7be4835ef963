#include "svid.h"

#include "x509_util.h"

namespace zt {
namespace {

// Whether the certificate's (single: duplicates set EXFLAG_INVALID) extension `nid` is present
// and marked critical.
bool extension_is_critical(const X509* cert, int nid) {
  int pos = X509_get_ext_by_NID(cert, nid, -1);
  if (pos < 0) return false;
  return X509_EXTENSION_get_critical(X509_get_ext(cert, pos)) == 1;
}

}  // namespace

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
  // L-4: OpenSSL checks this only under X509_V_FLAG_X509_STRICT, which we do not set (it
  // brings other profile checks with it); our CA's leaves have a non-empty Subject.
  if (X509_NAME_entry_count(X509_get_subject_name(leaf)) == 0 &&
      !extension_is_critical(leaf, NID_subject_alt_name)) {
    return fail("the Subject is empty and the subjectAltName extension is not critical "
                "(X509-SVID 3.1; RFC 5280 4.1.2.6, 4.2.1.6)");
  }
  if ((flags & EXFLAG_KUSAGE) == 0) return fail("the certificate has no key usage (X509-SVID 4.3)");
  if (!extension_is_critical(leaf, NID_key_usage)) {
    return fail("the key usage extension is not critical (X509-SVID 4.3)");
  }
  uint32_t ku = X509_get_key_usage(leaf);
  if ((ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != 0) {
    return fail("the leaf's key usage includes keyCertSign or cRLSign (X509-SVID 4.3)");
  }
  // OpenSSL's TLS purposes also accept keyAgreement (client) or keyEncipherment (server).
  if ((ku & KU_DIGITAL_SIGNATURE) == 0) {
    return fail("the leaf's key usage lacks digitalSignature (X509-SVID 4.3)");
  }
  // OpenSSL's TLS purposes require only the EKU of the role (clientAuth for a caller,
  // serverAuth for an upstream); one SVID serves as both. No EKU at all is allowed (a SHOULD).
  if ((flags & EXFLAG_XKUSAGE) != 0) {
    constexpr uint32_t kBoth = XKU_SSL_SERVER | XKU_SSL_CLIENT;
    if ((X509_get_extended_key_usage(leaf) & kBoth) != kBoth) {
      return fail("the leaf's extended key usage lacks serverAuth or clientAuth (X509-SVID 4.4)");
    }
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
