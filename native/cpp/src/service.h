// service-a, wired together: configuration, logger, metrics, the current ServiceState, the
// reloader, the mTLS server and the metrics server. main() adds signals and the pid file;
// tests run a Service in-process on ephemeral ports.
#pragma once

#include "config.h"
#include "crl_stale_monitor.h"
#include "handlers.h"
#include "logger.h"
#include "metrics.h"
#include "metrics_server.h"
#include "reloader.h"
#include "service_state.h"
#include "tls_server.h"

#include <memory>
#include <mutex>
#include <string>

namespace zt {

class Service : private HandshakeObserver {
 public:
  explicit Service(Config cfg, Logger::Sink log_sink = nullptr);
  ~Service() override;
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Loads the material and starts serving. An error means the service could not start
  // (exit code 1); the error has been logged.
  Status start();
  void stop(const std::string& reason);
  bool reload(const std::string& trigger) { return reloader_.reload(trigger); }

  uint16_t port() const;
  uint16_t metrics_port() const;
  Metrics& metrics() { return metrics_; }
  Logger& logger() { return log_; }
  std::shared_ptr<const ServiceState> state() const { return states_.get(); }
  const Config& config() const { return cfg_; }

 private:
  void handshake_succeeded(const PeerInfo& peer) override;
  void handshake_failed(FailureReason reason, const std::string& detail, const std::string& peer_addr,
                        const VerifyOutcome& outcome) override;
  void connection_closed(const std::string& reason, const PeerInfo& peer, const std::string& detail) override;
  void peers_rechecked(size_t connections, size_t revoked, double lookup_ms) override;

  Config cfg_;
  Logger log_;
  Metrics metrics_;
  StateHolder states_;
  CrlStaleMonitor stale_;
  Reloader reloader_;
  RequestHandler handler_;
  std::unique_ptr<TlsServer> server_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::mutex stop_mu_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace zt
