// Tracks whether the CRL in use is past its nextUpdate (contracts sections 3 and 7): keeps the
// mtls_crl_stale gauge current and writes the crl_stale log line once per CRL, i.e. once when
// the CRL in use goes stale (or a CRL that is already stale is loaded), never per handshake
// or per refresh. A fresh CRL clears the gauge; a CRL loaded after it that goes stale logs
// again. Fed by the periodic refresh (once a second), by every load/reload, and by handshakes
// that met a stale covering CRL (so refuse mode and the gauge agree at once).
#pragma once

#include "logger.h"
#include "metrics.h"
#include "peer_verifier.h"
#include "service_state.h"

#include <ctime>
#include <mutex>
#include <string>

namespace zt {

class CrlStaleMonitor {
 public:
  CrlStaleMonitor(Logger& log, Metrics& metrics, CrlStaleMode mode, const StateHolder& states)
      : log_(log), metrics_(metrics), mode_(mode), states_(states) {}

  // A handshake met a stale CRL (any thread): re-evaluates the snapshot in use, so a late
  // handshake on a replaced snapshot cannot raise the alarm for a CRL no longer in use.
  void observe_stale(std::time_t next_update);
  // Re-evaluates `state` against the clock (after a load or reload, and periodically).
  void refresh(const ServiceState& state, std::time_t now);

 private:
  Logger& log_;
  Metrics& metrics_;
  CrlStaleMode mode_;
  const StateHolder& states_;
  std::mutex mu_;
  bool stale_ = false;
  std::string logged_for_;  // the CRL (content key) the last crl_stale line was written for
};

}  // namespace zt
