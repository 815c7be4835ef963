#include "tls_server.h"

#include "svid.h"
#include "x509_util.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace zt {

namespace {
constexpr uint64_t kListenTag = 1;
constexpr uint64_t kWakeTag = 2;
constexpr auto kSweepEvery = std::chrono::milliseconds(100);
constexpr size_t kReadChunk = size_t{16} * 1024;
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
// After refusing a handshake, how long to keep draining what the client still sends.
constexpr int kLingerMs = 500;
}  // namespace

struct Connection {
  Connection(uint64_t i, int fd_, std::atomic<size_t>& live_counter) : id(i), fd(fd_), live(live_counter) {
    ++live;
  }
  ~Connection() {
    ssl.reset();  // before the state (and its SSL_CTX and verifier) it was made from
    state.reset();
    --live;
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  enum class Phase { Handshake, Reading, Closing };

  uint64_t id;
  UniqueFd fd;
  std::atomic<size_t>& live;
  std::shared_ptr<const ServiceState> state;
  SslPtr ssl;
  VerifyOutcome outcome;
  PeerInfo peer;
  PeerRecord record;                             // set when the handshake completes
  std::shared_ptr<const CrlIndex> checked_crl;   // the CRL `record` was last checked against
  RequestParser parser;
  Phase phase = Phase::Handshake;
  Deadline deadline{};
  uint32_t interest = 0;
};

TlsServer::TlsServer(UniqueFd listen_fd, ServerOptions options, const StateHolder& states,
                     RequestHandler& handler, HandshakeObserver& observer)
    : listen_fd_(std::move(listen_fd)),
      options_(options),
      states_(states),
      handler_(handler),
      observer_(observer),
      port_(local_port(listen_fd_.get())) {}

TlsServer::~TlsServer() { stop(); }

Status TlsServer::start() {
  epoll_fd_.reset(epoll_create1(EPOLL_CLOEXEC));
  wake_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!epoll_fd_ || !wake_fd_) return fail(std::string("epoll/eventfd: ") + std::strerror(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenTag;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, listen_fd_.get(), &ev);
  ev.data.u64 = kWakeTag;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev);
  pool_ = std::make_unique<ThreadPool>(options_.threads);
  reactor_ = std::thread([this] { run(); });
  return ok_status();
}

void TlsServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_ = true;
  if (reactor_.joinable()) {
    wake();
    reactor_.join();
  }
  if (pool_) pool_->shutdown();  // in-flight requests finish; their connections are dropped
  std::lock_guard<std::mutex> lock(returns_mu_);
  returns_.clear();
}

void TlsServer::recheck_peers() {
  recheck_requested_ = true;
  wake();
}

void TlsServer::wake() {
  uint64_t one = 1;
  ssize_t n = write(wake_fd_.get(), &one, sizeof one);
  (void)n;  // a full counter already means "wake up"
}

void TlsServer::run() {
  epoll_event events[64];
  while (!stopping_) {
    int timeout = conns_.empty() && !accept_paused_until_ ? 1000 : static_cast<int>(kSweepEvery.count());
    int n = epoll_wait(epoll_fd_.get(), events, 64, timeout);
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kListenTag) {
        accept_ready();
      } else if (tag == kWakeTag) {
        uint64_t v = 0;
        ssize_t r = read(wake_fd_.get(), &v, sizeof v);
        (void)r;
        take_returns();
      } else if (auto it = conns_.find(tag); it != conns_.end()) {
        drive(*it->second);
      }
    }
    if (recheck_requested_.exchange(false)) check_peers();
    expire(false);
    if (accept_paused_until_ && SteadyClock::now() >= *accept_paused_until_) {
      accept_paused_until_.reset();
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = kListenTag;
      epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, listen_fd_.get(), &ev);
    }
  }
  {
    std::lock_guard<std::mutex> lock(returns_mu_);
    accepting_returns_ = false;
    returns_.clear();
  }
  conns_.clear();
}

