// Open connections follow revocation and expiry (issue 18; docs/contracts.md section 5), and a
// revoked caller's handshake is refused with the reason, log fields and alert of the contract.
// Real TLS over loopback against the in-process service, with the fixed test PKI.
#include "support/harness.h"
#include "support/one_shot_upstream.h"
#include "support/pki.h"
#include "support/test_client.h"

#include "peer_record.h"
#include "x509_util.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>

namespace zt {
namespace {

using test::as;
using test::https_get;
using test::OneShotUpstream;
using test::pki;
using test::ScratchIdentity;
using test::ServiceUnderTest;
using test::TestConnection;

std::unique_ptr<TestConnection> open_ok(const ServiceUnderTest& svc, const std::string& identity_dir) {
  std::string err;
  auto conn = TestConnection::open(svc.port(), as(identity_dir), &err);
  EXPECT_TRUE(conn) << err;
  return conn;
}

std::string request(const std::string& target) { return "GET " + target + " HTTP/1.1\r\nHost: service-a\r\n\r\n"; }

// An upstream for /call that holds its answer until release() (at most 15 s): makes a request
// that is in flight for as long as a test needs.
class HeldUpstream {
 public:
  HeldUpstream()
      : upstream_("service-b", nullptr, [this](SSL* ssl) {
          if (!OneShotUpstream::read_request_head(ssl)) return std::string("no request");
          {
            std::unique_lock<std::mutex> lock(mu_);
            received_ = true;
            cv_.notify_all();
            cv_.wait_for(lock, std::chrono::seconds(15), [this] { return released_; });
          }
          static const std::string kResponse =
              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
          SSL_write(ssl, kResponse.data(), static_cast<int>(kResponse.size()));
          SSL_shutdown(ssl);
          return std::string("served");
        }) {}
  ~HeldUpstream() { release(); }

  std::string call_target() const {
    return "/call?target=" + upstream_.url() + "&expect=spiffe%3A%2F%2Fzt.lab%2Fsvc%2Fservice-b";
  }
  bool wait_received(int timeout_ms = 10000) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] { return received_; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool received_ = false;
  bool released_ = false;
  OneShotUpstream upstream_;  // last: its thread uses the members above
};

// A scratch service-a serving with a CRL file the test rewrites.
struct CrlService {
  ScratchIdentity scratch{"service-a"};
  std::string crl = scratch.path("crl.pem");
  std::unique_ptr<ServiceUnderTest> svc;

  explicit CrlService(const std::string& initial_crl, int threads = 4, int idle_timeout_ms = 10000) {
    test::write_file_atomic(crl, test::read_text(initial_crl));
    Config cfg = test::test_config(scratch.dir());
    cfg.crl = crl;
    cfg.threads = threads;
    cfg.idle_timeout_ms = idle_timeout_ms;
    svc = std::make_unique<ServiceUnderTest>(cfg);
  }
  bool load(const std::string& pem) {
    test::write_file_atomic(crl, pem);
    return svc->service().reload("signal");
  }
};

TEST(RevokedHandshake, test_revoked_caller_refused_with_reason_log_fields_and_alert) {
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    CrlService s(pki().crl("crl.pem"));
    test::ClientOptions o = as(pki().id_dir("revoked"));
    o.max_version = version;
    auto r = https_get(s.svc->port(), "/hello", o);
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("certificate revoked"), std::string::npos) << r.error;  // the TLS alert
    auto line = s.svc->wait_rejection("revoked");
    ASSERT_FALSE(line.is_null());
    EXPECT_EQ(line["level"], "warn");
    EXPECT_EQ(line["peer_spiffe_id"], "spiffe://zt.lab/svc/revoked");
    EXPECT_EQ(line["peer_serial"], pki().serial("revoked"));
    EXPECT_EQ(line.value("peer_addr", "").rfind("127.0.0.1:", 0), 0u) << line.dump();
    EXPECT_NE(line.value("detail", "").find(pki().serial("revoked")), std::string::npos) << line.dump();
    EXPECT_TRUE(s.svc->wait_metric("mtls_handshake_failures_total", {{"reason", "revoked"}}, 1));
    EXPECT_EQ(s.svc->metric("mtls_handshakes_total", {{"result", "success"}}), 0);
    // Its twin: the same service serves a good caller.
    EXPECT_TRUE(https_get(s.svc->port(), "/hello", as(pki().id_dir("client"))).ok);
  }
}

