#include "metrics.h"

#include <prometheus/text_serializer.h>

#include <chrono>

namespace zt {

using prometheus::BuildCounter;
using prometheus::BuildGauge;

namespace {
double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      handshakes_(BuildCounter()
                      .Name("mtls_handshakes_total")
                      .Help("Inbound TLS handshakes by result")
                      .Register(*registry_)),
      handshake_ok_(handshakes_.Add({{"result", "success"}})),
      handshake_fail_(handshakes_.Add({{"result", "failure"}})),
      handshake_failures_(BuildCounter()
                              .Name("mtls_handshake_failures_total")
                              .Help("Inbound TLS handshake failures by reason")
                              .Register(*registry_)),
      cert_expiry_(BuildGauge()
                       .Name("mtls_cert_expiry_seconds")
                       .Help("Seconds until notAfter of the served leaf certificate, at scrape time (negative once expired)")
                       .Register(*registry_)
                       .Add({})),
      cert_not_after_(BuildGauge()
                          .Name("mtls_cert_not_after_timestamp_seconds")
                          .Help("notAfter of the served leaf certificate, Unix time")
                          .Register(*registry_)
                          .Add({})),
      cert_info_(BuildGauge()
                     .Name("mtls_cert_info")
                     .Help("The current leaf certificate (value is always 1)")
                     .Register(*registry_)),
      reloads_(BuildCounter().Name("mtls_reloads_total").Help("Reload attempts by result").Register(*registry_)),
      reload_ok_(reloads_.Add({{"result", "success"}})),
      reload_fail_(reloads_.Add({{"result", "failure"}})),
      rotations_(BuildCounter()
                     .Name("mtls_rotation_total")
                     .Help("Reloads that changed the served leaf (success), or saw a new generation and failed")
                     .Register(*registry_)),
      rotation_ok_(rotations_.Add({{"result", "success"}})),
      rotation_fail_(rotations_.Add({{"result", "failure"}})),
      connections_closed_(BuildCounter()
                              .Name("mtls_connections_closed_total")
                              .Help("Open inbound connections ended because the peer certificate was revoked or expired")
                              .Register(*registry_)),
      closed_revoked_(connections_closed_.Add({{"reason", "revoked"}})),
      closed_expired_(connections_closed_.Add({{"reason", "expired"}})),
      crl_entries_(BuildGauge()
                       .Name("mtls_crl_entries")
                       .Help("Revoked serials in the loaded CRL(s)")
                       .Register(*registry_)
                       .Add({})),
      crl_next_update_(BuildGauge()
                           .Name("mtls_crl_next_update_seconds")
                           .Help("Earliest nextUpdate of the loaded CRL(s), Unix time; 0 when none")
                           .Register(*registry_)
                           .Add({})),
      crl_stale_(BuildGauge()
                     .Name("mtls_crl_stale")
                     .Help("1 when a loaded CRL is past nextUpdate")
                     .Register(*registry_)
                     .Add({})),
      policy_denials_(BuildCounter()
                          .Name("mtls_policy_denials_total")
                          .Help("Requests refused with 403 by policy")
                          .Register(*registry_)
                          .Add({})),
      outbound_(BuildCounter()
                    .Name("mtls_outbound_calls_total")
                    .Help("/call upstream calls by result")
                    .Register(*registry_)),
      outbound_ok_(outbound_.Add({{"result", "success"}})),
      outbound_fail_(outbound_.Add({{"result", "failure"}})),
      http_requests_(BuildCounter()
                         .Name("http_requests_total")
                         .Help("HTTP requests by route and status code")
                         .Register(*registry_)) {
  for (size_t i = 0; i < kAllFailureReasons.size(); ++i) {
    failure_by_reason_[i] =
        &handshake_failures_.Add({{"reason", std::string(reason_name(kAllFailureReasons[i]))}});
  }
}

void Metrics::handshake_succeeded() { handshake_ok_.Increment(); }

void Metrics::handshake_failed(FailureReason reason) {
  handshake_fail_.Increment();
  failure_by_reason_[static_cast<size_t>(reason)]->Increment();
}

void Metrics::reload(bool ok) { (ok ? reload_ok_ : reload_fail_).Increment(); }

void Metrics::rotation(bool ok) { (ok ? rotation_ok_ : rotation_fail_).Increment(); }

void Metrics::connection_closed(const std::string& reason) {
  (reason == "revoked" ? closed_revoked_ : closed_expired_).Increment();
}

void Metrics::policy_denied() { policy_denials_.Increment(); }

void Metrics::outbound_call(bool ok) { (ok ? outbound_ok_ : outbound_fail_).Increment(); }

void Metrics::http_request(const std::string& route, int code) {
  http_requests_.Add({{"path", route}, {"code", std::to_string(code)}}).Increment();
}

void Metrics::set_certificate(const std::string& serial, const std::string& spiffe_id,
                              std::time_t not_after) {
  not_after_.store(not_after);
  cert_not_after_.Set(static_cast<double>(not_after));
  cert_expiry_.Set(static_cast<double>(not_after) - unix_now());
  std::lock_guard<std::mutex> lock(cert_mu_);
  prometheus::Gauge& next = cert_info_.Add({{"serial", serial}, {"spiffe_id", spiffe_id}});
  next.Set(1);
  if (cert_info_current_ != nullptr && cert_info_current_ != &next) cert_info_.Remove(cert_info_current_);
  cert_info_current_ = &next;
}

void Metrics::set_crl(size_t entries, std::time_t earliest_next_update) {
  crl_entries_.Set(static_cast<double>(entries));
  crl_next_update_.Set(static_cast<double>(earliest_next_update));
}

void Metrics::set_crl_stale(bool stale) { crl_stale_.Set(stale ? 1 : 0); }

std::string Metrics::serialize() const { return serialize(unix_now()); }

std::string Metrics::serialize(double now) const {
  // The time left is a function of the scrape time, so it is set here, just before the
  // registry is collected, rather than when the certificate was loaded. (Concurrent scrapes
  // each set it for their own moment; the last write wins, and both are within a scrape of
  // each other.)
  if (std::time_t not_after = not_after_.load(); not_after != 0) {
    cert_expiry_.Set(static_cast<double>(not_after) - now);
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace zt
