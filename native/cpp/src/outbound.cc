#include "outbound.h"

#include "net.h"
#include "svid.h"
#include "x509_util.h"

#include <http_parser.h>
#include <arpa/inet.h>

namespace zt {
namespace {

constexpr size_t kMaxResponse = size_t{1024} * 1024;

struct ResponseReader {
  http_parser parser{};
  http_parser_settings settings{};
  std::string body;
  bool complete = false;
  bool too_large = false;

  ResponseReader() {
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = this;
    http_parser_settings_init(&settings);
    settings.on_body = [](http_parser* p, const char* at, size_t len) {
      auto* self = static_cast<ResponseReader*>(p->data);
      if (self->body.size() + len > kMaxResponse) {
        self->too_large = true;
        return 1;
      }
      self->body.append(at, len);
      return 0;
    };
    settings.on_message_complete = [](http_parser* p) {
      static_cast<ResponseReader*>(p->data)->complete = true;
      return 0;
    };
  }
  // false on malformed input
  bool feed(const char* data, size_t n) {
    size_t used = http_parser_execute(&parser, &settings, data, n);
    return HTTP_PARSER_ERRNO(&parser) == HPE_OK && (used == n || complete);
  }
};

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

CallOutcome failure(CallOutcome::Kind kind, std::string reason) {
  CallOutcome o;
  o.kind = kind;
  o.reason = std::move(reason);
  return o;
}

// Why a TLS operation with the upstream failed, in words a person can act on.
std::string tls_failure_reason(SSL* ssl, const VerifyOutcome& outcome) {
  std::string stack = drain_openssl_errors();
  if (outcome.reason) return "certificate verify failed: " + outcome.detail;
  long vr = SSL_get_verify_result(ssl);
  if (vr != X509_V_OK) return std::string("certificate verify failed: ") + X509_verify_cert_error_string(vr);
  return stack.empty() ? "TLS handshake failed" : stack;
}

}  // namespace

Result<TargetUrl> parse_target_url(const std::string& url) {
  if (url.rfind("https://", 0) != 0) return fail("target must be an https:// URL");
  http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(url.data(), url.size(), 0, &u) != 0) return fail("target is not a valid URL");
  if ((u.field_set & (1 << UF_HOST)) == 0) return fail("target has no host");
  if ((u.field_set & (1 << UF_USERINFO)) != 0) return fail("target must not carry userinfo");
  TargetUrl t;
  t.host = url.substr(u.field_data[UF_HOST].off, u.field_data[UF_HOST].len);
  if ((u.field_set & (1 << UF_PORT)) != 0) {
    if (u.port == 0) return fail("target has port 0");
    t.port = u.port;
  }
  t.path_and_query = (u.field_set & (1 << UF_PATH)) != 0
                         ? url.substr(u.field_data[UF_PATH].off, u.field_data[UF_PATH].len)
                         : "/";
  if ((u.field_set & (1 << UF_QUERY)) != 0) {
    t.path_and_query.append("?").append(url, u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
  }
  bool v6 = t.host.find(':') != std::string::npos;
  t.host_header = v6 ? std::string("[").append(t.host).append("]") : t.host;
  t.host_header.append(":").append(std::to_string(t.port));
  return t;
}

CallOutcome call_upstream(const TlsContexts& tls, const TargetUrl& target, const SpiffeId& expect,
                          const CallOptions& options) {
  using Kind = CallOutcome::Kind;
  Deadline handshake_deadline = deadline_in_ms(options.handshake_timeout_ms);
  ConnectError cerr;
  UniqueFd fd(connect_tcp(target.host, target.port, handshake_deadline, cerr));
  if (!fd) return failure(cerr.timeout ? Kind::Timeout : Kind::UpstreamError, cerr.message);

  ERR_clear_error();
  SslPtr ssl(SSL_new(tls.client.get()));
  if (!ssl) return failure(Kind::UpstreamError, "SSL_new failed: " + drain_openssl_errors());
  VerifyOutcome outcome;
  PeerVerifier::attach_outcome(ssl.get(), &outcome);
  SSL_set_fd(ssl.get(), fd.get());
  SSL_set_connect_state(ssl.get());
  if (!is_ip_literal(target.host)) SSL_set_tlsext_host_name(ssl.get(), target.host.c_str());

  IoStatus hs = tls_handshake(ssl.get(), fd.get(), handshake_deadline);
  if (hs == IoStatus::Timeout) {
    return failure(Kind::Timeout, "TLS handshake with " + target.host_header + " timed out");
  }
  if (hs != IoStatus::Ok) return failure(Kind::UpstreamTls, tls_failure_reason(ssl.get(), outcome));

  CallOutcome result;
  X509* peer_cert = SSL_get0_peer_certificate(ssl.get());
  if (peer_cert == nullptr) return failure(Kind::UpstreamTls, "the upstream presented no certificate");
  auto svid = inspect_svid_leaf(peer_cert);
  if (!svid) return failure(Kind::UpstreamTls, "certificate verify failed: " + svid.error());
  result.peer = svid->id.str();
  result.peer_serial = svid->serial;
  if (!(svid->id == expect)) {
    CallOutcome o = failure(Kind::IdentityMismatch, "expected " + expect.str() + ", got " + result.peer);
    o.peer = result.peer;
    o.peer_serial = result.peer_serial;
    return o;
  }

  Deadline response_deadline = deadline_in_ms(options.response_timeout_ms);
  std::string request = "GET " + target.path_and_query + " HTTP/1.1\r\nHost: " + target.host_header +
                        "\r\nAccept: application/json\r\nConnection: close\r\n\r\n";
  auto with_peer = [&](CallOutcome o) {
    o.peer = result.peer;
    o.peer_serial = result.peer_serial;
    return o;
  };
  IoStatus ws = tls_write_all(ssl.get(), fd.get(), request, response_deadline);
  if (ws == IoStatus::Timeout) return with_peer(failure(Kind::Timeout, "sending the request timed out"));
  if (ws != IoStatus::Ok) {
    // In TLS 1.3 an upstream that refuses our certificate says so only after our handshake
    // "completed": its alert arrives here.
    return with_peer(failure(Kind::UpstreamTls, tls_failure_reason(ssl.get(), outcome)));
  }

  ResponseReader reader;
  char buf[16384];
  while (!reader.complete) {
    size_t n = 0;
    IoStatus rs = tls_read_some(ssl.get(), fd.get(), buf, sizeof buf, n, response_deadline);
    if (rs == IoStatus::Timeout) {
      return with_peer(failure(Kind::Timeout, "no complete response from " + target.host_header +
                                                  " within " + std::to_string(options.response_timeout_ms) +
                                                  " ms"));
    }
    if (rs == IoStatus::Closed) {
      reader.feed(nullptr, 0);  // EOF may complete a response without Content-Length
      if (!reader.complete) {
        return with_peer(failure(Kind::UpstreamError, "the upstream closed the connection mid-response"));
      }
      break;
    }
    if (rs == IoStatus::Failed) {
      unsigned long err = ERR_peek_error();
      if (ERR_GET_LIB(err) == ERR_LIB_SSL) {
        return with_peer(failure(Kind::UpstreamTls, tls_failure_reason(ssl.get(), outcome)));
      }
      return with_peer(failure(Kind::UpstreamError, "reading the response failed: " + drain_openssl_errors()));
    }
    if (!reader.feed(buf, n)) {
      return with_peer(failure(Kind::UpstreamError,
                               reader.too_large ? "the upstream response exceeds 1 MiB"
                                                : "the upstream sent malformed HTTP"));
    }
  }
  SSL_shutdown(ssl.get());  // best effort close_notify; never waits
  ERR_clear_error();
  result.kind = Kind::Ok;
  result.status = static_cast<int>(reader.parser.status_code);
  result.body = std::move(reader.body);
  return result;
}

}  // namespace zt
