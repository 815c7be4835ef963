// CrlIndex: signature verified once at load, then lookups by (issuer, serial).
#include "crl_index.h"
#include "identity.h"
#include "x509_util.h"

#include "support/pki.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>

namespace zt {
namespace {

using test::pki;

class CrlIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto id = load_identity(pki().id_dir("service-a"));
    ASSERT_TRUE(id.ok()) << id.error();
    identity_ = id.value();
    inter_ = test::load_cert(pki().ca("intermediate.pem"));
    inter_key_ = test::load_key(pki().ca("intermediate.key"));
    root_ = test::load_cert(pki().ca("root.pem"));
    root_key_ = test::load_key(pki().ca("root.key"));
  }
  Result<std::shared_ptr<const CrlIndex>> load(const std::string& path) {
    return CrlIndex::load_file(path, identity_->ca_certs(), std::time(nullptr));
  }
  Result<std::shared_ptr<const CrlIndex>> parse(const std::string& pem) {
    return CrlIndex::parse(pem, "test.pem", identity_->ca_certs(), std::time(nullptr));
  }
  X509Ptr leaf(const std::string& name) { return test::load_cert(pki().id_dir(name) + "/cert.pem"); }

  std::shared_ptr<const Identity> identity_;
  X509Ptr inter_, root_;
  EvpPkeyPtr inter_key_, root_key_;
};

TEST_F(CrlIndexTest, test_crl_revoked_leaf_is_found) {
  auto idx = load(pki().crl("crl.pem"));
  ASSERT_TRUE(idx.ok()) << idx.error();
  EXPECT_EQ(idx.value()->entries(), 1u);
  auto revoked = leaf("revoked");
  CrlCheck c = idx.value()->check(revoked.get(), inter_.get(), std::time(nullptr));
  EXPECT_EQ(c.status, Revocation::Revoked);
  EXPECT_FALSE(c.stale);
}

TEST_F(CrlIndexTest, test_crl_good_leaf_is_not_revoked) {
  auto idx = load(pki().crl("crl.pem"));
  ASSERT_TRUE(idx.ok());
  auto good = leaf("client");
  EXPECT_EQ(idx.value()->check(good.get(), inter_.get(), std::time(nullptr)).status, Revocation::Good);
}

TEST_F(CrlIndexTest, test_crl_other_issuer_is_not_covered) {
  auto idx = load(pki().crl("crl.pem"));
  ASSERT_TRUE(idx.ok());
  // The intermediate is issued by the root: no CRL from the root is loaded.
  EXPECT_EQ(idx.value()->check(inter_.get(), root_.get(), std::time(nullptr)).status, Revocation::NotCovered);
}

TEST_F(CrlIndexTest, test_crl_summary_fields) {
  auto idx = load(pki().crl("crl.pem"));
  ASSERT_TRUE(idx.ok());
  auto s = idx.value()->summaries();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].crl_number, "2");
  EXPECT_NE(s[0].issuer.find("zt test intermediate"), std::string::npos);
  EXPECT_GT(s[0].next_update, std::time(nullptr));
  EXPECT_EQ(idx.value()->earliest_next_update(), s[0].next_update);
}

TEST_F(CrlIndexTest, test_crl_empty_loads_with_zero_entries) {
  auto idx = load(pki().crl("crl-empty.pem"));
  ASSERT_TRUE(idx.ok()) << idx.error();
  EXPECT_EQ(idx.value()->entries(), 0u);
  auto revoked = leaf("revoked");
  EXPECT_EQ(idx.value()->check(revoked.get(), inter_.get(), std::time(nullptr)).status, Revocation::Good);
}

TEST_F(CrlIndexTest, test_crl_stale_is_flagged) {
  auto idx = load(pki().crl("crl-stale.pem"));
  ASSERT_TRUE(idx.ok()) << idx.error();  // a stale CRL still loads; --crl-stale decides
  EXPECT_TRUE(idx.value()->is_stale(std::time(nullptr)));
  auto good = leaf("client");
  CrlCheck c = idx.value()->check(good.get(), inter_.get(), std::time(nullptr));
  EXPECT_EQ(c.status, Revocation::Good);
  EXPECT_TRUE(c.stale);
}

TEST_F(CrlIndexTest, test_crl_foreign_signed_is_refused) {
  auto idx = load(pki().crl("crl-foreign.pem"));
  ASSERT_FALSE(idx.ok());
  EXPECT_NE(idx.error().find("signature does not verify"), std::string::npos) << idx.error();
}

