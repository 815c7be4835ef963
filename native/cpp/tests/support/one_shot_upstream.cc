#include "support/one_shot_upstream.h"

#include "support/pki.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <utility>

namespace zt::test {

OneShotUpstream::OneShotUpstream(const std::string& identity, const Configure& configure, Serve serve)
    : serve_(std::move(serve)) {
  ctx_.reset(SSL_CTX_new(TLS_server_method()));
  std::string gen = std::filesystem::canonical(pki().id_dir(identity) + "/current").string();
  if (!ctx_ || SSL_CTX_use_certificate_chain_file(ctx_.get(), (gen + "/chain.pem").c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx_.get(), (gen + "/key.pem").c_str(), SSL_FILETYPE_PEM) != 1) {
    throw std::runtime_error("upstream: cannot load " + identity + ": " + drain_openssl_errors());
  }
  if (configure) configure(ctx_.get());
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listen_fd_, 4) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(listen_fd_);
    throw std::runtime_error("upstream: cannot listen on 127.0.0.1");
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { outcome_ = run(); });
}

OneShotUpstream::~OneShotUpstream() {
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
}

std::string OneShotUpstream::url() const {
  return "https%3A%2F%2F127.0.0.1%3A" + std::to_string(port_) + "%2Fhello";
}

std::string OneShotUpstream::outcome() {
  if (thread_.joinable()) thread_.join();
  return outcome_;
}

bool OneShotUpstream::read_request_head(SSL* ssl) {
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    int n = SSL_read(ssl, buf, sizeof buf);
    if (n <= 0) return false;
    head.append(buf, static_cast<size_t>(n));
  }
  return true;
}

std::string OneShotUpstream::answer_hello(SSL* ssl) {
  if (!read_request_head(ssl)) return "no request: " + drain_openssl_errors();
  static const std::string kResponse =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
  SSL_write(ssl, kResponse.data(), static_cast<int>(kResponse.size()));
  SSL_shutdown(ssl);
  return "served";
}

std::string OneShotUpstream::run() {
  pollfd p{listen_fd_, POLLIN, 0};
  if (poll(&p, 1, 5000) != 1) return "no connection";
  int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return "accept failed";
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  SslPtr ssl(SSL_new(ctx_.get()));
  SSL_set_fd(ssl.get(), fd);
  std::string result;
  if (SSL_accept(ssl.get()) != 1) {
    result = "handshake failed: " + drain_openssl_errors();
  } else {
    result = serve_(ssl.get());
  }
  ssl.reset();
  close(fd);
  return result;
}

}  // namespace zt::test
