#include "service.h"

#include "x509_util.h"

#include <csignal>
#include <sys/resource.h>

namespace zt {

namespace {
size_t connection_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 4096;
  size_t soft = static_cast<size_t>(rl.rlim_cur);
  return soft > 128 ? std::min<size_t>(soft - 64, 4096) : 64;
}

nlohmann::json path_or_null(const std::string& p) { return p.empty() ? nlohmann::json(nullptr) : nlohmann::json(p); }
}  // namespace

Service::Service(Config cfg, Logger::Sink log_sink)
    : cfg_(std::move(cfg)),
      log_(cfg_.name, std::move(log_sink)),
      stale_(log_, metrics_, cfg_.crl_stale, states_),
      reloader_(cfg_, states_, metrics_, log_, stale_),
      handler_(cfg_, metrics_, log_, states_) {
  // After every successful reload, open connections are looked up in the new CRL (issue 18).
  reloader_.on_reloaded([this](const std::shared_ptr<const ServiceState>&) {
    if (server_) server_->recheck_peers();
  });
  // A peer closing mid-write must not kill the process. (SIGPIPE is a valid signal, so this
  // cannot fail in practice; if it ever did, the log says why writes could kill us.)
  if (std::signal(SIGPIPE, SIG_IGN) == SIG_ERR) log_.warn("sigpipe", {{"reason", "cannot ignore SIGPIPE"}});
}

Service::~Service() { stop("shutdown"); }

Status Service::start() {
  if (auto st = reloader_.load_initial(); !st) {
    log_.error("stop", {{"reason", "cannot load the material at start: " + st.error()}});
    stopped_ = true;
    return st;
  }
  auto tls_fd = listen_tcp(cfg_.listen);
  if (!tls_fd) {
    log_.error("stop", {{"reason", tls_fd.error()}});
    stopped_ = true;
    return fail(tls_fd.error());
  }
  auto metrics_fd = listen_tcp(cfg_.metrics_listen);
  if (!metrics_fd) {
    UniqueFd close_it(tls_fd.value());
    log_.error("stop", {{"reason", metrics_fd.error()}});
    stopped_ = true;
    return fail(metrics_fd.error());
  }
  ServerOptions options;
  options.handshake_timeout_ms = cfg_.handshake_timeout_ms;
  options.idle_timeout_ms = cfg_.idle_timeout_ms;
  options.threads = cfg_.threads;
  options.max_connections = connection_limit();
  server_ = std::make_unique<TlsServer>(UniqueFd(tls_fd.value()), options, states_, handler_,
                                        static_cast<HandshakeObserver&>(*this));
  metrics_server_ = std::make_unique<MetricsServer>(UniqueFd(metrics_fd.value()), metrics_, states_);
  if (auto st = server_->start(); !st) return st;
  if (auto st = metrics_server_->start(); !st) return st;
  metrics_server_->set_ready(true);
  reloader_.start_polling();
  started_ = true;

  auto state = states_.get();
  const Identity& id = state->identity();
  log_.info("start", {{"listen", cfg_.listen},
                      {"metrics_listen", cfg_.metrics_listen},
                      {"port", server_->port()},
                      {"metrics_port", metrics_server_->port()},
                      {"spiffe_id", id.id.str()},
                      {"serial", id.serial},
                      {"not_after", rfc3339(id.not_after)},
                      {"crl", path_or_null(state->crl_path)},
                      {"policy", path_or_null(cfg_.policy.value_or(""))},
                      {"no_reload", cfg_.no_reload}});
  return ok_status();
}

void Service::stop(const std::string& reason) {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  reloader_.stop();
  if (metrics_server_) metrics_server_->set_ready(false);
  if (server_) server_->stop();
  if (metrics_server_) metrics_server_->stop();
  if (started_) log_.info("stop", {{"reason", reason}});
}

uint16_t Service::port() const { return server_ ? server_->port() : 0; }
uint16_t Service::metrics_port() const { return metrics_server_ ? metrics_server_->port() : 0; }

void Service::handshake_succeeded(const PeerInfo&) { metrics_.handshake_succeeded(); }

void Service::handshake_failed(FailureReason reason, const std::string& detail, const std::string& peer_addr,
                               const VerifyOutcome& outcome) {
  metrics_.handshake_failed(reason);
  nlohmann::json fields = {{"reason", std::string(reason_name(reason))}, {"detail", detail}, {"peer_addr", peer_addr}};
  // A presented certificate is named by its serial, and by its SPIFFE ID when its URI SAN is
  // one (the log schema types peer_spiffe_id as spiffe://... or null; another URI stays in
  // `detail`).
  if (!outcome.peer_serial.empty()) {
    fields["peer_serial"] = outcome.peer_serial;
    fields["peer_spiffe_id"] = outcome.peer_spiffe_id.starts_with("spiffe://") ? nlohmann::json(outcome.peer_spiffe_id)
                                                                               : nlohmann::json(nullptr);
  }
  log_.warn("handshake_rejected", fields);
}


void Service::connection_closed(const std::string& reason, const PeerInfo& peer, const std::string& detail) {
  metrics_.connection_closed(reason);
  log_.warn("connection_closed", {{"reason", reason},
                                  {"peer", peer.spiffe_id},
                                  {"peer_serial", peer.serial},
                                  {"peer_addr", peer.addr},
                                  {"detail", detail}});
}

void Service::peers_rechecked(size_t connections, size_t revoked, double lookup_ms) {
  log_.info("crl_recheck", {{"connections", connections},
                            {"revoked", revoked},
                            {"lookup_ms", static_cast<double>(static_cast<long long>(lookup_ms * 1000)) / 1000}});
}

}  // namespace zt
