#include "net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <openssl/err.h>

namespace zt {

Result<HostPort> parse_host_port(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return fail("'" + s + "' is not HOST:PORT");
  std::string host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::string port_s = s.substr(colon + 1);
  if (port_s.empty() || port_s.size() > 5 || port_s.find_first_not_of("0123456789") != std::string::npos) {
    return fail("'" + s + "' has no valid port");
  }
  unsigned long port = std::stoul(port_s);
  if (port > 65535) return fail("'" + s + "' has no valid port");
  return HostPort{host, static_cast<uint16_t>(port)};
}

void set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

Result<int> listen_tcp(const std::string& host_port) {
  auto hp = parse_host_port(host_port);
  if (!hp) return fail(hp.error());
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(hp->port);
  int rc = getaddrinfo(hp->host.empty() ? nullptr : hp->host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return fail("cannot resolve " + host_port + ": " + gai_strerror(rc));
  std::string last_error = "no address";
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 512) == 0) break;
    last_error = std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return fail("cannot listen on " + host_port + ": " + last_error);
  set_nonblocking(fd);
  return fd;
}

uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

std::string peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  // Logs type peer_addr as host:port, so an unknown address still has that shape.
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown:0";
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    std::string out("[");
    out.append(host).append("]:").append(std::to_string(port));  // (not "[" + ...: GCC 12 -Wrestrict false positive)
    return out;
  }
  return "unknown:0";
}

bool wait_fd(int fd, short events, Deadline deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int rc = poll(&p, 1, static_cast<int>(std::min<long long>(left, 60LL * 1000)));
    if (rc > 0) return true;  // readiness or an error condition: the next I/O call tells which
    if (rc < 0 && errno != EINTR) return true;
  }
}

int connect_tcp(const std::string& host, uint16_t port, Deadline deadline, ConnectError& err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port_s = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), port_s.c_str(), &hints, &res);
  if (rc != 0) {
    err.message = "cannot resolve " + host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  err.message = "no address for " + host;
  const std::string where = "connect to " + host + ":" + port_s;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    if (errno == EINPROGRESS) {
      if (!wait_fd(fd, POLLOUT, deadline)) {
        err.timeout = true;
        err.message = where + " timed out";
        close(fd);
        fd = -1;
        break;
      }
      int soerr = 0;
      socklen_t len = sizeof soerr;
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
      if (soerr == 0) break;
      err.message = where;
      err.message.append(": ").append(std::strerror(soerr));
    } else {
      err.message = where;
      err.message.append(": ").append(std::strerror(errno));
    }
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

namespace {

// Translates one SSL_* result: Ok to retry after waiting for `wait_events`, or a final status.
IoStatus classify(SSL* ssl, int ret, short& wait_events) {
  int e = SSL_get_error(ssl, ret);
  if (e == SSL_ERROR_WANT_READ) {
    wait_events = POLLIN;
    return IoStatus::Ok;
  }
  if (e == SSL_ERROR_WANT_WRITE) {
    wait_events = POLLOUT;
    return IoStatus::Ok;
  }
  if (e == SSL_ERROR_ZERO_RETURN) return IoStatus::Closed;
  if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return IoStatus::Closed;
  return IoStatus::Failed;
}

}  // namespace

IoStatus tls_handshake(SSL* ssl, int fd, Deadline deadline) {
  for (;;) {
    int ret = SSL_do_handshake(ssl);
    if (ret == 1) return IoStatus::Ok;
    short ev = 0;
    IoStatus st = classify(ssl, ret, ev);
    if (st != IoStatus::Ok) return st == IoStatus::Closed ? IoStatus::Failed : st;
    if (!wait_fd(fd, ev, deadline)) return IoStatus::Timeout;
  }
}

IoStatus tls_write_all(SSL* ssl, int fd, std::string_view data, Deadline deadline) {
  size_t off = 0;
  while (off < data.size()) {
    size_t written = 0;
    int ret = SSL_write_ex(ssl, data.data() + off, data.size() - off, &written);
    if (ret == 1) {
      off += written;
      continue;
    }
    short ev = 0;
    IoStatus st = classify(ssl, ret, ev);
    if (st != IoStatus::Ok) return st;
    if (!wait_fd(fd, ev, deadline)) return IoStatus::Timeout;
  }
  return IoStatus::Ok;
}

IoStatus tls_read_some(SSL* ssl, int fd, char* buf, size_t cap, size_t& n, Deadline deadline) {
  for (;;) {
    int ret = SSL_read_ex(ssl, buf, cap, &n);
    if (ret == 1) return IoStatus::Ok;
    short ev = 0;
    IoStatus st = classify(ssl, ret, ev);
    if (st != IoStatus::Ok) return st;
    if (!wait_fd(fd, ev, deadline)) return IoStatus::Timeout;
  }
}

}  // namespace zt

namespace zt {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace zt
