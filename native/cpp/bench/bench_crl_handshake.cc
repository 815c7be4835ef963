// bench_crl_handshake: what does revocation checking cost per handshake?
//
// Runs N real mTLS handshakes over loopback (TLS 1.3, full handshakes, the server verifying
// the client's certificate) for each of three server configurations:
//
//   none     no CRL
//   indexed  the service's way: the 100k-entry CRL's signature verified once at load, each
//            handshake a hash lookup per chain certificate (CrlIndex + PeerVerifier)
//   stock    OpenSSL's own X509_V_FLAG_CRL_CHECK with the same CRL in the X509_STORE
//
// A handshake is timed from connect() until the client has read one byte that the server
// writes after SSL_accept() returned, so the server's certificate verification is inside the
// measured interval even in TLS 1.3 (where the client finishes first). Prints mean/p50/p99
// per mode and the ratios; also checks that a revoked client is refused in both CRL modes.
//
// Usage: bench_crl_handshake --pki DIR [--crl FILE] [-n N] [--warmup W]
//   DIR from `make_test_pki.py all DIR --large-crl`; FILE defaults to DIR/crl/crl-large.pem.
#include "crl_index.h"
#include "identity.h"
#include "net.h"
#include "tls_context.h"
#include "x509_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

using namespace zt;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "bench_crl_handshake: %s\n", msg.c_str());
  std::exit(1);
}

template <class T>
T must(Result<T> r, const std::string& what) {
  if (!r) die(what + ": " + r.error());
  return std::move(r).value();
}

// A blocking, sequential TLS server: accept, handshake, write one byte, close.
class BenchServer {
 public:
  explicit BenchServer(std::shared_ptr<SSL_CTX> ctx) : ctx_(std::move(ctx)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 128) != 0) {
      die("cannot listen on 127.0.0.1");
    }
    port_ = local_port(fd_);
    thread_ = std::thread([this] { run(); });
  }
  ~BenchServer() {
    stop_ = true;
    // Unblock accept() with one last connection.
    int c = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    close(c);
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  int refused() const { return refused_.load(); }

 private:
  void run() {
    while (!stop_) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      if (stop_) {
        close(c);
        break;
      }
      int one = 1;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      SslPtr ssl(SSL_new(ctx_.get()));
      SSL_set_fd(ssl.get(), c);
      if (SSL_accept(ssl.get()) == 1) {
        SSL_write(ssl.get(), "k", 1);
        SSL_shutdown(ssl.get());
      } else {
        ++refused_;
      }
      ERR_clear_error();
      ssl.reset();
      close(c);
    }
  }
  std::shared_ptr<SSL_CTX> ctx_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> refused_{0};
  std::thread thread_;
};

// One client handshake; returns microseconds, or -1 when the server refused us.
double handshake_us(SSL_CTX* client_ctx, uint16_t port) {
  auto t0 = Clock::now();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("connect failed");
  SslPtr ssl(SSL_new(client_ctx));
  SSL_set_fd(ssl.get(), fd);
  double result = -1;
  char b = 0;
  if (SSL_connect(ssl.get()) == 1 && SSL_read(ssl.get(), &b, 1) == 1 && b == 'k') {
    result = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }
  ERR_clear_error();
  ssl.reset();
  close(fd);
  return result;
}

struct Stats {
  double mean, p50, p99;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) { return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))]; };
  return {std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()), pct(0.50), pct(0.99)};
}

}  // namespace