TEST_F(CrlIndexTest, test_crl_tampered_signature_is_refused) {
  // Same issuer name, signed by a different key: the name alone must not be trusted.
  EvpPkeyPtr other(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  auto revoked = leaf("revoked");
  std::string pem = test::make_crl_pem(inter_.get(), other.get(), {revoked.get()}, std::time(nullptr) - 60,
                                       std::time(nullptr) + 3600, 7);
  auto idx = parse(pem);
  ASSERT_FALSE(idx.ok());
  EXPECT_NE(idx.error().find("signature does not verify"), std::string::npos);
}

TEST_F(CrlIndexTest, test_crl_garbage_and_empty_files_are_refused) {
  EXPECT_FALSE(parse("").ok());
  EXPECT_FALSE(parse("not a crl").ok());
  EXPECT_FALSE(parse("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").ok());
  EXPECT_FALSE(load("/nonexistent/crl.pem").ok());
}

TEST_F(CrlIndexTest, test_crl_root_crl_revoking_intermediate) {
  // A file with two CRLs: the intermediate's (empty) and the root's revoking the intermediate.
  std::time_t now = std::time(nullptr);
  std::string pem = test::make_crl_pem(inter_.get(), inter_key_.get(), {}, now - 60, now + 3600, 10) +
                    test::make_crl_pem(root_.get(), root_key_.get(), {inter_.get()}, now - 60, now + 3600, 1);
  auto idx = parse(pem);
  ASSERT_TRUE(idx.ok()) << idx.error();
  EXPECT_EQ(idx.value()->summaries().size(), 2u);
  EXPECT_EQ(idx.value()->check(inter_.get(), root_.get(), now).status, Revocation::Revoked);
  auto good = leaf("client");
  EXPECT_EQ(idx.value()->check(good.get(), inter_.get(), now).status, Revocation::Good);
}

TEST_F(CrlIndexTest, test_crl_newest_of_same_issuer_wins) {
  std::time_t now = std::time(nullptr);
  auto revoked = leaf("revoked");
  std::string older = test::make_crl_pem(inter_.get(), inter_key_.get(), {}, now - 60, now + 3600, 5);
  std::string newer = test::make_crl_pem(inter_.get(), inter_key_.get(), {revoked.get()}, now - 60, now + 3600, 6);
  for (const std::string& pem : {older + newer, newer + older}) {
    auto idx = parse(pem);
    ASSERT_TRUE(idx.ok()) << idx.error();
    EXPECT_EQ(idx.value()->summaries().size(), 1u);
    EXPECT_EQ(idx.value()->check(revoked.get(), inter_.get(), now).status, Revocation::Revoked);
  }
}

TEST_F(CrlIndexTest, test_crl_without_next_update_is_refused) {
  X509CrlPtr crl(X509_CRL_new());
  X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(inter_.get()));
  AsnTimePtr t(ASN1_TIME_set(nullptr, std::time(nullptr) - 60));
  X509_CRL_set1_lastUpdate(crl.get(), t.get());
  X509_CRL_sign(crl.get(), inter_key_.get(), EVP_sha256());
  BioPtr out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_CRL(out.get(), crl.get());
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  auto idx = parse(std::string(data, static_cast<size_t>(len)));
  ASSERT_FALSE(idx.ok());
  EXPECT_NE(idx.error().find("nextUpdate"), std::string::npos);
}

TEST_F(CrlIndexTest, test_crl_large_index_finds_the_one_revoked) {
  std::time_t now = std::time(nullptr);
  auto revoked = leaf("revoked");
  std::string pem =
      test::make_crl_pem(inter_.get(), inter_key_.get(), {revoked.get()}, now - 60, now + 3600, 9, 20000);
  auto idx = parse(pem);
  ASSERT_TRUE(idx.ok()) << idx.error();
  EXPECT_EQ(idx.value()->entries(), 20001u);
  EXPECT_EQ(idx.value()->check(revoked.get(), inter_.get(), now).status, Revocation::Revoked);
  for (const char* name : {"client", "service-a", "service-b", "two-uris"}) {
    auto c = leaf(name);
    EXPECT_EQ(idx.value()->check(c.get(), inter_.get(), now).status, Revocation::Good) << name;
  }
}

TEST(SerialKey, test_serial_key_ignores_leading_zero_bytes) {
  AsnIntegerPtr a(ASN1_INTEGER_new());
  ASN1_INTEGER_set(a.get(), 0x1234);
  AsnIntegerPtr b(ASN1_INTEGER_new());
  unsigned char padded[] = {0x00, 0x12, 0x34};
  ASN1_STRING_set(b.get(), padded, sizeof padded);
  EXPECT_EQ(serial_key(a.get()), serial_key(b.get()));
  EXPECT_EQ(serial_hex(a.get()), "1234");
}

}  // namespace
}  // namespace zt
