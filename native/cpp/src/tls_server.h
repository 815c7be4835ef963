// The mTLS listener: one reactor thread (epoll) that accepts, runs TLS handshakes and reads
// request heads for every connection without blocking, and a worker pool that runs handlers
// and writes responses.
//
// Why this split: handshakes and request heads are where a slow or malicious peer can stall a
// server (a client that never finishes its handshake, a slowloris head). In the reactor those
// cost a socket and a few KiB, never a thread, and every one of them is bounded by its
// deadline (handshake timeout, idle/request-read timeout). Only a connection with a complete
// request occupies a worker; after answering, a keep-alive connection goes back to the
// reactor to wait for its next request.
//
// Each connection keeps the ServiceState snapshot it was accepted with (its SSL_CTX, its
// verifier, its CRL index): a reload swaps the snapshot for new connections while open ones
// finish on the old one. The OpenSSL error queue is cleared before each operation on a
// connection, and nothing a peer sends can end the reactor loop.
//
// Open connections follow revocation and expiry (issue 18; contracts section 5). Each
// connection keeps a PeerRecord (the verified chain, its earliest notAfter) and the CRL its
// peer was last checked against. When the current snapshot's CRL is a different one
// (recheck_peers() after a reload, or the 100 ms sweep noticing it), the reactor looks every
// idle connection up in it and ends the revoked ones at once; a busy connection is looked up
// by its worker after the handler ran, so the request in flight is answered (with
// Connection: close) before it ends; a connection handed back or finishing its handshake is
// looked up before it is served again. Expired peers: the sweep ends idle connections whose
// chain is past notAfter; a request arriving on one is answered 401 peer_certificate_expired.
#pragma once

#include "handlers.h"
#include "net.h"
#include "peer_record.h"
#include "peer_verifier.h"
#include "service_state.h"
#include "thread_pool.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

namespace zt {

class HandshakeObserver {
 public:
  virtual ~HandshakeObserver() = default;
  virtual void handshake_succeeded(const PeerInfo& peer) = 0;
  virtual void handshake_failed(FailureReason reason, const std::string& detail, const std::string& peer_addr,
                                const VerifyOutcome& outcome) = 0;
  // An open connection was ended because its peer is revoked or expired ("revoked"|"expired").
  virtual void connection_closed(const std::string& reason, const PeerInfo& peer, const std::string& detail) = 0;
  // One re-check of the idle connections against a newly seen CRL: how many were looked up,
  // how many were revoked, and what the lookups cost (closing excluded).
  virtual void peers_rechecked(size_t connections, size_t revoked, double lookup_ms) = 0;
};

struct ServerOptions {
  int handshake_timeout_ms = 5000;
  int idle_timeout_ms = 30000;
  int threads = 16;
  size_t max_connections = 1000;
};

struct Connection;

class TlsServer {
 public:
  TlsServer(UniqueFd listen_fd, ServerOptions options, const StateHolder& states, RequestHandler& handler,
            HandshakeObserver& observer);
  ~TlsServer();
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  Status start();
  void stop();  // idempotent; closes every connection
  uint16_t port() const { return port_; }
  size_t live_connections() const { return live_.load(); }
  // Any thread: the CRL in use may have changed; re-check open connections now.
  void recheck_peers();

 private:
  void run();
  void accept_ready();
  void drive(Connection& c);
  void read_requests(Connection& c);
  bool handshake_done(Connection& c);  // false: the connection was ended
  void fail_handshake(Connection& c, int ssl_error);
  void linger(Connection& c);
  void drain(Connection& c);
  void set_interest(Connection& c, uint32_t events);
  void close_connection(uint64_t id);
  void dispatch(uint64_t id);
  void serve(std::unique_ptr<Connection> c);
  void give_back(std::unique_ptr<Connection> c);
  void take_returns();
  void expire(bool force_all);
  void check_peers();
  std::shared_ptr<const CrlIndex> current_crl() const;
  // Looks the peer up in `crl` unless it was already checked against that CRL.
  static std::optional<std::string> newly_revoked(Connection& c, const std::shared_ptr<const CrlIndex>& crl);
  void end_for_peer(Connection& c, const std::string& reason, const std::string& detail);
  void wake();

  UniqueFd listen_fd_;
  ServerOptions options_;
  const StateHolder& states_;
  RequestHandler& handler_;
  HandshakeObserver& observer_;
  uint16_t port_ = 0;

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;
  std::thread reactor_;
  std::unique_ptr<ThreadPool> pool_;
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;
  std::atomic<size_t> live_{0};
  std::atomic<bool> recheck_requested_{false};

  // Reactor-thread only.
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> conns_;
  uint64_t next_id_ = 16;  // ids below are reserved tags
  SteadyClock::time_point last_sweep_{};
  std::shared_ptr<const CrlIndex> swept_crl_;  // the CRL idle connections were last checked against
  std::optional<SteadyClock::time_point> accept_paused_until_;

  // Connections handed back by workers.
  std::mutex returns_mu_;
  std::vector<std::unique_ptr<Connection>> returns_;
  bool accepting_returns_ = true;
};

}  // namespace zt
