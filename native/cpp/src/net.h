// Sockets: listening, connecting with a deadline, addresses, and deadline-bounded TLS I/O on
// non-blocking sockets. Everything here is non-blocking underneath; waits are poll(2) with
// the time left until a deadline, so no peer can hold a thread longer than its timeout.
#pragma once

#include "result.h"

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace zt {

using SteadyClock = std::chrono::steady_clock;
using Deadline = SteadyClock::time_point;

inline Deadline deadline_in_ms(int ms) { return SteadyClock::now() + std::chrono::milliseconds(ms); }

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

// "HOST:PORT", "[v6]:PORT".
Result<HostPort> parse_host_port(const std::string& s);

// A non-blocking listening socket (SO_REUSEADDR), bound and listening.
Result<int> listen_tcp(const std::string& host_port);
uint16_t local_port(int fd);
std::string peer_address(int fd);  // "127.0.0.1:54321", "[::1]:54321"; "unknown:0" when unknown
void set_nonblocking(int fd);

// Connects a non-blocking TCP socket to host:port before `deadline` (every resolved address
// is tried in turn). The error says "timeout" when the deadline passed.
struct ConnectError {
  bool timeout = false;
  std::string message;
};
int connect_tcp(const std::string& host, uint16_t port, Deadline deadline, ConnectError& err);

// Waits for `events` (POLLIN/POLLOUT) on fd; false when the deadline passed first.
bool wait_fd(int fd, short events, Deadline deadline);

enum class IoStatus { Ok, Timeout, Closed, Failed };

// TLS I/O on a non-blocking socket, retrying on WANT_READ/WANT_WRITE until the deadline.
IoStatus tls_handshake(SSL* ssl, int fd, Deadline deadline);
IoStatus tls_write_all(SSL* ssl, int fd, std::string_view data, Deadline deadline);
// Reads at least one byte into buf (n set), or reports why not.
IoStatus tls_read_some(SSL* ssl, int fd, char* buf, size_t cap, size_t& n, Deadline deadline);

}  // namespace zt

namespace zt {

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

}  // namespace zt
