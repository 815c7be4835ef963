// Reloads: all or nothing (contracts section 2; house style). A reload builds a complete new
// ServiceState from disk (identity via the reader's contract, CRL, policy, SSL_CTXs),
// validates it, and only then swaps it in; on any failure the old state stays, the failure is
// counted (mtls_reloads_total{result="failure"}) and logged with the reason.
//
// A reload that changes the served leaf's serial is a rotation: mtls_rotation_total
// {result="success"} and a `rotation` line (old and new serial, notAfter, generation); a
// failed reload that had found DIR/current pointing at a new generation counts
// {result="failure"}. Every `reload` line names the parts that changed on disk since the
// snapshot in use was loaded ("identity", "crl", "policy"): `changed` (swapped in; empty on
// failure) and, on failure, `rejected` (what had changed and was refused), as service-b does,
// so a CRL- or policy-only reload says so (contracts section 9). With --no-reload (cfg.no_reload) reload() only logs `signal_ignored`
// and the poll never looks at the files (the staleness refresh still runs).
//
// Triggers: SIGHUP (main calls reload("signal")), and a fallback poll every
// --reload-interval seconds of realpath(DIR/current) and the CRL and policy files' identity
// (inode, size, mtime). A poll retries only after the files change again, so bad material
// on disk is one failure, not one per interval. The same thread refreshes the CRL staleness
// gauge once a second.
#pragma once

#include "config.h"
#include "crl_stale_monitor.h"
#include "logger.h"
#include "metrics.h"
#include "service_state.h"

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace zt {

class Reloader {
 public:
  Reloader(const Config& cfg, StateHolder& states, Metrics& metrics, Logger& log, CrlStaleMonitor& stale);
  ~Reloader();

  // The initial load (start-up); the error is fatal for the caller.
  Status load_initial();
  // Returns true when new material was swapped in. Serialised; safe from any thread.
  bool reload(const std::string& trigger);

  // Called (on the reloading thread) with each snapshot a successful reload swapped in, after
  // it is published: the server re-checks open connections against its CRL (issue 18).
  void on_reloaded(std::function<void(const std::shared_ptr<const ServiceState>&)> fn) {
    on_reloaded_ = std::move(fn);
  }

  void start_polling();
  void stop();

 private:
  // What is on disk, part by part: realpath(DIR/current), and the CRL's and policy's file
  // identity (inode, size, mtime).
  struct Sources {
    std::string generation, crl, policy;
    bool operator==(const Sources&) const = default;
  };
  Sources sources() const;
  std::string fingerprint() const;
  void publish(const ServiceState& state);
  void poll_loop();

  const Config& cfg_;
  StateHolder& states_;
  Metrics& metrics_;
  Logger& log_;
  CrlStaleMonitor& stale_;

  std::function<void(const std::shared_ptr<const ServiceState>&)> on_reloaded_;

  std::mutex reload_mu_;
  std::string last_fingerprint_;
  Sources served_;  // the sources of the snapshot in use

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread poller_;
};

}  // namespace zt
