#include "support/harness.h"

#include "support/test_client.h"

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <thread>

namespace zt::test {

bool wait_until(const std::function<bool()>& pred, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void LogCapture::add(const std::string& line) {
  if (std::getenv("ZT_TEST_LOGS") != nullptr) std::cerr << line << "\n";
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.push_back(line);
    parsed_.push_back(j.is_discarded() ? nlohmann::json(nullptr) : j);
  }
  cv_.notify_all();
}

std::vector<nlohmann::json> LogCapture::events(const std::string& event) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<nlohmann::json> out;
  for (const auto& j : parsed_) {
    if (j.is_object() && j.value("event", "") == event) out.push_back(j);
  }
  return out;
}

std::vector<std::string> LogCapture::lines() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lines_;
}

nlohmann::json LogCapture::wait_for(const std::string& event, const std::function<bool(const nlohmann::json&)>& pred,
                                    int timeout_ms) const {
  std::unique_lock<std::mutex> lock(mu_);
  nlohmann::json found;
  auto match = [&] {
    for (const auto& j : parsed_) {
      if (j.is_object() && j.value("event", "") == event && (!pred || pred(j))) {
        found = j;
        return true;
      }
    }
    return false;
  };
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), match);
  return found;
}

Config test_config(const std::string& cert_dir) {
  Config cfg;
  cfg.cert_dir = cert_dir;
  cfg.listen = "127.0.0.1:0";
  cfg.metrics_listen = "127.0.0.1:0";
  cfg.threads = 4;
  cfg.reload_interval_s = 0;
  cfg.handshake_timeout_ms = 5000;
  cfg.idle_timeout_ms = 10000;
  return cfg;
}

ServiceUnderTest::ServiceUnderTest(Config cfg) : logs_(std::make_shared<LogCapture>()) {
  auto logs = logs_;
  svc_ = std::make_unique<Service>(std::move(cfg), [logs](const std::string& line) { logs->add(line); });
  auto st = svc_->start();
  if (!st) throw std::runtime_error("service did not start: " + st.error());
}

ServiceUnderTest::~ServiceUnderTest() { svc_->stop("test done"); }

std::string ServiceUnderTest::scrape() const {
  HttpResult r = http_get_plain(metrics_port(), "/metrics");
  return r.ok ? r.body : "";
}

double metric_value(const std::string& text, const std::string& name,
                    const std::map<std::string, std::string>& labels) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
    pos = eol == std::string::npos ? text.size() : eol + 1;
    if (line.empty() || line[0] == '#') continue;
    size_t brace = line.find('{');
    size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    std::string series_name = line.substr(0, std::min(brace, space));
    if (series_name != name) continue;
    std::map<std::string, std::string> found;
    if (brace != std::string::npos && brace < space) {
      size_t close = line.rfind('}', space);
      std::string body = line.substr(brace + 1, close - brace - 1);
      size_t p = 0;
      while (p < body.size()) {
        size_t eq = body.find('=', p);
        size_t q1 = body.find('"', eq);
        size_t q2 = q1 + 1;
        std::string value;
        while (q2 < body.size() && body[q2] != '"') {
          if (body[q2] == '\\' && q2 + 1 < body.size()) ++q2;
          value.push_back(body[q2++]);
        }
        found[body.substr(p, eq - p)] = value;
        p = q2 + 1;
        if (p < body.size() && body[p] == ',') ++p;
      }
    }
    if (found == labels) return std::stod(line.substr(space + 1));
  }
  return std::numeric_limits<double>::quiet_NaN();
}

double ServiceUnderTest::metric(const std::string& name, const std::map<std::string, std::string>& labels) const {
  return metric_value(scrape(), name, labels);
}

bool ServiceUnderTest::wait_metric(const std::string& name, const std::map<std::string, std::string>& labels,
                                   double at_least, int timeout_ms) const {
  return wait_until(
      [&] {
        double v = metric(name, labels);
        return !std::isnan(v) && v >= at_least;
      },
      timeout_ms);
}

nlohmann::json ServiceUnderTest::wait_rejection(const std::string& reason, int timeout_ms) const {
  return logs_->wait_for("handshake_rejected", [&](const nlohmann::json& j) { return j.value("reason", "") == reason; },
                         timeout_ms);
}

}  // namespace zt::test
