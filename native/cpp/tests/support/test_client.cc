#include "support/test_client.h"

#include "support/pki.h"
#include "x509_util.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/pem.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

namespace zt::test {

namespace {

struct ResponseParser {
  http_parser parser{};
  http_parser_settings settings{};
  std::string body;
  bool complete = false;
  bool head = false;
  explicit ResponseParser(bool head_request = false) : head(head_request) {
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = this;
    http_parser_settings_init(&settings);
    settings.on_body = [](http_parser* p, const char* at, size_t len) {
      static_cast<ResponseParser*>(p->data)->body.append(at, len);
      return 0;
    };
    settings.on_headers_complete = [](http_parser* p) { return static_cast<ResponseParser*>(p->data)->head ? 1 : 0; };
    settings.on_message_complete = [](http_parser* p) {
      auto* self = static_cast<ResponseParser*>(p->data);
      self->complete = true;
      http_parser_pause(p, 1);
      return 0;
    };
  }
};

std::string ssl_errors() {
  std::string s = drain_openssl_errors();
  return s.empty() ? "closed" : s;
}

void finish(HttpResult& r, ResponseParser& p) {
  r.ok = true;
  r.status = static_cast<int>(p.parser.status_code);
  r.body = p.body;
  r.connection_close = http_should_keep_alive(&p.parser) == 0;
  r.json = nlohmann::json::parse(r.body, nullptr, false);
  if (r.json.is_discarded()) r.json = nullptr;
}

}  // namespace

int tcp_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

std::unique_ptr<TestConnection> TestConnection::open(uint16_t port, const ClientOptions& options, std::string* error) {
  ERR_clear_error();
  std::unique_ptr<TestConnection> c(new TestConnection());
  c->timeout_ms_ = options.timeout_ms;
  c->ctx_.reset(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  SSL_CTX* ctx = c->ctx_.get();
  SSL_CTX_set_min_proto_version(ctx, options.min_version);
  SSL_CTX_set_max_proto_version(ctx, options.max_version);
  if (!options.tls12_ciphers.empty() && SSL_CTX_set_cipher_list(ctx, options.tls12_ciphers.c_str()) != 1) {
    *error = "cannot set cipher list " + options.tls12_ciphers + ": " + ssl_errors();
    return nullptr;
  }
  std::string ca = options.ca_file.empty() ? pki().bundle() : options.ca_file;
  if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) {
    *error = "cannot load CA file " + ca;
    return nullptr;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (options.identity_dir) {
    std::string gen = std::filesystem::canonical(*options.identity_dir + "/current").string();
    if (SSL_CTX_use_certificate_chain_file(ctx, (gen + "/chain.pem").c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, (gen + "/key.pem").c_str(), SSL_FILETYPE_PEM) != 1) {
      // wrong-key material: the library refuses the pair; tests that need it never get here
      *error = "cannot load client identity: " + ssl_errors();
      return nullptr;
    }
  }
  c->fd_ = tcp_connect(port);
  if (c->fd_ < 0) {
    *error = "connect failed";
    return nullptr;
  }
  timeval tv{options.timeout_ms / 1000, (options.timeout_ms % 1000) * 1000};
  setsockopt(c->fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c->fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  c->ssl_.reset(SSL_new(ctx));
  SSL_set_fd(c->ssl_.get(), c->fd_);
  if (SSL_connect(c->ssl_.get()) != 1) {
    *error = ssl_errors();
    return nullptr;
  }
  return c;
}

TestConnection::~TestConnection() {
  ssl_.reset();
  if (fd_ >= 0) close(fd_);
}

bool TestConnection::write(const std::string& bytes) {
  ERR_clear_error();
  size_t written = 0;
  return SSL_write_ex(ssl_.get(), bytes.data(), bytes.size(), &written) == 1 && written == bytes.size();
}

HttpResult TestConnection::read_response(bool head_request) {
  HttpResult r;
  ResponseParser p(head_request);
  char buf[16384];
  for (;;) {
    if (!pending_.empty()) {
      size_t used = http_parser_execute(&p.parser, &p.settings, pending_.data(), pending_.size());
      pending_.erase(0, used);
      if (p.complete) {
        finish(r, p);
        return r;
      }
      if (HTTP_PARSER_ERRNO(&p.parser) != HPE_OK) {
        r.error = "malformed response";
        return r;
      }
    }
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl_.get(), buf, sizeof buf, &n) != 1) {
      int e = SSL_get_error(ssl_.get(), 0);
      (void)e;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        r.error = "timeout";
      } else {
        r.error = ssl_errors();
      }
      // EOF may complete a body without Content-Length
      http_parser_execute(&p.parser, &p.settings, nullptr, 0);
      if (p.complete) finish(r, p);
      return r;
    }
    pending_.append(buf, n);
  }
}

HttpResult TestConnection::get(const std::string& target, bool keep_alive) {
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                    (keep_alive ? std::string() : std::string("Connection: close\r\n")) + "\r\n";
  return send_raw(req);
}

HttpResult TestConnection::send_raw(const std::string& bytes) {
  if (!write(bytes)) {
    HttpResult r;
    r.error = ssl_errors();
    // In TLS 1.3 a refusal may already be waiting to be read.
    HttpResult after = read_response();
    if (!after.error.empty() && after.error != "closed") r.error = after.error;
    return r;
  }
  return read_response();
}

bool TestConnection::wait_closed(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[1024];
  while (std::chrono::steady_clock::now() < deadline) {
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl_.get(), buf, sizeof buf, &n) == 1) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) continue;  // SO_RCVTIMEO elapsed; keep waiting
    ERR_clear_error();
    return true;
  }
  return false;
}

std::string TestConnection::tls_version() const { return SSL_get_version(ssl_.get()); }

std::string TestConnection::server_serial() const {
  X509* cert = SSL_get0_peer_certificate(ssl_.get());
  return cert == nullptr ? "" : cert_serial_hex(cert);
}

HttpResult https_get(uint16_t port, const std::string& target, const ClientOptions& options) {
  std::string error;
  auto conn = TestConnection::open(port, options, &error);
  if (!conn) {
    HttpResult r;
    r.error = error;
    return r;
  }
  return conn->get(target, false);
}

HttpResult http_get_plain(uint16_t port, const std::string& target) {
  HttpResult r;
  int fd = tcp_connect(port);
  if (fd < 0) {
    r.error = "connect failed";
    return r;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    close(fd);
    r.error = "send failed";
    return r;
  }
  ResponseParser p;
  char buf[16384];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      http_parser_execute(&p.parser, &p.settings, nullptr, 0);
      break;
    }
    http_parser_execute(&p.parser, &p.settings, buf, static_cast<size_t>(n));
    if (p.complete) break;
  }
  close(fd);
  if (p.complete) {
    finish(r, p);
  } else {
    r.error = "no complete response";
  }
  return r;
}

}  // namespace zt::test
