#include "identity.h"

#include "svid.h"
#include "x509_util.h"

#include <openssl/pem.h>

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>

namespace zt {

std::vector<X509*> Identity::ca_certs() const {
  std::vector<X509*> out;
  for (const auto& c : bundle) out.push_back(c.get());
  for (const auto& c : intermediates) out.push_back(c.get());
  return out;
}

Result<std::string> resolve_current(const std::string& cert_dir) {
  std::string link = cert_dir + "/current";
  char buf[PATH_MAX];
  if (realpath(link.c_str(), buf) == nullptr) {
    return fail("cannot resolve " + link + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return fail(link + " does not point to a generation directory");
  }
  return std::string(buf);
}

namespace {

Result<EvpPkeyPtr> parse_key(const std::string& pem, const std::string& path) {
  BioPtr bio = memory_bio(pem);
  ERR_clear_error();
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return fail(path + ": cannot parse the private key: " + drain_openssl_errors());
  return key;
}

// RFC 5280 path validation of our own leaf against the bundle, so we never serve (or
// present to upstreams) a chain our peers would reject.
Status verify_chain(const Identity& id) {
  X509StorePtr store(X509_STORE_new());
  for (const auto& root : id.bundle) {
    if (X509_STORE_add_cert(store.get(), root.get()) != 1) {
      return fail("cannot add a bundle certificate to the store: " + drain_openssl_errors());
    }
  }
  X509StackPtr untrusted(sk_X509_new_null());
  for (const auto& c : id.intermediates) {
    X509_up_ref(c.get());
    sk_X509_push(untrusted.get(), c.get());
  }
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), id.leaf.get(), untrusted.get()) != 1) {
    return fail("cannot set up chain verification: " + drain_openssl_errors());
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    std::string stack = drain_openssl_errors();
    return fail("the chain does not verify against the bundle: " +
                std::string(X509_verify_cert_error_string(err)) + " (depth " +
                std::to_string(depth) + ")" + (stack.empty() ? "" : "; " + stack));
  }
  return ok_status();
}

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return "";
  static const char* const kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

}  // namespace

Status check_bundle_checksum(const std::string& gen_dir, const std::string& bundle_pem) {
  const std::string path = gen_dir + "/" + kBundleChecksumFile;
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0 && errno == ENOENT) return ok_status();  // no checksum: nothing to check
  auto text = read_file(path);
  if (!text) return fail(std::string(kBundleChecksumMismatch) + ": " + text.error());
  // sha256sum format: "<64 hex>  bundle.pem\n" ("*bundle.pem" in binary mode); one line.
  const std::string& line = text.value();
  std::string want = line.substr(0, std::min<size_t>(line.size(), 64));
  std::string rest = line.size() > 64 ? line.substr(64) : "";
  if (!rest.empty() && rest.back() == '\n') rest.pop_back();
  bool hex = want.size() == 64 && want.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
  if (!hex || (rest != "  bundle.pem" && rest != " *bundle.pem")) {
    return fail(std::string(kBundleChecksumMismatch) + ": " + path +
                " is not one sha256sum line for bundle.pem (\"<64 hex>  bundle.pem\")");
  }
  for (char& c : want) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string got = sha256_hex(bundle_pem);
  if (got != want) {
    return fail(std::string(kBundleChecksumMismatch) + ": " + gen_dir + "/bundle.pem has sha256 " + got + ", " +
                kBundleChecksumFile + " says " + want);
  }
  return ok_status();
}

Result<std::shared_ptr<const Identity>> load_identity(const std::string& cert_dir) {
  auto gen = resolve_current(cert_dir);
  if (!gen) return fail(gen.error());
  const std::string& dir = gen.value();

  auto key_pem = read_file(dir + "/key.pem");
  if (!key_pem) return fail(key_pem.error());
  auto chain_pem = read_file(dir + "/chain.pem");
  if (!chain_pem) return fail(chain_pem.error());
  auto bundle_pem = read_file(dir + "/bundle.pem");
  if (!bundle_pem) return fail(bundle_pem.error());
  if (auto st = check_bundle_checksum(dir, bundle_pem.value()); !st) return fail(st.error());

  auto key = parse_key(key_pem.value(), dir + "/key.pem");
  if (!key) return fail(key.error());
  auto chain = parse_pem_certs(chain_pem.value(), dir + "/chain.pem");
  if (!chain) return fail(chain.error());
  auto bundle = parse_pem_certs(bundle_pem.value(), dir + "/bundle.pem");
  if (!bundle) return fail(bundle.error());

  std::vector<X509Ptr> certs = std::move(chain).value();
  X509Ptr leaf = std::move(certs.front());
  certs.erase(certs.begin());

  ERR_clear_error();
  if (X509_check_private_key(leaf.get(), key.value().get()) != 1) {
    std::string stack = drain_openssl_errors();
    return fail(dir + ": key.pem does not match the certificate in chain.pem" +
                (stack.empty() ? "" : " (" + stack + ")"));
  }
  auto svid = inspect_svid_leaf(leaf.get());
  if (!svid) return fail(dir + "/chain.pem: the leaf is not a valid X509-SVID: " + svid.error());

  auto id = std::make_shared<Identity>(Identity{dir, std::move(key).value(), std::move(leaf),
                                                std::move(certs), std::move(bundle).value(),
                                                svid->id, svid->serial, svid->not_after});
  if (auto st = verify_chain(*id); !st) return fail(dir + ": " + st.error());
  return std::shared_ptr<const Identity>(std::move(id));
}

}  // namespace zt