TEST(OpenConnections, test_idle_connection_of_revoked_peer_ends_when_crl_loads) {
  CrlService s(pki().crl("crl-empty.pem"));
  auto revoked = open_ok(*s.svc, pki().id_dir("revoked"));
  auto good = open_ok(*s.svc, pki().id_dir("client"));
  ASSERT_TRUE(revoked && good);
  ASSERT_EQ(revoked->get("/hello").status, 200);
  ASSERT_EQ(good->get("/hello").status, 200);

  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(s.load(test::read_text(pki().crl("crl.pem"))));
  EXPECT_TRUE(revoked->wait_closed(3000)) << "the revoked peer's idle connection is still open";
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ issue 18 ] reload -> idle revoked connection closed: " << ms << " ms\n";
  ::testing::Test::RecordProperty("revoked_idle_cut_ms", std::to_string(ms));

  auto again = good->get("/hello");  // a good peer keeps its connection
  ASSERT_TRUE(again.ok) << again.error;
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(s.svc->metric("mtls_connections_closed_total", {{"reason", "revoked"}}), 1);
  EXPECT_EQ(s.svc->metric("mtls_connections_closed_total", {{"reason", "expired"}}), 0);
  auto line = s.svc->logs().wait_for("connection_closed");
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["reason"], "revoked");
  EXPECT_EQ(line["peer"], "spiffe://zt.lab/svc/revoked");
  EXPECT_EQ(line["peer_serial"], pki().serial("revoked"));
  EXPECT_EQ(line.value("peer_addr", "").rfind("127.0.0.1:", 0), 0u) << line.dump();
  EXPECT_NE(line.value("detail", "").find(pki().serial("revoked")), std::string::npos) << line.dump();
  auto recheck = s.svc->logs().wait_for("crl_recheck");
  ASSERT_FALSE(recheck.is_null());
  EXPECT_EQ(recheck["connections"], 2);
  EXPECT_EQ(recheck["revoked"], 1);

  // A reload that changes nothing ends nothing more.
  ASSERT_TRUE(s.svc->service().reload("signal"));
  EXPECT_EQ(good->get("/hello").status, 200);
  EXPECT_EQ(s.svc->logs().events("connection_closed").size(), 1u);
}

TEST(OpenConnections, test_busy_connection_of_revoked_peer_gets_its_answer_then_ends) {
  CrlService s(pki().crl("crl-empty.pem"));
  HeldUpstream upstream;
  auto conn = open_ok(*s.svc, pki().id_dir("revoked"));
  ASSERT_TRUE(conn);
  // The /call in flight, and a pipelined request behind it that must never be served.
  ASSERT_TRUE(conn->write(request(upstream.call_target()) + request("/hello")));
  ASSERT_TRUE(upstream.wait_received()) << "the /call never reached the upstream";

  ASSERT_TRUE(s.load(test::read_text(pki().crl("crl.pem"))));
  EXPECT_FALSE(test::wait_until(
      [&] { return s.svc->metric("mtls_connections_closed_total", {{"reason", "revoked"}}) > 0; }, 300))
      << "the busy connection was cut before its answer";
  upstream.release();

  auto answer = conn->read_response();
  ASSERT_TRUE(answer.ok) << answer.error;
  EXPECT_EQ(answer.status, 200) << answer.body;
  EXPECT_TRUE(answer.connection_close) << "the last answer should say Connection: close";
  EXPECT_TRUE(conn->wait_closed(3000));
  EXPECT_TRUE(s.svc->wait_metric("mtls_connections_closed_total", {{"reason", "revoked"}}, 1));
  EXPECT_TRUE(std::isnan(s.svc->metric("http_requests_total", {{"path", "/hello"}, {"code", "200"}})))
      << "the pipelined request was served on a revoked connection";
  auto line = s.svc->logs().wait_for("connection_closed");
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["reason"], "revoked");
  EXPECT_EQ(line["peer_serial"], pki().serial("revoked"));
}

