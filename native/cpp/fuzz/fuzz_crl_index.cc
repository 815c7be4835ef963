// libFuzzer target: CRL bytes -> CrlIndex (src/crl_index.cc), the loader service-a runs at
// start and on every reload of --crl.
//
// Two passes per input:
//   1. as-is: the bytes go straight to CrlIndex::parse (PEM decoding, one or several CRLs,
//      extension checks, the signature check against a CA the target made at start);
//   2. re-signed: each CRL the bytes decode to (PEM, or one or more concatenated DER CRLs) gets
//      the target's CA as issuer and is signed again with its key, then goes through
//      CrlIndex::parse as PEM. A mutated CRL never carries a valid signature, so without this
//      the fuzzer would stop at the signature check and never reach what comes after it
//      (nextUpdate, CRL number, the revoked entries and their extensions, the index).
// After a successful load it checks that a certificate of that CA is covered (Good or
// Revoked; the only CA the index knows signed every CRL in it) and that summaries() and
// entries() agree.
#include "crl_index.h"
#include "fuzz_check.h"
#include "ossl.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace {

// 2100-01-01: any thisUpdate the fuzzer writes is in the past, so the time checks never hide
// the code after them; staleness (now > nextUpdate) is then the common case, which is fine.
constexpr std::time_t kNow = 4102444800;

struct FuzzCa {
  zt::EvpPkeyPtr key;
  zt::X509Ptr cert;
  zt::X509Ptr leaf;  // issued by cert (unsigned: check() reads names and serials only)
};

zt::X509NamePtr name(const char* cn) {
  zt::X509NamePtr n(X509_NAME_new());
  X509_NAME_add_entry_by_txt(n.get(), "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("zt fuzz"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(n.get(), "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  return n;
}

// A self-signed P-256 CA with keyUsage keyCertSign + cRLSign, made once per process.
FuzzCa make_ca() {
  FuzzCa ca;
  ca.key.reset(EVP_EC_gen("P-256"));
  ca.cert.reset(X509_new());
  X509* c = ca.cert.get();
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), 1);
  zt::X509NamePtr subject = name("zt fuzz CA");
  X509_set_subject_name(c, subject.get());
  X509_set_issuer_name(c, subject.get());
  X509_gmtime_adj(X509_getm_notBefore(c), 0);
  X509_gmtime_adj(X509_getm_notAfter(c), 3600);
  X509_set_pubkey(c, ca.key.get());
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, c, c, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE"},
                            std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(c, ca.key.get(), EVP_sha256());
  ca.leaf.reset(X509_new());
  X509_set_issuer_name(ca.leaf.get(), subject.get());
  zt::X509NamePtr leaf_name = name("zt fuzz leaf");
  X509_set_subject_name(ca.leaf.get(), leaf_name.get());
  if (!ca.key || X509_check_ca(c) == 0) abort();
  return ca;
}

const FuzzCa& fuzz_ca() {
  static const FuzzCa ca = make_ca();
  return ca;
}

// Every CRL `bytes` decodes to: PEM blocks when it has any, else concatenated DER.
std::vector<zt::X509CrlPtr> decode(const std::string& bytes) {
  std::vector<zt::X509CrlPtr> out;
  zt::BioPtr bio = zt::memory_bio(bytes);
  while (zt::X509CrlPtr crl{PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)}) {
    out.push_back(std::move(crl));
  }
  if (out.empty()) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const auto* end = p + bytes.size();
    while (p < end && out.size() < 8) {
      zt::X509CrlPtr crl{d2i_X509_CRL(nullptr, &p, end - p)};
      if (!crl) break;
      out.push_back(std::move(crl));
    }
  }
  ERR_clear_error();
  return out;
}

// The CRLs, issued and signed again by the fuzz CA, as one PEM file; "" when none could be.
std::string resign(std::vector<zt::X509CrlPtr>& crls) {
  const FuzzCa& ca = fuzz_ca();
  zt::BioPtr out(BIO_new(BIO_s_mem()));
  int written = 0;
  for (auto& crl : crls) {
    if (X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.cert.get())) != 1 ||
        X509_CRL_sign(crl.get(), ca.key.get(), EVP_sha256()) <= 0 ||
        PEM_write_bio_X509_CRL(out.get(), crl.get()) != 1) {
      continue;
    }
    ++written;
  }
  ERR_clear_error();
  if (written == 0) return "";
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

void load_and_check(const std::string& pem, const std::vector<zt::X509CrlPtr>& crls) {
  const FuzzCa& ca = fuzz_ca();
  std::vector<X509*> cas{ca.cert.get()};
  auto index = zt::CrlIndex::parse(pem, "fuzz", cas, kNow);
  ERR_clear_error();
  if (!index) {
    ZT_FUZZ_CHECK(!index.error().empty());
    return;
  }
  const zt::CrlIndex& idx = *index.value();
  size_t total = 0;
  for (const auto& s : idx.summaries()) total += s.entries;
  ZT_FUZZ_CHECK(total == idx.entries());
  ZT_FUZZ_CHECK(!idx.summaries().empty());
  // A certificate of the CA, once with each serial the CRLs list (and once with serial 0).
  X509* leaf = ca.leaf.get();
  ASN1_INTEGER_set(X509_get_serialNumber(leaf), 0);
  ZT_FUZZ_CHECK(idx.check(leaf, ca.cert.get(), kNow).status != zt::Revocation::NotCovered);
  for (const auto& crl : crls) {
    STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
    for (int i = 0; i < sk_X509_REVOKED_num(revoked) && i < 16; ++i) {
      const ASN1_INTEGER* serial = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i));
      if (X509_set_serialNumber(leaf, const_cast<ASN1_INTEGER*>(serial)) != 1) continue;
      ZT_FUZZ_CHECK(idx.check(leaf, ca.cert.get(), kNow).status != zt::Revocation::NotCovered);
    }
  }
  (void)idx.earliest_next_update();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)fuzz_ca();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  load_and_check(bytes, {});
  std::vector<zt::X509CrlPtr> crls = decode(bytes);
  if (crls.empty()) return 0;
  std::string pem = resign(crls);
  if (!pem.empty()) load_and_check(pem, crls);
  return 0;
}
