// Reading our own identity by the reader's contract (docs/contracts.md section 2).
#include "identity.h"
#include "tls_context.h"

#include "support/pki.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace zt {
namespace {

using test::pki;
namespace fs = std::filesystem;

TEST(Identity, test_identity_loads_good_material) {
  auto id = load_identity(pki().id_dir("service-a"));
  ASSERT_TRUE(id.ok()) << id.error();
  EXPECT_EQ(id.value()->id.str(), "spiffe://zt.lab/svc/service-a");
  EXPECT_EQ(id.value()->serial, pki().serial("service-a"));
  EXPECT_EQ(id.value()->intermediates.size(), 1u);
  EXPECT_EQ(id.value()->bundle.size(), 1u);
  EXPECT_EQ(id.value()->generation_dir, fs::canonical(pki().id_dir("service-a") + "/current").string());
  EXPECT_GT(id.value()->not_after, std::time(nullptr));
}

TEST(Identity, test_identity_wrong_key_is_refused) {
  auto id = load_identity(pki().id_dir("wrong-key"));
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().find("does not match"), std::string::npos) << id.error();
}

TEST(Identity, test_identity_expired_leaf_is_refused) {
  auto id = load_identity(pki().id_dir("expired"));
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().find("certificate has expired"), std::string::npos) << id.error();
}

TEST(Identity, test_identity_foreign_material_verifies_in_its_own_domain) {
  auto id = load_identity(pki().id_dir("foreign"));
  ASSERT_TRUE(id.ok()) << id.error();
  EXPECT_EQ(id.value()->id.trust_domain(), "other.lab");
}

TEST(Identity, test_identity_not_an_svid_is_refused) {
  for (const char* name : {"two-uris", "not-spiffe", "no-uri"}) {
    auto id = load_identity(pki().id_dir(name));
    ASSERT_FALSE(id.ok()) << name;
    EXPECT_NE(id.error().find("X509-SVID"), std::string::npos) << id.error();
  }
}

TEST(Identity, test_identity_missing_current_is_refused) {
  std::string dir = test::make_temp_dir("zt-empty");
  auto id = load_identity(dir);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().find("current"), std::string::npos);
  test::remove_tree(dir);
}

TEST(Identity, test_identity_reads_only_the_resolved_generation) {
  // The convenience links DIR/key.pem and DIR/cert.pem point at another identity's files;
  // the reader must ignore them and read everything from realpath(DIR/current).
  test::ScratchIdentity scratch("service-a");
  for (const char* f : {"key.pem", "cert.pem", "chain.pem"}) {
    fs::remove(scratch.dir() + "/" + f);
    fs::create_symlink(fs::canonical(pki().id_dir("client") + "/current/" + f), scratch.dir() + "/" + f);
  }
  auto id = load_identity(scratch.dir());
  ASSERT_TRUE(id.ok()) << id.error();
  EXPECT_EQ(id.value()->serial, pki().serial("service-a"));
}

TEST(Identity, test_identity_follows_rotation) {
  test::ScratchIdentity scratch("service-a");
  std::string serial = scratch.rotate();
  auto id = load_identity(scratch.dir());
  ASSERT_TRUE(id.ok()) << id.error();
  EXPECT_EQ(id.value()->serial, serial);
  EXPECT_NE(serial, pki().serial("service-a"));
}

TEST(ContextBuilder, test_context_builder_builds_both_contexts) {
  auto id = load_identity(pki().id_dir("service-a"));
  ASSERT_TRUE(id.ok());
  auto ctx = build_contexts(id.value(), nullptr, {});
  ASSERT_TRUE(ctx.ok()) << ctx.error();
  EXPECT_NE(ctx.value()->server, nullptr);
  EXPECT_NE(ctx.value()->client, nullptr);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx.value()->server.get()), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_max_proto_version(ctx.value()->server.get()), TLS1_3_VERSION);
  EXPECT_EQ(SSL_CTX_get_verify_mode(ctx.value()->server.get()), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
}

}  // namespace
}  // namespace zt
