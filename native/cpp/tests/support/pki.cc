#include "support/pki.h"

#include "support/process.h"
#include "x509_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace zt::test {

namespace {
TestPki* g_pki = nullptr;
}

const TestPki& pki() {
  if (g_pki == nullptr) throw std::runtime_error("test PKI not set up");
  return *g_pki;
}
void set_pki(TestPki* p) { g_pki = p; }

std::string make_temp_dir(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

void write_file_atomic(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
  }
  fs::rename(tmp, path);
}

std::string read_text(const std::string& path) {
  auto r = read_file(path);
  if (!r) throw std::runtime_error(r.error());
  return r.value();
}

TestPki TestPki::create() {
  TestPki p;
  p.root_ = make_temp_dir("zt-cpp-pki");
  CommandResult r = run_command({"python3", ZT_TESTPKI_SCRIPT, "all", p.root_}, "", 120000);
  if (r.exit_code != 0) throw std::runtime_error("make_test_pki.py all failed: " + r.output);
  auto serials = nlohmann::json::parse(read_text(p.root_ + "/serials.json"));
  for (auto& [k, v] : serials.items()) p.serials_[k] = v.get<std::string>();
  return p;
}

void TestPki::remove() { remove_tree(root_); }

ScratchIdentity::ScratchIdentity(const std::string& name) : name_(name) {
  root_ = make_temp_dir("zt-cpp-scratch");
  fs::create_symlink(pki().ca(""), root_ + "/ca");
  fs::create_directories(root_ + "/ids");
  dir_ = root_ + "/ids/" + name;
  fs::copy(pki().id_dir(name), dir_, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
}

ScratchIdentity::~ScratchIdentity() { remove_tree(root_); }

std::string ScratchIdentity::rotate(int lifetime_s) {
  CommandResult r = run_command(
      {"python3", ZT_TESTPKI_SCRIPT, "rotate", root_, name_, "--lifetime", std::to_string(lifetime_s)}, "", 60000);
  if (r.exit_code != 0) throw std::runtime_error("rotate failed: " + r.output);
  std::string out = r.output;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
}

void ScratchIdentity::swap_in_generation_of(const std::string& other) {
  std::string src = fs::canonical(pki().id_dir(other) + "/current").string();
  std::string gen = "gen-99999999T999999999999Z-" + other;
  fs::copy(src, dir_ + "/" + gen, fs::copy_options::recursive);
  std::string tmp = dir_ + "/.current.tmp";
  fs::remove(tmp);
  fs::create_symlink(gen, tmp);
  fs::rename(tmp, dir_ + "/current");
}

X509Ptr load_cert(const std::string& pem_path) {
  auto certs = parse_pem_certs(read_text(pem_path), pem_path);
  if (!certs) throw std::runtime_error(certs.error());
  return std::move(certs.value().front());
}

EvpPkeyPtr load_key(const std::string& pem_path) {
  std::string pem = read_text(pem_path);
  BioPtr bio = memory_bio(pem);
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) throw std::runtime_error("cannot read key " + pem_path);
  return key;
}

std::string cert_serial(const std::string& pem_path) { return cert_serial_hex(load_cert(pem_path).get()); }

std::string make_crl_pem(X509* issuer, EVP_PKEY* key, const std::vector<X509*>& revoked, std::time_t this_update,
                         std::time_t next_update, long number, size_t extra_random_entries) {
  X509CrlPtr crl(X509_CRL_new());
  X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer));
  AsnTimePtr t1(ASN1_TIME_set(nullptr, this_update));
  AsnTimePtr t2(ASN1_TIME_set(nullptr, next_update));
  X509_CRL_set1_lastUpdate(crl.get(), t1.get());
  X509_CRL_set1_nextUpdate(crl.get(), t2.get());
  AsnIntegerPtr num(ASN1_INTEGER_new());
  ASN1_INTEGER_set(num.get(), number);
  X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, num.get(), 0, 0);
  auto add = [&](const ASN1_INTEGER* serial) {
    X509_REVOKED* rev = X509_REVOKED_new();
    X509_REVOKED_set_serialNumber(rev, const_cast<ASN1_INTEGER*>(serial));
    X509_REVOKED_set_revocationDate(rev, t1.get());
    X509_CRL_add0_revoked(crl.get(), rev);
  };
  for (X509* c : revoked) add(X509_get0_serialNumber(c));
  for (size_t i = 0; i < extra_random_entries; ++i) {
    unsigned char bytes[16];
    RAND_bytes(bytes, sizeof bytes);
    bytes[0] &= 0x7f;
    BignumPtr bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
    AsnIntegerPtr s(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    add(s.get());
  }
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), key, EVP_sha256()) == 0) throw std::runtime_error("X509_CRL_sign failed");
  BioPtr out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_CRL(out.get(), crl.get());
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace zt::test
