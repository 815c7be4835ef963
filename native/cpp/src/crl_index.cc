#include "crl_index.h"

#include "x509_util.h"

#include <openssl/pem.h>

#include <algorithm>
#include <cstring>

namespace zt {
namespace {

// A CRL whose thisUpdate is further in the future than this is refused (clock skew allowance).
constexpr std::time_t kMaxFutureSkew = 300;
// RFC 5280 5.3.1: removeFromCRL only appears in delta CRLs; treat such an entry as not revoked.
constexpr long kReasonRemoveFromCrl = 8;

std::string bn_decimal(const BIGNUM* bn) {
  if (bn == nullptr) return "";
  char* dec = BN_bn2dec(bn);
  if (dec == nullptr) return "";
  std::string s(dec);
  OPENSSL_free(dec);
  return s;
}

Result<std::vector<X509CrlPtr>> parse_pem_crls(const std::string& pem, const std::string& label) {
  std::vector<X509CrlPtr> crls;
  BioPtr bio = memory_bio(pem);
  ERR_clear_error();
  for (;;) {
    X509CrlPtr crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    if (!crl) break;
    crls.push_back(std::move(crl));
  }
  unsigned long err = ERR_peek_last_error();
  if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
    ERR_clear_error();
  } else if (err != 0) {
    return fail(label + ": corrupt PEM CRL: " + drain_openssl_errors());
  }
  if (crls.empty()) return fail(label + ": no CRL found");
  return crls;
}

// RFC 5280 5.2/5.3: refuse what we cannot interpret rather than guess what a CRL covers.
Status check_extensions(X509_CRL* crl) {
  for (int i = 0; i < X509_CRL_get_ext_count(crl); ++i) {
    X509_EXTENSION* ext = X509_CRL_get_ext(crl, i);
    int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
    if (nid == NID_delta_crl) return fail("delta CRLs are not supported");
    if (nid == NID_issuing_distribution_point) {
      IssuingDistPointPtr idp(static_cast<ISSUING_DIST_POINT*>(X509V3_EXT_d2i(ext)));
      if (!idp) return fail("malformed issuingDistributionPoint extension");
      if (idp->indirectCRL != 0) return fail("indirect CRLs are not supported");
      if (idp->onlysomereasons != nullptr) return fail("CRLs partitioned by reason are not supported");
      continue;
    }
    bool understood = nid == NID_crl_number || nid == NID_authority_key_identifier;
    if (X509_EXTENSION_get_critical(ext) != 0 && !understood) {
      return fail("unsupported critical CRL extension " +
                  std::string(nid == NID_undef ? "(unknown OID)" : OBJ_nid2sn(nid)));
    }
  }
  return ok_status();
}

// Returns false for an entry that does not revoke (removeFromCRL), an error for an entry we
// cannot interpret.
Result<bool> entry_revokes(X509_REVOKED* rev) {
  const STACK_OF(X509_EXTENSION)* exts = X509_REVOKED_get0_extensions(rev);
  if (exts == nullptr || sk_X509_EXTENSION_num(exts) == 0) return true;
  bool revokes = true;
  for (int i = 0; i < sk_X509_EXTENSION_num(exts); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts, i);
    int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
    if (nid == NID_certificate_issuer) return fail("indirect CRL entries are not supported");
    if (nid == NID_crl_reason) {
      std::unique_ptr<ASN1_ENUMERATED, OsslDeleter<ASN1_ENUMERATED_free>> reason(
          static_cast<ASN1_ENUMERATED*>(X509V3_EXT_d2i(ext)));
      if (reason && ASN1_ENUMERATED_get(reason.get()) == kReasonRemoveFromCrl) revokes = false;
      continue;
    }
    if (X509_EXTENSION_get_critical(ext) != 0 && nid != NID_invalidity_date) {
      return fail("unsupported critical CRL entry extension");
    }
  }
  return revokes;
}

// A certificate's SubjectPublicKeyInfo as encoded: the algorithm (with parameters, e.g. the
// curve) and the key bits. Pointers into the certificate; no allocation.
struct KeyEncoding {
  const unsigned char* bits = nullptr;
  int len = 0;
  X509_ALGOR* alg = nullptr;
};

bool key_encoding(const X509* cert, KeyEncoding& out) {
  X509_PUBKEY* pub = X509_get_X509_PUBKEY(cert);
  return pub != nullptr && X509_PUBKEY_get0_param(nullptr, &out.bits, &out.len, &out.alg, pub) == 1 &&
         out.bits != nullptr && out.alg != nullptr;
}

// The known CA certificate whose key signed `crl`, or null.
X509* find_signer(X509_CRL* crl, const std::vector<X509*>& ca_certs) {
  for (X509* ca : ca_certs) {
    if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) != 0) continue;
    if (X509_check_ca(ca) == 0) continue;
    uint32_t flags = X509_get_extension_flags(ca);
    if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(ca) & KU_CRL_SIGN) == 0) continue;
    EVP_PKEY* key = X509_get0_pubkey(ca);
    if (key != nullptr && X509_CRL_verify(crl, key) == 1) return ca;
    ERR_clear_error();
  }
  return nullptr;
}