void TlsServer::accept_ready() {
  for (;;) {
    int fd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: the listener stays readable, so stop watching it for
        // a moment instead of spinning; run() re-arms it.
        epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, listen_fd_.get(), nullptr);
        accept_paused_until_ = SteadyClock::now() + kAcceptBackoff;
      }
      return;  // EAGAIN: nothing more to accept
    }
    if (live_.load() >= options_.max_connections) {
      close(fd);  // over capacity: refuse outright rather than degrade everyone
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto c = std::make_unique<Connection>(next_id_++, fd, live_);
    c->state = states_.get();
    ERR_clear_error();
    c->ssl.reset(SSL_new(c->state->tls->server.get()));
    if (!c->ssl) {
      ERR_clear_error();
      continue;
    }
    PeerVerifier::attach_outcome(c->ssl.get(), &c->outcome);
    SSL_set_fd(c->ssl.get(), fd);
    SSL_set_accept_state(c->ssl.get());
    c->peer.addr = peer_address(fd);
    c->deadline = deadline_in_ms(options_.handshake_timeout_ms);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = c->id;
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) continue;
    c->interest = EPOLLIN;
    uint64_t id = c->id;
    conns_.emplace(id, std::move(c));
  }
}

void TlsServer::set_interest(Connection& c, uint32_t events) {
  if (c.interest == events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = c.id;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
  c.interest = events;
}

void TlsServer::close_connection(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, it->second->fd.get(), nullptr);
  conns_.erase(it);
}

void TlsServer::drive(Connection& c) {
  ERR_clear_error();
  if (c.phase == Connection::Phase::Closing) return drain(c);
  if (c.phase == Connection::Phase::Handshake) {
    int r = SSL_do_handshake(c.ssl.get());
    if (r != 1) {
      int e = SSL_get_error(c.ssl.get(), r);
      if (e == SSL_ERROR_WANT_READ) return set_interest(c, EPOLLIN);
      if (e == SSL_ERROR_WANT_WRITE) return set_interest(c, EPOLLOUT);
      fail_handshake(c, e);
      return linger(c);
    }
    if (!handshake_done(c)) return;
  }
  read_requests(c);
}

bool TlsServer::handshake_done(Connection& c) {
  c.phase = Connection::Phase::Reading;
  c.deadline = deadline_in_ms(options_.idle_timeout_ms);
  X509* leaf = SSL_get0_peer_certificate(c.ssl.get());
  if (leaf != nullptr) {
    auto svid = inspect_svid_leaf(leaf);  // already checked by the verifier
    c.peer.spiffe_id = svid ? svid->id.str() : c.outcome.peer_spiffe_id;
    c.peer.serial = svid ? svid->serial : c.outcome.peer_serial;
  }
  c.peer.tls_version = SSL_get_version(c.ssl.get());
  c.record = PeerRecord::of(c.ssl.get());
  c.checked_crl = c.state->tls->crl;  // the verifier just checked the chain against it
  observer_.handshake_succeeded(c.peer);
  // A reload may have swapped in a new CRL while this handshake ran on the old snapshot.
  if (auto why = newly_revoked(c, current_crl())) {
    end_for_peer(c, "revoked", *why);
    return false;
  }
  return true;
}

std::shared_ptr<const CrlIndex> TlsServer::current_crl() const {
  auto state = states_.get();
  return state ? state->tls->crl : nullptr;
}

std::optional<std::string> TlsServer::newly_revoked(Connection& c, const std::shared_ptr<const CrlIndex>& crl) {
  if (crl == c.checked_crl) return std::nullopt;
  c.checked_crl = crl;
  if (!crl) return std::nullopt;
  return c.record.revoked_by(*crl, std::time(nullptr));
}

// Reactor thread, for a connection in conns_: says why, then close_notify (best effort, the
// socket is non-blocking) and close.
void TlsServer::end_for_peer(Connection& c, const std::string& reason, const std::string& detail) {
  observer_.connection_closed(reason, c.peer, detail);
  ERR_clear_error();
  SSL_shutdown(c.ssl.get());
  ERR_clear_error();
  close_connection(c.id);
}