TEST(OpenConnections, test_expired_peer_idle_connection_ends_by_timer_and_next_request_gets_401) {
  ScratchIdentity client("client");
  const std::string serial = client.rotate(5);  // notAfter five seconds from now
  std::time_t not_after =
      asn1_time_to_unix(X509_get0_notAfter(test::load_cert(client.dir() + "/current/cert.pem").get()));
  ServiceUnderTest svc(test::test_config(pki().id_dir("service-a")));
  HeldUpstream upstream;
  auto idle = open_ok(svc, client.dir());
  auto busy = open_ok(svc, client.dir());
  ASSERT_TRUE(idle && busy);
  ASSERT_EQ(idle->get("/hello").status, 200);
  ASSERT_LT(std::time(nullptr), not_after) << "the machine is too slow for a 5 s certificate";
  // A /call that stays in flight across notAfter, and a request pipelined behind it.
  ASSERT_TRUE(busy->write(request(upstream.call_target()) + request("/hello")));
  ASSERT_TRUE(upstream.wait_received());

  EXPECT_TRUE(idle->wait_closed(15000)) << "the idle connection outlived its peer's certificate";
  std::time_t closed_at = std::time(nullptr);
  EXPECT_GT(closed_at, not_after - 1);
  EXPECT_LE(closed_at, not_after + 3);
  upstream.release();

  auto in_flight = busy->read_response();  // answered: it was accepted before notAfter
  ASSERT_TRUE(in_flight.ok) << in_flight.error;
  EXPECT_EQ(in_flight.status, 200);
  auto next = busy->read_response();  // the request after notAfter: 401, then close
  ASSERT_TRUE(next.ok) << next.error;
  EXPECT_EQ(next.status, 401);
  EXPECT_EQ(next.json["error"], "peer_certificate_expired");
  EXPECT_TRUE(next.connection_close);
  EXPECT_TRUE(busy->wait_closed(3000));

  EXPECT_TRUE(svc.wait_metric("mtls_connections_closed_total", {{"reason", "expired"}}, 2));
  EXPECT_EQ(svc.metric("mtls_connections_closed_total", {{"reason", "revoked"}}), 0);
  EXPECT_EQ(svc.metric("http_requests_total", {{"path", "/hello"}, {"code", "401"}}), 1);
  auto lines = svc.logs().events("connection_closed");
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& line : lines) {
    EXPECT_EQ(line["reason"], "expired");
    EXPECT_EQ(line["peer"], "spiffe://zt.lab/svc/client");
    EXPECT_EQ(line["peer_serial"], serial);
  }
  // A new connection with that certificate is refused at the handshake, as before.
  EXPECT_FALSE(https_get(svc.port(), "/hello", as(client.dir())).ok);
}

TEST(OpenConnections, test_call_never_reuses_a_connection_to_a_now_revoked_upstream) {
  // /call opens a connection per call (no pool): the second call does a new handshake, which
  // the new CRL refuses.
  ServiceUnderTest target(test::test_config(pki().id_dir("service-b")));
  CrlService caller(pki().crl("crl-empty.pem"));
  std::string q = "/call?target=https%3A%2F%2F127.0.0.1%3A" + std::to_string(target.port()) +
                  "%2Fhello&expect=spiffe%3A%2F%2Fzt.lab%2Fsvc%2Fservice-b";
  auto conn = open_ok(*caller.svc, pki().id_dir("client"));
  ASSERT_TRUE(conn);
  auto first = conn->get(q);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(target.metric("mtls_handshakes_total", {{"result", "success"}}), 1);

  std::time_t now = std::time(nullptr);
  auto inter = test::load_cert(pki().ca("intermediate.pem"));
  auto inter_key = test::load_key(pki().ca("intermediate.key"));
  auto b = test::load_cert(pki().id_dir("service-b") + "/cert.pem");
  ASSERT_TRUE(caller.load(test::make_crl_pem(inter.get(), inter_key.get(), {b.get()}, now - 60, now + 3600, 77)));

  auto second = conn->get(q);
  EXPECT_EQ(second.status, 502) << second.body;
  EXPECT_EQ(second.json["error"], "upstream_tls");
  EXPECT_NE(second.json.value("reason", "").find("revoked"), std::string::npos) << second.body;
  EXPECT_EQ(target.metric("mtls_handshakes_total", {{"result", "success"}}), 1);
}

