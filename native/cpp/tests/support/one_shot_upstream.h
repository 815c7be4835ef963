// An upstream for /call tests: a one-connection OpenSSL server on a thread that presents a
// test PKI identity's chain, so the service's outbound side meets a real TLS peer an attacker
// (or a broken CA) controls. `configure` narrows its context before it listens; `serve` runs
// after a completed handshake and returns what the upstream observed (outcome()). Accepting,
// reading and writing are each bounded by 5 s, so a test never hangs on it.
#pragma once

#include "ossl.h"

#include <openssl/ssl.h>

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace zt::test {

class OneShotUpstream {
 public:
  using Configure = std::function<void(SSL_CTX*)>;
  using Serve = std::function<std::string(SSL*)>;

  OneShotUpstream(const std::string& identity, const Configure& configure, Serve serve);
  ~OneShotUpstream();
  OneShotUpstream(const OneShotUpstream&) = delete;
  OneShotUpstream& operator=(const OneShotUpstream&) = delete;

  // https://127.0.0.1:<port>/hello, URL-encoded for /call?target=.
  std::string url() const;
  // What the upstream observed; waits for its one connection to end.
  std::string outcome();

  // Reads one request head; true when it arrived.
  static bool read_request_head(SSL* ssl);
  // The plain upstream: reads one request and answers 200 {}; "served", or why not.
  static std::string answer_hello(SSL* ssl);

 private:
  std::string run();

  SslCtxPtr ctx_;
  Serve serve_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::string outcome_;
};

}  // namespace zt::test