void TlsServer::check_peers() {
  auto crl = current_crl();
  swept_crl_ = crl;
  auto start = SteadyClock::now();
  size_t looked_up = 0;
  std::vector<std::pair<uint64_t, std::string>> revoked;
  for (auto& [id, c] : conns_) {
    if (c->phase != Connection::Phase::Reading) continue;  // handshakes are checked when done
    ++looked_up;
    if (auto why = newly_revoked(*c, crl)) revoked.emplace_back(id, std::move(*why));
  }
  double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
  for (auto& [id, why] : revoked) end_for_peer(*conns_.at(id), "revoked", why);
  if (looked_up > 0) observer_.peers_rechecked(looked_up, revoked.size(), ms);
}

// In TLS 1.3 the client finishes its side of the handshake before the server has checked the
// client certificate, and typically sends its request at once. Closing a socket with unread
// data makes the kernel answer with RST, which can destroy the alert we just sent before the
// client reads it: the client then sees a bare EOF instead of "certificate required" or
// "unknown CA". So half-close, drain what arrives for a short while, then close (what nginx
// calls a lingering close).
void TlsServer::linger(Connection& c) {
  shutdown(c.fd.get(), SHUT_WR);
  c.phase = Connection::Phase::Closing;
  c.deadline = deadline_in_ms(kLingerMs);
  set_interest(c, EPOLLIN);
  drain(c);
}

void TlsServer::drain(Connection& c) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(c.fd.get(), buf, sizeof buf, 0);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    return close_connection(c.id);  // the client closed too, or the socket failed
  }
}

void TlsServer::fail_handshake(Connection& c, int ssl_error) {
  FailureReason reason = FailureReason::Protocol;
  std::string detail;
  bool no_cert = false;
  // Walk the error queue once: note "peer did not return a certificate", keep the text.
  std::string stack;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
      no_cert = true;
    }
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!stack.empty()) stack += "; ";
    stack += buf;
  }
  if (c.outcome.reason) {
    reason = *c.outcome.reason;
    detail = c.outcome.detail;
  } else if (no_cert) {
    reason = FailureReason::NoClientCert;
    detail = "the client sent no certificate";
  } else if (ssl_error == SSL_ERROR_SYSCALL && stack.empty()) {
    detail = "the connection closed during the handshake";
  } else if (ssl_error == SSL_ERROR_ZERO_RETURN) {
    detail = "the client closed the connection during the handshake";
  } else {
    detail = stack.empty() ? "TLS handshake failed" : stack;
  }
  if (!stack.empty() && detail != stack) detail += " [" + stack + "]";
  observer_.handshake_failed(reason, detail, c.peer.addr, c.outcome);
}

void TlsServer::read_requests(Connection& c) {
  char buf[kReadChunk];
  for (;;) {
    if (c.parser.parse() != RequestParser::State::NeedMore) return dispatch(c.id);
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(c.ssl.get(), buf, sizeof buf, &n);
    if (r == 1) {
      c.parser.append(buf, n);
      continue;
    }
    int e = SSL_get_error(c.ssl.get(), r);
    if (e == SSL_ERROR_WANT_READ) return set_interest(c, EPOLLIN);
    if (e == SSL_ERROR_WANT_WRITE) return set_interest(c, EPOLLOUT);
    ERR_clear_error();  // closed, reset or a TLS error: nothing to answer
    return close_connection(c.id);
  }
}

void TlsServer::dispatch(uint64_t id) {
  auto node = conns_.extract(id);
  if (node.empty()) return;
  std::unique_ptr<Connection> c = std::move(node.mapped());
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, c->fd.get(), nullptr);
  c->interest = 0;
  pool_->submit(Task([this, conn = std::move(c)]() mutable { serve(std::move(conn)); }));
}

