// A TLS test client with real sockets and a real handshake against the service: optional
// client identity (key.pem + chain.pem from a cert dir's current generation), server chain
// verified against the bundle, TLS version pinned when asked. Reads HTTP responses with
// http-parser. Every operation is bounded by a timeout.
#pragma once

#include "ossl.h"

#include <nlohmann/json.hpp>
#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace zt::test {

struct ClientOptions {
  std::optional<std::string> identity_dir;  // none: send no client certificate
  std::string ca_file;                      // default: the test PKI's bundle
  int min_version = TLS1_2_VERSION;
  int max_version = TLS1_3_VERSION;
  std::string tls12_ciphers;  // OpenSSL cipher string for TLS <= 1.2; empty: the library default
  int timeout_ms = 5000;
};

inline ClientOptions as(const std::string& identity_dir) {
  ClientOptions o;
  o.identity_dir = identity_dir;
  return o;
}

struct HttpResult {
  bool ok = false;  // a complete HTTP response arrived
  int status = 0;
  std::string body;
  nlohmann::json json;  // parsed body (null when not JSON)
  bool connection_close = false;
  std::string error;  // why not ok: TLS alert text, "closed", "timeout", ...
};

class TestConnection {
 public:
  // Connects and handshakes. Returns null (and sets *error) when the handshake failed on our
  // side. In TLS 1.3 the server's refusal of our certificate shows on the first read instead.
  static std::unique_ptr<TestConnection> open(uint16_t port, const ClientOptions& options, std::string* error);
  ~TestConnection();

  HttpResult get(const std::string& target, bool keep_alive = true);
  // Sends raw bytes over TLS and reads one response.
  HttpResult send_raw(const std::string& bytes);
  // head_request: the response to a HEAD request (headers only).
  HttpResult read_response(bool head_request = false);
  bool write(const std::string& bytes);
  // True when the server closed the connection within timeout_ms (EOF or alert).
  bool wait_closed(int timeout_ms);

  std::string tls_version() const;
  std::string server_serial() const;
  SSL* ssl() const { return ssl_.get(); }

 private:
  TestConnection() = default;
  int fd_ = -1;
  std::shared_ptr<SSL_CTX> ctx_;
  SslPtr ssl_;
  std::string pending_;
  int timeout_ms_ = 5000;
};

// One request on a fresh connection ("Connection: close"). A handshake failure on either side
// comes back as ok=false with the error text.
HttpResult https_get(uint16_t port, const std::string& target, const ClientOptions& options);

// Plain TCP helpers.
int tcp_connect(uint16_t port);  // blocking, to 127.0.0.1; -1 on failure
HttpResult http_get_plain(uint16_t port, const std::string& target);

}  // namespace zt::test
