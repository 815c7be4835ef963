#include "metrics_server.h"

#include "http_request.h"
#include "http_response.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace zt {

namespace {
constexpr int kDeadlineMs = 2000;

bool write_all(int fd, const std::string& data, Deadline deadline) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_fd(fd, POLLOUT, deadline)) return false;
    } else {
      return false;
    }
  }
  return true;
}
}  // namespace

MetricsServer::MetricsServer(UniqueFd listen_fd, const Metrics& metrics, const StateHolder& states)
    : listen_fd_(std::move(listen_fd)), metrics_(metrics), states_(states), port_(local_port(listen_fd_.get())) {}

MetricsServer::~MetricsServer() { stop(); }

Status MetricsServer::start() {
  wake_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd_) return fail(std::string("eventfd: ") + std::strerror(errno));
  thread_ = std::thread([this] { run(); });
  return ok_status();
}

void MetricsServer::stop() {
  stopping_ = true;
  if (thread_.joinable()) {
    uint64_t one = 1;
    ssize_t n = write(wake_fd_.get(), &one, sizeof one);
    (void)n;
    thread_.join();
  }
}

void MetricsServer::run() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    int n = poll(fds, 2, 1000);
    if (n <= 0 || stopping_) continue;
    if ((fds[0].revents & POLLIN) == 0) continue;
    int fd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) continue;
    UniqueFd conn(fd);
    serve_one(conn.get());
  }
}

void MetricsServer::serve_one(int fd) {
  Deadline deadline = deadline_in_ms(kDeadlineMs);
  RequestParser parser;
  char buf[4096];
  while (parser.parse() == RequestParser::State::NeedMore) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      parser.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_fd(fd, POLLIN, deadline)) return;
    } else {
      return;
    }
  }
  Response r;
  if (parser.parse() == RequestParser::State::Failed) {
    r = error_response(parser.error().status, parser.error().code, parser.error().reason);
  } else {
    Request req = parser.take();
    if (req.path != "/metrics" && req.path != "/healthz") {
      r = error_response(404, "not_found", "try /metrics or /healthz");
    } else if (req.method != "GET") {
      r = error_response(405, "method_not_allowed", "use GET");
    } else if (req.path == "/metrics") {
      r.body = metrics_.serialize();
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    } else {
      auto state = states_.get();
      if (ready_ && state) {
        r = json_response(200, {{"status", "ok"}, {"serial", state->identity().serial}});
      } else {
        r = error_response(503, "not_ready", "the service is not serving yet");
      }
    }
  }
  write_all(fd, serialize_response(r, false), deadline);
  shutdown(fd, SHUT_WR);
}

}  // namespace zt