void TlsServer::serve(std::unique_ptr<Connection> c) {
  ERR_clear_error();
  Response resp;
  bool keep_alive = false;
  bool with_body = true;
  std::optional<std::pair<std::string, std::string>> ended;  // reason, detail
  const bool parsed = c->parser.parse() != RequestParser::State::Failed;
  if (c->record.expired(std::time(nullptr))) {
    // The peer's certificate expired while the connection was open: answer why, then close.
    Request req = parsed ? c->parser.take() : Request{};
    resp = handler_.handle_expired_peer(req, c->peer, c->record.not_after());
    with_body = req.method != "HEAD";
    ended.emplace("expired", "the peer certificate chain expired at " + rfc3339(c->record.not_after()));
  } else if (!parsed) {
    resp = handler_.handle_malformed(c->parser.error(), c->peer);
  } else {
    Request req = c->parser.take();
    resp = handler_.handle(req, c->peer, *c->state);
    keep_alive = req.keep_alive && !resp.close;
    with_body = req.method != "HEAD";  // RFC 9110 9.3.2: same headers, no body
    // Busy while a new CRL was loaded: this answer is the last one on the connection.
    if (auto why = newly_revoked(*c, current_crl())) {
      keep_alive = false;
      ended.emplace("revoked", std::move(*why));
    }
  }
  keep_alive = keep_alive && !stopping_;
  IoStatus st = tls_write_all(c->ssl.get(), c->fd.get(), serialize_response(resp, keep_alive, with_body),
                              deadline_in_ms(options_.idle_timeout_ms));
  if (ended) observer_.connection_closed(ended->first, c->peer, ended->second);
  if (st != IoStatus::Ok || !keep_alive) {
    if (st == IoStatus::Ok) SSL_shutdown(c->ssl.get());  // close_notify; never waits
    ERR_clear_error();
    return;  // the connection closes here
  }
  c->deadline = deadline_in_ms(options_.idle_timeout_ms);
  give_back(std::move(c));
}

void TlsServer::give_back(std::unique_ptr<Connection> c) {
  {
    std::lock_guard<std::mutex> lock(returns_mu_);
    if (!accepting_returns_) return;
    returns_.push_back(std::move(c));
  }
  wake();
}

void TlsServer::take_returns() {
  std::vector<std::unique_ptr<Connection>> back;
  {
    std::lock_guard<std::mutex> lock(returns_mu_);
    back.swap(returns_);
  }
  auto crl = back.empty() ? nullptr : current_crl();
  for (auto& c : back) {
    if (auto why = newly_revoked(*c, crl)) {  // a CRL arrived while its answer was written
      observer_.connection_closed("revoked", c->peer, *why);
      ERR_clear_error();
      SSL_shutdown(c->ssl.get());
      ERR_clear_error();
      continue;  // closes here
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = c->id;
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, c->fd.get(), &ev) != 0) continue;
    c->interest = EPOLLIN;
    Connection& ref = *c;
    uint64_t id = c->id;
    conns_.emplace(id, std::move(c));
    drive(ref);  // a pipelined request may already be buffered
  }
}

void TlsServer::expire(bool force_all) {
  auto now = SteadyClock::now();
  if (!force_all && now - last_sweep_ < kSweepEvery) return;
  last_sweep_ = now;
  if (!force_all && current_crl() != swept_crl_) check_peers();  // a reload nobody announced
  // Idle connections whose peer certificate expired end now (the timer of issue 18).
  std::time_t wall = std::time(nullptr);
  std::vector<uint64_t> peer_expired;
  for (auto& [id, c] : conns_) {
    if (c->phase == Connection::Phase::Reading && c->record.expired(wall)) peer_expired.push_back(id);
  }
  for (uint64_t id : peer_expired) {
    Connection& c = *conns_.at(id);
    end_for_peer(c, "expired", "the peer certificate chain expired at " + rfc3339(c.record.not_after()));
  }
  std::vector<uint64_t> expired;
  for (auto& [id, c] : conns_) {
    if (force_all || c->deadline <= now) expired.push_back(id);
  }
  for (uint64_t id : expired) {
    Connection& c = *conns_.at(id);
    if (c.phase == Connection::Phase::Handshake) {
      observer_.handshake_failed(FailureReason::Timeout,
                                 "no complete handshake within " + std::to_string(options_.handshake_timeout_ms) +
                                     " ms",
                                 c.peer.addr, c.outcome);
    }
    close_connection(id);
  }
}

}  // namespace zt
