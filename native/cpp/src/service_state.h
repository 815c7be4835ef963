// One immutable snapshot of everything a connection needs: identity, CRL index, policy and
// the SSL_CTXs built from them. A reload builds a whole new snapshot and swaps it in through
// StateHolder; a connection keeps the snapshot it started with until it closes, so an open
// connection finishes on the old context while new ones get the new one.
#pragma once

#include "config.h"
#include "policy.h"
#include "result.h"
#include "tls_context.h"

#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace zt {

struct ServiceState {
  std::shared_ptr<const TlsContexts> tls;
  std::shared_ptr<const Policy> policy;  // null: every authenticated caller may call anything
  std::string crl_path;                  // empty: no CRL in use

  const Identity& identity() const { return *tls->identity; }
  const CrlIndex* crl() const { return tls->crl.get(); }
};

// The CRL file in use: --crl, else DIR/crl.pem when it exists, else none ("").
std::string effective_crl_path(const Config& cfg);

// Loads and validates everything, all or nothing (identity by the reader's contract, CRL,
// policy, contexts). The error says which part failed and why. `previous` (null at start) is
// the snapshot in use: once a CRL was in use, its file vanishing is an error, never a silent
// switch to "no revocation checking".
Result<std::shared_ptr<const ServiceState>> load_state(const Config& cfg,
                                                       std::function<void(std::time_t)> on_stale,
                                                       const ServiceState* previous = nullptr);

// Hands out the current snapshot; swapped atomically by reloads.
class StateHolder {
 public:
  std::shared_ptr<const ServiceState> get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return state_;
  }
  // Returns the snapshot it replaced.
  std::shared_ptr<const ServiceState> swap(std::shared_ptr<const ServiceState> next) {
    std::lock_guard<std::mutex> lock(mu_);
    state_.swap(next);
    return next;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ServiceState> state_;
};

}  // namespace zt
