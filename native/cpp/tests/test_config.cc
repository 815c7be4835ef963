// Command-line flags (docs/contracts.md section 8).
#include "config.h"

#include <gtest/gtest.h>

namespace zt {
namespace {

TEST(Config, test_config_defaults) {
  auto r = parse_args({"--cert-dir", "/x"});
  ASSERT_TRUE(std::holds_alternative<Config>(r));
  const Config& c = std::get<Config>(r);
  EXPECT_EQ(c.listen, "0.0.0.0:8080");
  EXPECT_EQ(c.metrics_listen, "127.0.0.1:9080");
  EXPECT_EQ(c.crl_stale, CrlStaleMode::Refuse);
  EXPECT_EQ(c.name, "service-a");
  EXPECT_EQ(c.reload_interval_s, 5);
  EXPECT_EQ(c.handshake_timeout_ms, 5000);
  EXPECT_EQ(c.idle_timeout_ms, 30000);
  EXPECT_EQ(c.threads, 16);
  EXPECT_FALSE(c.policy || c.crl || c.expect_peer || c.pid_file);
}

TEST(Config, test_config_all_flags) {
  auto r = parse_args({"--cert-dir=/d", "--listen", "127.0.0.1:1", "--metrics-listen", "[::1]:2", "--policy", "p.json",
                       "--crl", "c.pem", "--crl-stale", "warn", "--expect-peer", "spiffe://zt.lab/svc/b", "--name",
                       "svc", "--pid-file", "/tmp/p", "--reload-interval", "0", "--handshake-timeout-ms", "10",
                       "--idle-timeout-ms", "20", "--threads", "3"});
  ASSERT_TRUE(std::holds_alternative<Config>(r));
  const Config& c = std::get<Config>(r);
  EXPECT_EQ(c.cert_dir, "/d");
  EXPECT_EQ(c.metrics_listen, "[::1]:2");
  EXPECT_EQ(*c.policy, "p.json");
  EXPECT_EQ(*c.crl, "c.pem");
  EXPECT_EQ(c.crl_stale, CrlStaleMode::Warn);
  EXPECT_EQ(*c.expect_peer, "spiffe://zt.lab/svc/b");
  EXPECT_EQ(c.reload_interval_s, 0);
  EXPECT_EQ(c.threads, 3);
}

TEST(Config, test_config_help_exits_zero_and_lists_every_flag) {
  auto r = parse_args({"--help"});
  ASSERT_TRUE(std::holds_alternative<ExitRequest>(r));
  const auto& e = std::get<ExitRequest>(r);
  EXPECT_EQ(e.code, 0);
  for (const char* flag : {"--cert-dir", "--listen", "--metrics-listen", "--policy", "--crl", "--crl-stale",
                           "--expect-peer", "--name", "--pid-file", "--reload-interval", "--handshake-timeout-ms",
                           "--idle-timeout-ms", "--threads"}) {
    EXPECT_NE(e.message.find(flag), std::string::npos) << flag;
  }
}

struct BadFlags {
  const char* name;
  std::vector<std::string> args;
};

class ConfigErrors : public ::testing::TestWithParam<BadFlags> {};

TEST_P(ConfigErrors, test_config_bad_flags_exit_2) {
  auto r = parse_args(GetParam().args);
  ASSERT_TRUE(std::holds_alternative<ExitRequest>(r));
  EXPECT_EQ(std::get<ExitRequest>(r).code, 2);
}

INSTANTIATE_TEST_SUITE_P(
    Flags, ConfigErrors,
    ::testing::Values(BadFlags{"missing_cert_dir", {}}, BadFlags{"unknown", {"--cert-dir", "/d", "--nope"}},
                      BadFlags{"missing_value", {"--cert-dir"}},
                      BadFlags{"bad_stale", {"--cert-dir", "/d", "--crl-stale", "maybe"}},
                      BadFlags{"bad_port", {"--cert-dir", "/d", "--listen", "host:99999"}},
                      BadFlags{"no_port", {"--cert-dir", "/d", "--listen", "host"}},
                      BadFlags{"bad_threads", {"--cert-dir", "/d", "--threads", "0"}},
                      BadFlags{"bad_interval", {"--cert-dir", "/d", "--reload-interval", "-1"}},
                      BadFlags{"bad_expect_peer", {"--cert-dir", "/d", "--expect-peer", "https://x"}}),
    [](const ::testing::TestParamInfo<BadFlags>& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace zt
