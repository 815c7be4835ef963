// The plain-HTTP side port (--metrics-listen): GET /metrics (Prometheus text) and
// GET /healthz ({"status":"ok","serial":...} once serving, 503 before). One thread, one
// short-lived connection at a time, each bounded by a 2 s deadline; it is meant for a local
// scraper and the lab's readiness probe, not for the public.
#pragma once

#include "metrics.h"
#include "net.h"
#include "service_state.h"

#include <atomic>
#include <thread>

namespace zt {

class MetricsServer {
 public:
  MetricsServer(UniqueFd listen_fd, const Metrics& metrics, const StateHolder& states);
  ~MetricsServer();
  Status start();
  void stop();
  void set_ready(bool ready) { ready_ = ready; }
  uint16_t port() const { return port_; }

 private:
  void run();
  void serve_one(int fd);

  UniqueFd listen_fd_;
  UniqueFd wake_fd_;
  const Metrics& metrics_;
  const StateHolder& states_;
  uint16_t port_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace zt