Result<CrlIndex::Crl> index_one(X509_CRL* crl, const std::string& where,
                                const std::vector<X509*>& ca_certs, std::time_t now) {
  std::string issuer = name_oneline(X509_CRL_get_issuer(crl));
  std::string ctx = where + " (issuer " + issuer + ")";
  if (auto st = check_extensions(crl); !st) return fail(ctx + ": " + st.error());
  X509* signer = find_signer(crl, ca_certs);
  if (signer == nullptr) {
    return fail(ctx + ": the signature does not verify against any known CA certificate "
                "(trust bundle or chain.pem)");
  }
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl);
  if (next == nullptr) return fail(ctx + ": no nextUpdate; staleness cannot be judged");
  CrlIndex::Crl out;
  out.summary.issuer = issuer;
  out.summary.this_update = asn1_time_to_unix(X509_CRL_get0_lastUpdate(crl));
  out.summary.next_update = asn1_time_to_unix(next);
  if (out.summary.this_update > now + kMaxFutureSkew) {
    return fail(ctx + ": thisUpdate " + rfc3339(out.summary.this_update) + " is in the future");
  }
  AsnIntegerPtr number(
      static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl, NID_crl_number, nullptr, nullptr)));
  if (number) {
    out.number.reset(ASN1_INTEGER_to_BN(number.get(), nullptr));
    out.summary.crl_number = bn_decimal(out.number.get());
  }
  out.issuer.reset(X509_NAME_dup(X509_CRL_get_issuer(crl)));
  out.signer_key = up_ref(X509_get0_pubkey(signer));
  KeyEncoding signer_enc;
  if (!key_encoding(signer, signer_enc)) return fail(ctx + ": cannot read the signer's public key encoding");
  out.signer_key_alg.reset(X509_ALGOR_dup(signer_enc.alg));
  if (!out.signer_key_alg) return fail(ctx + ": out of memory");
  out.signer_key_bits.assign(reinterpret_cast<const char*>(signer_enc.bits), static_cast<size_t>(signer_enc.len));
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl);
  int n = revoked == nullptr ? 0 : sk_X509_REVOKED_num(revoked);
  out.serials.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    X509_REVOKED* rev = sk_X509_REVOKED_value(revoked, i);
    auto revokes = entry_revokes(rev);
    if (!revokes) return fail(ctx + ": " + revokes.error());
    if (revokes.value()) out.serials.insert(serial_key(X509_REVOKED_get0_serialNumber(rev)));
  }
  out.summary.entries = out.serials.size();
  return out;
}

}  // namespace

std::string serial_key(const ASN1_INTEGER* serial) {
  const unsigned char* p = ASN1_STRING_get0_data(serial);
  int len = ASN1_STRING_length(serial);
  while (len > 1 && *p == 0) {
    ++p;
    --len;
  }
  std::string key(ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER ? "-" : "+");
  key.append(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
  return key;
}

Result<std::shared_ptr<const CrlIndex>> CrlIndex::load_file(const std::string& path,
                                                            const std::vector<X509*>& ca_certs,
                                                            std::time_t now) {
  auto pem = read_file(path);  // the whole file at once: it is replaced by rename(2)
  if (!pem) return fail(pem.error());
  return parse(pem.value(), path, ca_certs, now);
}

Result<std::shared_ptr<const CrlIndex>> CrlIndex::parse(const std::string& pem, const std::string& label,
                                                        const std::vector<X509*>& ca_certs,
                                                        std::time_t now) {
  auto crls = parse_pem_crls(pem, label);
  if (!crls) return fail(crls.error());
  std::shared_ptr<CrlIndex> index(new CrlIndex());
  index->path_ = label;
  int i = 0;
  for (auto& crl : crls.value()) {
    ++i;
    auto one = index_one(crl.get(), label + ": CRL #" + std::to_string(i), ca_certs, now);
    if (!one) return fail(one.error());
    Crl c = std::move(one).value();
    // Several CRLs by the same CA: the newest (highest CRL number) supersedes the others.
    auto same = std::find_if(index->crls_.begin(), index->crls_.end(), [&](const Crl& o) {
      return X509_NAME_cmp(o.issuer.get(), c.issuer.get()) == 0 &&
             EVP_PKEY_eq(o.signer_key.get(), c.signer_key.get()) == 1;
    });
    if (same == index->crls_.end()) {
      index->crls_.push_back(std::move(c));
    } else {
      bool newer = c.number && (!same->number || BN_cmp(c.number.get(), same->number.get()) > 0);
      if (newer) *same = std::move(c);
    }
  }
  ERR_clear_error();
  return std::shared_ptr<const CrlIndex>(std::move(index));
}

CrlCheck CrlIndex::check(const X509* cert, const X509* issuer, std::time_t now) const {
  CrlCheck result;
  const X509_NAME* issuer_name = X509_get_issuer_name(cert);
  KeyEncoding issuer_key;
  if (issuer == nullptr || !key_encoding(issuer, issuer_key)) return result;
  for (const Crl& c : crls_) {
    if (X509_NAME_cmp(c.issuer.get(), issuer_name) != 0) continue;
    // The same key: the same encoded algorithm (with its parameters) and the same key bits.
    if (static_cast<size_t>(issuer_key.len) != c.signer_key_bits.size() ||
        std::memcmp(issuer_key.bits, c.signer_key_bits.data(), c.signer_key_bits.size()) != 0 ||
        X509_ALGOR_cmp(issuer_key.alg, c.signer_key_alg.get()) != 0) {
      continue;
    }
    result.next_update = c.summary.next_update;
    result.stale = now > c.summary.next_update;
    result.status = c.serials.count(serial_key(X509_get0_serialNumber(cert))) != 0 ? Revocation::Revoked
                                                                                 : Revocation::Good;
    return result;
  }
  return result;
}

size_t CrlIndex::entries() const {
  size_t n = 0;
  for (const Crl& c : crls_) n += c.serials.size();
  return n;
}

std::time_t CrlIndex::earliest_next_update() const {
  std::time_t t = 0;
  for (const Crl& c : crls_) {
    if (t == 0 || c.summary.next_update < t) t = c.summary.next_update;
  }
  return t;
}

std::vector<CrlSummary> CrlIndex::summaries() const {
  std::vector<CrlSummary> out;
  for (const Crl& c : crls_) out.push_back(c.summary);
  return out;
}

}  // namespace zt
