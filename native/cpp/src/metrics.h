// The service's Prometheus metrics (docs/contracts.md section 6), the same names and labels
// as service-b. prometheus-cpp's core library keeps the values (atomics, safe from any
// thread); MetricsServer serves the text exposition.
#pragma once

#include "handshake_failure.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>

namespace zt {

class Metrics {
 public:
  Metrics();

  void handshake_succeeded();
  void handshake_failed(FailureReason reason);
  void reload(bool ok);
  // A reload that changed the served leaf (ok), or one that saw a new generation and failed.
  void rotation(bool ok);
  // An open inbound connection ended because its peer's certificate was revoked or expired
  // (issue 18); `reason` is "revoked" or "expired".
  void connection_closed(const std::string& reason);
  void policy_denied();
  void outbound_call(bool ok);
  // `route` is "/hello", "/call" or "other".
  void http_request(const std::string& route, int code);

  // The served leaf. mtls_cert_not_after_timestamp_seconds holds its notAfter;
  // mtls_cert_expiry_seconds (seconds until then) is computed from it at each scrape.
  void set_certificate(const std::string& serial, const std::string& spiffe_id, std::time_t not_after);
  void set_crl(size_t entries, std::time_t earliest_next_update);  // 0 when no CRL
  void set_crl_stale(bool stale);

  // Prometheus text format 0.0.4. `now` (Unix time, sub-second) is when the scrape happens.
  std::string serialize() const;
  std::string serialize(double now) const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& handshakes_;
  prometheus::Counter& handshake_ok_;
  prometheus::Counter& handshake_fail_;
  prometheus::Family<prometheus::Counter>& handshake_failures_;
  std::array<prometheus::Counter*, kAllFailureReasons.size()> failure_by_reason_{};
  prometheus::Gauge& cert_expiry_;
  prometheus::Gauge& cert_not_after_;
  std::atomic<std::time_t> not_after_{0};  // 0 until the first certificate is set
  prometheus::Family<prometheus::Gauge>& cert_info_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Counter& reload_ok_;
  prometheus::Counter& reload_fail_;
  prometheus::Family<prometheus::Counter>& rotations_;
  prometheus::Counter& rotation_ok_;
  prometheus::Counter& rotation_fail_;
  prometheus::Family<prometheus::Counter>& connections_closed_;
  prometheus::Counter& closed_revoked_;
  prometheus::Counter& closed_expired_;
  prometheus::Gauge& crl_entries_;
  prometheus::Gauge& crl_next_update_;
  prometheus::Gauge& crl_stale_;
  prometheus::Counter& policy_denials_;
  prometheus::Family<prometheus::Counter>& outbound_;
  prometheus::Counter& outbound_ok_;
  prometheus::Counter& outbound_fail_;
  prometheus::Family<prometheus::Counter>& http_requests_;

  std::mutex cert_mu_;
  prometheus::Gauge* cert_info_current_ = nullptr;
};

}  // namespace zt
