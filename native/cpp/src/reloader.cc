#include "reloader.h"

#include "x509_util.h"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>

namespace zt {

namespace {
std::string file_identity(const std::string& path) {
  if (path.empty()) return "-";
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return path + ":absent";
  return path + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}
}  // namespace

Reloader::Reloader(const Config& cfg, StateHolder& states, Metrics& metrics, Logger& log, CrlStaleMonitor& stale)
    : cfg_(cfg), states_(states), metrics_(metrics), log_(log), stale_(stale) {}

Reloader::~Reloader() { stop(); }

Reloader::Sources Reloader::sources() const {
  auto gen = resolve_current(cfg_.cert_dir);
  std::string crl = cfg_.crl ? *cfg_.crl : cfg_.cert_dir + "/crl.pem";
  return Sources{gen ? gen.value() : "?", file_identity(crl), file_identity(cfg_.policy.value_or(""))};
}

std::string Reloader::fingerprint() const {
  Sources s = sources();
  return s.generation + "|" + s.crl + "|" + s.policy;
}

namespace {
// The parts that differ between two Sources, in the order service-b names them.
nlohmann::json changed_parts(const auto& had, const auto& now) {
  nlohmann::json parts = nlohmann::json::array();
  if (had.generation != now.generation) parts.push_back("identity");
  if (had.crl != now.crl) parts.push_back("crl");
  if (had.policy != now.policy) parts.push_back("policy");
  return parts;
}

// The CRL number as the log schema types it (an integer); null when absent or beyond 64 bits.
nlohmann::json crl_number_field(const std::string& decimal) {
  if (decimal.empty() || decimal.size() > 20 || decimal.find_first_not_of("0123456789") != std::string::npos) {
    return nullptr;
  }
  errno = 0;
  unsigned long long n = std::strtoull(decimal.c_str(), nullptr, 10);
  if (errno == ERANGE) return nullptr;
  return n;
}
}  // namespace

void Reloader::publish(const ServiceState& state) {
  const Identity& id = state.identity();
  metrics_.set_certificate(id.serial, id.id.str(), id.not_after);
  const CrlIndex* crl = state.crl();
  metrics_.set_crl(crl ? crl->entries() : 0, crl ? crl->earliest_next_update() : 0);
  if (crl != nullptr) {
    for (const CrlSummary& s : crl->summaries()) {
      log_.info("crl_loaded", {{"path", crl->path()},
                               {"entries", s.entries},
                               {"next_update", rfc3339(s.next_update)},
                               {"crl_number", crl_number_field(s.crl_number)},
                               {"issuer", s.issuer}});
    }
  }
  stale_.refresh(state, std::time(nullptr));
}

Status Reloader::load_initial() {
  std::lock_guard<std::mutex> lock(reload_mu_);
  Sources on_disk = sources();
  last_fingerprint_ = fingerprint();
  auto state = load_state(cfg_, [this](std::time_t next) { stale_.observe_stale(next); });
  if (!state) return fail(state.error());
  served_ = on_disk;
  states_.swap(state.value());
  publish(*state.value());
  return ok_status();
}

bool Reloader::reload(const std::string& trigger) {
  if (cfg_.no_reload) {
    // --no-reload: nothing is re-read, nothing is counted; the line says the request was seen.
    log_.warn("signal_ignored", {{"signal", "SIGHUP"}, {"reason", "--no-reload"}, {"trigger", trigger}});
    return false;
  }
  std::lock_guard<std::mutex> lock(reload_mu_);
  std::shared_ptr<const ServiceState> old = states_.get();
  const Identity& old_id = old->identity();
  const Sources now = sources();
  const nlohmann::json parts = changed_parts(served_, now);
  last_fingerprint_ = fingerprint();
  // A rotation attempt is a reload that finds DIR/current pointing at another generation.
  auto on_disk = resolve_current(cfg_.cert_dir);
  const bool new_generation = on_disk && on_disk.value() != old_id.generation_dir;
  auto next = load_state(cfg_, [this](std::time_t t) { stale_.observe_stale(t); }, old.get());
  if (!next) {
    metrics_.reload(false);
    if (new_generation) metrics_.rotation(false);
    log_.error("reload", {{"result", "failure"},
                          {"old_serial", old_id.serial},
                          {"new_serial", old_id.serial},  // still serving the old one
                          {"reason", next.error()},
                          {"trigger", trigger},
                          {"changed", nlohmann::json::array()},
                          {"rejected", parts}});
    return false;
  }
  states_.swap(next.value());
  served_ = now;
  metrics_.reload(true);
  publish(*next.value());
  const Identity& new_id = next.value()->identity();
  log_.info("reload", {{"result", "success"},
                       {"old_serial", old_id.serial},
                       {"new_serial", new_id.serial},
                       {"trigger", trigger},
                       {"changed", parts}});
  if (new_id.serial != old_id.serial) {
    metrics_.rotation(true);
    log_.info("rotation", {{"old_serial", old_id.serial},
                           {"new_serial", new_id.serial},
                           {"not_after", rfc3339(new_id.not_after)},
                           {"generation", std::filesystem::path(new_id.generation_dir).filename().string()},
                           {"trigger", trigger}});
  }
  if (on_reloaded_) on_reloaded_(next.value());
  return true;
}

void Reloader::start_polling() {
  poller_ = std::thread([this] { poll_loop(); });
}

void Reloader::stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (poller_.joinable()) poller_.join();
}

void Reloader::poll_loop() {
  auto next_poll = std::chrono::steady_clock::now() + std::chrono::seconds(cfg_.reload_interval_s);
  std::unique_lock<std::mutex> lock(stop_mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    if (auto state = states_.get()) stale_.refresh(*state, std::time(nullptr));
    if (!cfg_.no_reload && cfg_.reload_interval_s > 0 && std::chrono::steady_clock::now() >= next_poll) {
      next_poll = std::chrono::steady_clock::now() + std::chrono::seconds(cfg_.reload_interval_s);
      std::string fp = fingerprint();
      bool changed;
      {
        std::lock_guard<std::mutex> rl(reload_mu_);
        changed = fp != last_fingerprint_;
      }
      if (changed) reload("poll");
    }
    lock.lock();
  }
}

}  // namespace zt
