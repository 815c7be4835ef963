#include "crl_stale_monitor.h"

#include "x509_util.h"

namespace zt {

void CrlStaleMonitor::observe_stale(std::time_t next_update) { set(true, next_update); }

void CrlStaleMonitor::refresh(const ServiceState& state, std::time_t now) {
  const CrlIndex* crl = state.crl();
  if (crl == nullptr) return set(false, 0);
  set(crl->is_stale(now), crl->earliest_next_update());
}

void CrlStaleMonitor::set(bool stale, std::time_t next_update) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stale == stale_) return;
  stale_ = stale;
  metrics_.set_crl_stale(stale);
  if (stale) {
    log_.warn("crl_stale", {{"next_update", rfc3339(next_update)},
                            {"mode", mode_ == CrlStaleMode::Refuse ? "refuse" : "warn"}});
  }
}

}  // namespace zt
