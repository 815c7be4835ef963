// Command-line flags (docs/contracts.md section 8). parse_args() never exits the process:
// it returns a Config, or what to print and the exit code (0 for --help, 2 for bad flags), so
// main() and the tests share it.
#pragma once

#include "peer_verifier.h"

#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace zt {

struct Config {
  std::string cert_dir;
  std::string listen = "0.0.0.0:8080";
  std::string metrics_listen = "127.0.0.1:9080";
  std::optional<std::string> policy;
  std::optional<std::string> crl;  // default: DIR/crl.pem when present
  CrlStaleMode crl_stale = CrlStaleMode::Refuse;
  std::optional<std::string> expect_peer;
  std::string name = "service-a";
  std::optional<std::string> pid_file;
  int reload_interval_s = 5;
  bool no_reload = false;  // --no-reload: never reload (SIGHUP logged and ignored, no poll)
  int handshake_timeout_ms = 5000;
  int idle_timeout_ms = 30000;
  int threads = 16;
};

struct ExitRequest {
  int code;
  std::string message;  // to stdout for code 0, stderr otherwise
};

std::variant<Config, ExitRequest> parse_args(const std::vector<std::string>& args);

std::string usage();

}  // namespace zt
