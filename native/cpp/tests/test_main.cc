// The test process: one test PKI (make_test_pki.py all) for every test, in a temporary
// directory removed at the end.
#include "support/pki.h"

#include <gtest/gtest.h>

#include <csignal>
#include <iostream>

namespace {

class PkiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    pki_ = zt::test::TestPki::create();
    zt::test::set_pki(&pki_);
  }
  void TearDown() override {
    zt::test::set_pki(nullptr);
    pki_.remove();
  }

 private:
  zt::test::TestPki pki_;
};

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new PkiEnvironment());
  return RUN_ALL_TESTS();
}
