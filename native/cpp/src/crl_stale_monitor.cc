#include "crl_stale_monitor.h"

#include "x509_util.h"

namespace zt {

namespace {
// Identifies a CRL by content (issuer, number, dates per CRL in the file), so re-reading the
// same file is the same CRL and a new one is another.
std::string crl_key(const CrlIndex& crl) {
  std::string key = crl.path();
  for (const CrlSummary& s : crl.summaries()) {
    key.append("|").append(s.issuer).append("#").append(s.crl_number);
    key.append("@").append(std::to_string(s.this_update)).append("-").append(std::to_string(s.next_update));
  }
  return key;
}
}  // namespace

void CrlStaleMonitor::observe_stale(std::time_t) {
  if (auto state = states_.get()) refresh(*state, std::time(nullptr));
}

void CrlStaleMonitor::refresh(const ServiceState& state, std::time_t now) {
  const CrlIndex* crl = state.crl();
  const bool stale = crl != nullptr && crl->is_stale(now);
  std::string key = stale ? crl_key(*crl) : "";
  std::lock_guard<std::mutex> lock(mu_);
  if (stale != stale_) metrics_.set_crl_stale(stale);
  stale_ = stale;
  if (!stale) {
    logged_for_.clear();  // the next stale CRL, whichever it is, is logged again
    return;
  }
  if (key == logged_for_) return;
  logged_for_ = key;
  log_.warn("crl_stale", {{"next_update", rfc3339(crl->earliest_next_update())},
                          {"mode", mode_ == CrlStaleMode::Refuse ? "refuse" : "warn"},
                          {"path", crl->path()}});
}

}  // namespace zt
