// Test vectors. The PKI comes from native/testpki/make_test_pki.py (run once per test
// process into a temporary directory, see test_main.cc); vectors it does not make (CRLs with
// chosen contents, a root CRL) are made here with the OpenSSL API.
#pragma once

#include "ossl.h"

#include <ctime>
#include <map>
#include <string>
#include <vector>

namespace zt::test {

class TestPki {
 public:
  // Generates the PKI under a fresh temporary directory.
  static TestPki create();
  void remove();

  const std::string& root() const { return root_; }
  std::string id_dir(const std::string& name) const { return root_ + "/ids/" + name; }
  std::string crl(const std::string& file) const { return root_ + "/crl/" + file; }
  std::string ca(const std::string& file) const { return root_ + "/ca/" + file; }
  std::string bundle() const { return ca("bundle.pem"); }
  // The identity's serial at generation time (serials.json).
  std::string serial(const std::string& name) const { return serials_.at(name); }
  std::string spiffe_id(const std::string& name) const { return "spiffe://zt.lab/svc/" + name; }

 private:
  std::string root_;
  std::map<std::string, std::string> serials_;
};

// The process-wide PKI (set up by the test environment).
const TestPki& pki();
void set_pki(TestPki* p);

std::string make_temp_dir(const std::string& prefix);
void remove_tree(const std::string& path);
void write_file_atomic(const std::string& path, const std::string& content);
std::string read_text(const std::string& path);

// A writable copy of one identity's cert dir, with its own scratch root so that
// make_test_pki.py rotate can act on it (root/ca links to the shared CA).
class ScratchIdentity {
 public:
  ScratchIdentity(const std::string& name);
  ~ScratchIdentity();
  ScratchIdentity(const ScratchIdentity&) = delete;
  ScratchIdentity& operator=(const ScratchIdentity&) = delete;

  const std::string& dir() const { return dir_; }
  const std::string& root() const { return root_; }
  // Issues a fresh leaf (new key, same SPIFFE ID) as a new generation and swaps `current`;
  // returns the new serial. `lifetime_s`: seconds from now to notAfter (notBefore is 30 s ago).
  std::string rotate(int lifetime_s = 86400);
  // Swaps `current` to a copy of another identity's current generation (e.g. wrong-key).
  void swap_in_generation_of(const std::string& other_identity);
  // A file path inside the scratch root.
  std::string path(const std::string& file) const { return root_ + "/" + file; }

 private:
  std::string name_;
  std::string root_;
  std::string dir_;
};

// OpenSSL-made vectors.
X509Ptr load_cert(const std::string& pem_path);
EvpPkeyPtr load_key(const std::string& pem_path);
std::string cert_serial(const std::string& pem_path);
// A CRL signed by issuer/key revoking `revoked` (certificates), PEM.
std::string make_crl_pem(X509* issuer, EVP_PKEY* key, const std::vector<X509*>& revoked,
                         std::time_t this_update, std::time_t next_update, long number,
                         size_t extra_random_entries = 0);

}  // namespace zt::test
