// The HTTP API (docs/contracts.md section 5): routing, the authorisation hook, /hello and
// /call, and the per-request metric and log line.
//
// Authorisation runs before routing: with a policy, a caller that may not access a path gets
// 403 whether or not the path exists, over the completed TLS connection. The policy consulted
// is the current one (a reload that narrows access applies to open connections at once); the
// serial /hello reports is that of the certificate this connection was made with.
#pragma once

#include "config.h"
#include "http_request.h"
#include "http_response.h"
#include "logger.h"
#include "metrics.h"
#include "service_state.h"

#include <ctime>
#include <string>

namespace zt {

struct PeerInfo {
  std::string spiffe_id;
  std::string serial;
  std::string tls_version;
  std::string addr;
};

class RequestHandler {
 public:
  RequestHandler(const Config& cfg, Metrics& metrics, Logger& log, const StateHolder& states);

  Response handle(const Request& req, const PeerInfo& peer, const ServiceState& conn_state);
  // A request that could not be parsed: the error response, counted and logged.
  Response handle_malformed(const HttpError& err, const PeerInfo& peer);
  // A request on a connection whose peer certificate expired after the handshake (issue 18):
  // 401 peer_certificate_expired, counted and logged; the caller closes the connection.
  Response handle_expired_peer(const Request& req, const PeerInfo& peer, std::time_t not_after);

 private:
  Response route(const Request& req, const PeerInfo& peer, const ServiceState& conn_state);
  Response hello(const PeerInfo& peer, const ServiceState& conn_state);
  Response call(const Request& req);
  void record(const std::string& method, const std::string& path, int status, const PeerInfo& peer,
              double duration_ms);

  const Config& cfg_;
  Metrics& metrics_;
  Logger& log_;
  const StateHolder& states_;
};

}  // namespace zt
