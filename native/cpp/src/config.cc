#include "config.h"

#include "spiffe_id.h"

#include <charconv>
#include <functional>
#include <map>

namespace zt {

std::string usage() {
  return R"(Usage: service-a --cert-dir DIR [options]

service-a: the zt mTLS HTTP service (C++). Serves GET /hello and GET /call over mutual TLS,
identifies callers by the SPIFFE ID in their X509-SVID, and reloads its identity, CRL and
policy on SIGHUP (unless --no-reload).

Options:
  --cert-dir DIR              the agent's certificate directory (required); read through
                              DIR/current (docs/contracts.md section 2)
  --listen HOST:PORT          mTLS listener (default 0.0.0.0:8080)
  --metrics-listen HOST:PORT  plain-HTTP /metrics and /healthz (default 127.0.0.1:9080)
  --policy FILE               authorisation policy (JSON); default: allow every valid caller
  --crl FILE                  CRL file, PEM, may hold several CRLs (default DIR/crl.pem when
                              present)
  --crl-stale refuse|warn     when a CRL is past nextUpdate: refuse handshakes, or serve and
                              alarm (default refuse)
  --expect-peer SPIFFE_ID     expected SPIFFE ID of /call targets (overridden by ?expect=)
  --name NAME                 service name in logs and /hello (default service-a)
  --pid-file FILE             write the PID here at start
  --reload-interval SECONDS   poll for changed files every SECONDS; 0 disables (default 5)
  --no-reload                 never reload: SIGHUP is logged (signal_ignored) and ignored,
                              no polling (the lab's broken-reload control)
  --handshake-timeout-ms N    inbound and outbound handshake timeout (default 5000)
  --idle-timeout-ms N         keep-alive idle and request-read timeout (default 30000)
  --threads N                 worker threads (default 16)
  --help                      print this help and exit

Signals: SIGHUP reloads (logged and ignored with --no-reload); SIGTERM and SIGINT stop
(exit 0).
Exit codes: 0 after SIGTERM/SIGINT, 1 when the material cannot be loaded at start, 2 for bad
flags.
)";
}

namespace {

ExitRequest bad(const std::string& message) {
  return ExitRequest{2, "service-a: " + message + "\nTry 'service-a --help'.\n"};
}

bool parse_int(const std::string& s, int min, int max, int& out) {
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < min || v > max) return false;
  out = v;
  return true;
}

bool looks_like_host_port(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  int port = 0;
  return parse_int(s.substr(colon + 1), 0, 65535, port);
}

}  // namespace

std::variant<Config, ExitRequest> parse_args(const std::vector<std::string>& args) {
  Config cfg;
  using Setter = std::function<std::optional<std::string>(const std::string&)>;
  auto int_flag = [](int& field, int min, int max) -> Setter {
    return [&field, min, max](const std::string& v) -> std::optional<std::string> {
      if (!parse_int(v, min, max, field)) {
        return "expects an integer from " + std::to_string(min) + " to " + std::to_string(max);
      }
      return std::nullopt;
    };
  };
  auto str_flag = [](std::string& field) -> Setter {
    return [&field](const std::string& v) -> std::optional<std::string> {
      if (v.empty()) return "expects a non-empty value";
      field = v;
      return std::nullopt;
    };
  };
  auto opt_flag = [](std::optional<std::string>& field) -> Setter {
    return [&field](const std::string& v) -> std::optional<std::string> {
      if (v.empty()) return "expects a non-empty value";
      field = v;
      return std::nullopt;
    };
  };
  auto addr_flag = [](std::string& field) -> Setter {
    return [&field](const std::string& v) -> std::optional<std::string> {
      if (!looks_like_host_port(v)) return "expects HOST:PORT";
      field = v;
      return std::nullopt;
    };
  };
  std::map<std::string, Setter> flags = {
      {"--cert-dir", str_flag(cfg.cert_dir)},
      {"--listen", addr_flag(cfg.listen)},
      {"--metrics-listen", addr_flag(cfg.metrics_listen)},
      {"--policy", opt_flag(cfg.policy)},
      {"--crl", opt_flag(cfg.crl)},
      {"--crl-stale",
       [&cfg](const std::string& v) -> std::optional<std::string> {
         if (v == "refuse") {
           cfg.crl_stale = CrlStaleMode::Refuse;
         } else if (v == "warn") {
           cfg.crl_stale = CrlStaleMode::Warn;
         } else {
           return "expects refuse or warn";
         }
         return std::nullopt;
       }},
      {"--expect-peer",
       [&cfg](const std::string& v) -> std::optional<std::string> {
         auto id = SpiffeId::parse_workload(v);
         if (!id) return id.error();
         cfg.expect_peer = v;
         return std::nullopt;
       }},
      {"--name", str_flag(cfg.name)},
      {"--pid-file", opt_flag(cfg.pid_file)},
      {"--reload-interval", int_flag(cfg.reload_interval_s, 0, 86400)},
      {"--handshake-timeout-ms", int_flag(cfg.handshake_timeout_ms, 1, 600000)},
      {"--idle-timeout-ms", int_flag(cfg.idle_timeout_ms, 1, 3600000)},
      {"--threads", int_flag(cfg.threads, 1, 1024)},
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") return ExitRequest{0, usage()};
    if (arg == "--no-reload") {  // the one flag without a value
      cfg.no_reload = true;
      continue;
    }
    if (arg.rfind("--no-reload=", 0) == 0) return bad("--no-reload takes no value");
    std::string name = arg;
    std::optional<std::string> value;
    if (size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    auto it = flags.find(name);
    if (it == flags.end()) return bad("unknown option '" + arg + "'");
    if (!value) {
      if (i + 1 >= args.size()) return bad(name + " needs a value");
      value = args[++i];
    }
    if (auto err = it->second(*value)) return bad(name + " " + *err);
  }
  if (cfg.cert_dir.empty()) return bad("--cert-dir is required");
  return cfg;
}

}  // namespace zt