// The cost of the issue-18 check (reported, and bounded): 1,000 open idle connections looked
// up in a 100k-entry CRL when it is loaded.
TEST(OpenConnectionsCost, test_recheck_of_1000_connections_against_100k_crl) {
  constexpr size_t kConnections = 1000;
  CrlService s(pki().crl("crl-empty.pem"), 2, 300000);  // nobody times out while 1,000 connect
  std::vector<std::unique_ptr<TestConnection>> conns;
  conns.reserve(kConnections);
  for (size_t i = 0; i < kConnections; ++i) {
    std::string err;
    auto c = TestConnection::open(s.svc->port(), as(pki().id_dir("client")), &err);
    ASSERT_TRUE(c) << "connection " << i << ": " << err;
    conns.push_back(std::move(c));
  }
  auto revoked = open_ok(*s.svc, pki().id_dir("revoked"));
  ASSERT_TRUE(revoked);
  ASSERT_TRUE(s.svc->wait_metric("mtls_handshakes_total", {{"result", "success"}}, kConnections + 1, 60000));

  std::time_t now = std::time(nullptr);
  auto inter = test::load_cert(pki().ca("intermediate.pem"));
  auto inter_key = test::load_key(pki().ca("intermediate.key"));
  auto rev = test::load_cert(pki().id_dir("revoked") + "/cert.pem");
  std::string large = test::make_crl_pem(inter.get(), inter_key.get(), {rev.get()}, now - 60, now + 3600, 78, 100000);
  ASSERT_TRUE(s.load(large));
  EXPECT_EQ(s.svc->metric("mtls_crl_entries"), 100001);

  auto line = s.svc->logs().wait_for("crl_recheck", nullptr, 10000);
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["connections"], kConnections + 1);
  EXPECT_EQ(line["revoked"], 1);
  double ms = line["lookup_ms"].get<double>();
  std::cout << "[ issue 18 ] re-check of " << line["connections"] << " open connections against a "
            << "100,001-entry CRL: " << ms << " ms (" << ms * 1000 / static_cast<double>(kConnections + 1)
            << " us per connection)\n";
  ::testing::Test::RecordProperty("recheck_1000_conns_100k_crl_ms", std::to_string(ms));
  EXPECT_LT(ms, 250.0) << "a lookup per connection should cost microseconds";
  EXPECT_TRUE(revoked->wait_closed(3000));
  // The others are untouched.
  for (size_t i : {size_t{0}, kConnections / 2, kConnections - 1}) {
    auto r = conns[i]->get("/hello");
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.status, 200);
  }
}

// The lookup alone, without the reactor or the machine's other load in the way as much: 1,000
// peer records (each with its own parsed chain, as connections have) against a 100k-entry CRL
// index; the best of five passes.
TEST(OpenConnectionsCost, test_lookup_cost_1000_records_100k_crl_in_process) {
  constexpr size_t kRecords = 1000;
  std::time_t now = std::time(nullptr);
  auto inter = test::load_cert(pki().ca("intermediate.pem"));
  auto inter_key = test::load_key(pki().ca("intermediate.key"));
  auto rev = test::load_cert(pki().id_dir("revoked") + "/cert.pem");
  std::string pem = test::make_crl_pem(inter.get(), inter_key.get(), {rev.get()}, now - 60, now + 3600, 79, 100000);
  std::vector<X509*> cas = {inter.get()};
  auto root = test::load_cert(pki().ca("root.pem"));
  cas.push_back(root.get());
  auto index = CrlIndex::parse(pem, "large", cas, now);
  ASSERT_TRUE(index.ok()) << index.error();
  std::vector<PeerRecord> records;
  for (size_t i = 0; i < kRecords; ++i) {
    std::vector<X509Ptr> chain;
    chain.push_back(test::load_cert(pki().id_dir(i == 0 ? "revoked" : "client") + "/cert.pem"));
    chain.push_back(test::load_cert(pki().ca("intermediate.pem")));
    chain.push_back(test::load_cert(pki().ca("root.pem")));
    records.push_back(PeerRecord::of_chain(std::move(chain)));
  }
  double best = 1e9;
  for (int pass = 0; pass < 5; ++pass) {
    size_t revoked = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (const PeerRecord& r : records) revoked += r.revoked_by(*index.value(), now) ? 1 : 0;
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(revoked, 1u);
    best = std::min(best, ms);
  }
  std::cout << "[ issue 18 ] lookup of " << kRecords << " peer records in a 100,001-entry CRL index: " << best
            << " ms (" << best * 1000 / kRecords << " us per connection), best of 5\n";
  ::testing::Test::RecordProperty("lookup_1000_records_100k_crl_ms", std::to_string(best));
  EXPECT_LT(best, 250.0);
}

}  // namespace
}  // namespace zt
