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
#pragma once

#include "handlers.h"
#include "net.h"
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

 private:
  void run();
  void accept_ready();
  void drive(Connection& c);
  void read_requests(Connection& c);
  void handshake_done(Connection& c);
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

  // Reactor-thread only.
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> conns_;
  uint64_t next_id_ = 16;  // ids below are reserved tags
  SteadyClock::time_point last_sweep_{};
  std::optional<SteadyClock::time_point> accept_paused_until_;

  // Connections handed back by workers.
  std::mutex returns_mu_;
  std::vector<std::unique_ptr<Connection>> returns_;
  bool accepting_returns_ = true;
};

}  // namespace zt
