#include "x509_util.h"

#include <openssl/pem.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace zt {

std::string serial_hex(const ASN1_INTEGER* serial) {
  if (serial == nullptr) return "";
  BignumPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!bn) return "";
  char* hex = BN_bn2hex(bn.get());
  if (hex == nullptr) return "";
  std::string s(hex);
  OPENSSL_free(hex);
  bool negative = !s.empty() && s[0] == '-';
  if (negative) s.erase(0, 1);
  size_t first = s.find_first_not_of('0');
  s = first == std::string::npos ? "0" : s.substr(first);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return negative ? "-" + s : s;
}

std::string cert_serial_hex(const X509* cert) {
  return serial_hex(X509_get0_serialNumber(cert));
}

std::time_t asn1_time_to_unix(const ASN1_TIME* t) {
  if (t == nullptr) return 0;
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

std::string rfc3339(std::time_t t) {
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "(time out of range)";
  char buf[32];
  // 32 bytes hold any year gmtime_r accepts (at most 12 digits); strftime's count is the length.
  return {buf, std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm)};
}

std::vector<std::string> uri_sans(const X509* cert) {
  std::vector<std::string> out;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = gn->d.uniformResourceIdentifier;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                     static_cast<size_t>(ASN1_STRING_length(uri)));
  }
  return out;
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot open " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return fail("cannot read " + path);
  return ss.str();
}

Result<std::vector<X509Ptr>> parse_pem_certs(const std::string& pem, const std::string& what) {
  std::vector<X509Ptr> certs;
  BioPtr bio = memory_bio(pem);
  ERR_clear_error();
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    certs.push_back(std::move(cert));
  }
  unsigned long err = ERR_peek_last_error();
  if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
    ERR_clear_error();  // the normal end of the input
  } else if (err != 0) {
    return fail(what + ": corrupt PEM certificate: " + drain_openssl_errors());
  }
  if (certs.empty()) return fail(what + ": no certificate found");
  return certs;
}

std::string name_oneline(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "?";
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace zt
