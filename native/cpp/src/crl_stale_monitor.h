// Tracks whether the CRL in use is past its nextUpdate (contracts section 3): keeps the
// mtls_crl_stale gauge current and writes the crl_stale log line once per transition to
// stale. Fed by handshakes that met a stale covering CRL and by a periodic refresh.
#pragma once

#include "logger.h"
#include "metrics.h"
#include "peer_verifier.h"
#include "service_state.h"

#include <ctime>
#include <mutex>

namespace zt {

class CrlStaleMonitor {
 public:
  CrlStaleMonitor(Logger& log, Metrics& metrics, CrlStaleMode mode) : log_(log), metrics_(metrics), mode_(mode) {}

  // A handshake met a stale CRL (any thread).
  void observe_stale(std::time_t next_update);
  // Re-evaluates against the clock (after a load or reload, and periodically).
  void refresh(const ServiceState& state, std::time_t now);

 private:
  void set(bool stale, std::time_t next_update);
  Logger& log_;
  Metrics& metrics_;
  CrlStaleMode mode_;
  std::mutex mu_;
  bool stale_ = false;
};

}  // namespace zt
