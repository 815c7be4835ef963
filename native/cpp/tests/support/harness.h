// Running the real service in-process for a test: ephemeral ports, captured log lines,
// metrics scraped over the real metrics port, and bounded waits (never a bare sleep).
#pragma once

#include "config.h"
#include "service.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace zt::test {

// Waits for `pred` to hold, checking every few milliseconds, for at most timeout_ms.
bool wait_until(const std::function<bool()>& pred, int timeout_ms = 5000);

class LogCapture {
 public:
  void add(const std::string& line);
  std::vector<nlohmann::json> events(const std::string& event) const;
  // The first line with this event satisfying pred, waiting up to timeout_ms; null if none.
  nlohmann::json wait_for(const std::string& event,
                          const std::function<bool(const nlohmann::json&)>& pred = nullptr,
                          int timeout_ms = 5000) const;
  std::vector<std::string> lines() const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::string> lines_;
  std::vector<nlohmann::json> parsed_;
};

// Config for a test service: loopback, ephemeral ports, few threads, no polling.
Config test_config(const std::string& cert_dir);

class ServiceUnderTest {
 public:
  explicit ServiceUnderTest(Config cfg);  // throws when the service does not start
  ~ServiceUnderTest();

  Service& service() { return *svc_; }
  LogCapture& logs() { return *logs_; }
  uint16_t port() const { return svc_->port(); }
  uint16_t metrics_port() const { return svc_->metrics_port(); }
  std::string url(const std::string& path) const { return "https://127.0.0.1:" + std::to_string(port()) + path; }

  std::string scrape() const;
  // The value of one series (name plus exact label set); NaN when absent.
  double metric(const std::string& name, const std::map<std::string, std::string>& labels = {}) const;
  // Waits until the series reaches at least `at_least`.
  bool wait_metric(const std::string& name, const std::map<std::string, std::string>& labels, double at_least,
                   int timeout_ms = 5000) const;
  // The handshake_rejected log line for this reason (waits for it).
  nlohmann::json wait_rejection(const std::string& reason, int timeout_ms = 5000) const;

 private:
  std::shared_ptr<LogCapture> logs_;
  std::unique_ptr<Service> svc_;
};

// Parses one series value out of Prometheus text; NaN when absent.
double metric_value(const std::string& text, const std::string& name,
                    const std::map<std::string, std::string>& labels);

}  // namespace zt::test