int main(int argc, char** argv) {
  std::string pki;
  std::string crl_path;
  int n = 2000;
  int warmup = 100;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--pki") {
      pki = next();
    } else if (a == "--crl") {
      crl_path = next();
    } else if (a == "-n") {
      n = std::atoi(next().c_str());
    } else if (a == "--warmup") {
      warmup = std::atoi(next().c_str());
    } else {
      die("usage: bench_crl_handshake --pki DIR [--crl FILE] [-n N] [--warmup W]");
    }
  }
  if (pki.empty() || n < 10) die("usage: bench_crl_handshake --pki DIR [--crl FILE] [-n N] [--warmup W]");
  if (crl_path.empty()) crl_path = pki + "/crl/crl-large.pem";

  auto server_id = must(load_identity(pki + "/ids/service-a"), "server identity");
  auto client_id = must(load_identity(pki + "/ids/client"), "client identity");
  auto revoked_id = must(load_identity(pki + "/ids/revoked"), "revoked identity");
  std::string crl_pem = must(read_file(crl_path), "CRL");

  auto t0 = Clock::now();
  auto index = must(CrlIndex::parse(crl_pem, crl_path, server_id->ca_certs(), std::time(nullptr)), "CRL index");
  double load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  std::printf("CRL %s: %zu entries, %zu bytes PEM; indexed once in %.1f ms (signature verified once)\n",
              crl_path.c_str(), index->entries(), crl_pem.size(), load_ms);

  // Clients never check CRLs here: only the server side differs between modes.
  auto client_ctx = must(build_contexts(client_id, nullptr, {}), "client contexts");
  auto revoked_ctx = must(build_contexts(revoked_id, nullptr, {}), "revoked-client contexts");

  struct Mode {
    const char* name;
    std::shared_ptr<const CrlIndex> crl;
    RevocationMode revocation;
  };
  std::vector<Mode> modes = {
      {"none", nullptr, RevocationMode::Indexed},
      {"indexed", index, RevocationMode::Indexed},
      {"stock", index, RevocationMode::StockOpenSsl},
  };
  // All three servers run at once and the modes are interleaved (rotating order), so load
  // from anything else on the machine falls on every mode alike.
  std::vector<std::shared_ptr<const TlsContexts>> contexts;
  std::vector<std::unique_ptr<BenchServer>> servers;
  for (const Mode& m : modes) {
    ContextOptions opt;
    opt.revocation = m.revocation;
    contexts.push_back(must(build_contexts(server_id, m.crl, opt, crl_pem), std::string("server contexts ") + m.name));
    servers.push_back(std::make_unique<BenchServer>(contexts.back()->server));
    if (m.crl && handshake_us(revoked_ctx->client.get(), servers.back()->port()) >= 0) {
      die(std::string("mode ") + m.name + ": the revoked client was NOT refused");
    }
  }
  std::printf("%d handshakes per mode (after %d warm-up), interleaved, TLS 1.3, ECDSA P-256, loopback\n\n", n,
              warmup);
  std::vector<std::vector<double>> samples(modes.size());
  for (int i = -warmup; i < n; ++i) {
    for (size_t k = 0; k < modes.size(); ++k) {
      size_t m = (k + static_cast<size_t>(i + warmup)) % modes.size();
      double us = handshake_us(client_ctx->client.get(), servers[m]->port());
      if (us < 0) die(std::string("mode ") + modes[m].name + ": a good client was refused");
      if (i >= 0) samples[m].push_back(us);
    }
  }
  servers.clear();

  // The same per-handshake certificate check without the TLS around it: what the server
  // spends verifying the client's chain (PeerVerifier, exactly as installed on the SSL_CTX).
  std::vector<double> verify_us(modes.size());
  X509StackPtr untrusted(sk_X509_new_null());
  for (const auto& c : client_id->intermediates) sk_X509_push(untrusted.get(), up_ref(c.get()).release());
  const int verify_n = std::max(200, n / 2);
  for (size_t m = 0; m < modes.size(); ++m) {
    X509_STORE* store = SSL_CTX_get_cert_store(contexts[m]->server.get());
    auto t = Clock::now();
    for (int i = 0; i < verify_n; ++i) {
      X509StoreCtxPtr sctx(X509_STORE_CTX_new());
      X509_STORE_CTX_init(sctx.get(), store, client_id->leaf.get(), untrusted.get());
      X509_STORE_CTX_set_default(sctx.get(), "ssl_client");
      if (contexts[m]->verifier->verify(sctx.get()) != 1) die(std::string("verify failed in mode ") + modes[m].name);
    }
    verify_us[m] = std::chrono::duration<double, std::micro>(Clock::now() - t).count() / verify_n;
  }

  std::vector<Stats> results;
  std::printf("%-8s %10s %10s %10s   (microseconds per handshake)\n", "mode", "mean", "p50", "p99");
  for (size_t m = 0; m < modes.size(); ++m) {
    results.push_back(stats(samples[m]));
    std::printf("%-8s %10.1f %10.1f %10.1f\n", modes[m].name, results[m].mean, results[m].p50, results[m].p99);
  }
  std::printf("\nratios (mean)      indexed/none = %.2fx   stock/none = %.2fx   stock/indexed = %.2fx\n",
              results[1].mean / results[0].mean, results[2].mean / results[0].mean,
              results[2].mean / results[1].mean);
  std::printf("ratios (p50)       indexed/none = %.2fx   stock/none = %.2fx   stock/indexed = %.2fx\n",
              results[1].p50 / results[0].p50, results[2].p50 / results[0].p50, results[2].p50 / results[1].p50);
  std::printf("\nchain verification alone (PeerVerifier, %d runs, no TLS), microseconds:\n", std::max(200, n / 2));
  std::printf("%-8s %10.1f\n%-8s %10.1f\n%-8s %10.1f\n", "none", verify_us[0], "indexed", verify_us[1], "stock",
              verify_us[2]);
  std::printf("ratios             indexed/none = %.2fx   stock/none = %.2fx   stock/indexed = %.2fx\n",
              verify_us[1] / verify_us[0], verify_us[2] / verify_us[0], verify_us[2] / verify_us[1]);
  std::printf("\nrevoked client refused in indexed and stock modes: yes\n");
  return 0;
}
