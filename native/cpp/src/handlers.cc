#include "handlers.h"

#include "outbound.h"
#include "x509_util.h"

#include <chrono>

namespace zt {

namespace {
std::string route_label(const std::string& path) {
  return path == "/hello" || path == "/call" ? path : "other";
}

// Logs type an unknown peer or serial as null, never "".
nlohmann::json or_null(const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); }
}  // namespace

RequestHandler::RequestHandler(const Config& cfg, Metrics& metrics, Logger& log, const StateHolder& states)
    : cfg_(cfg), metrics_(metrics), log_(log), states_(states) {}

Response RequestHandler::handle(const Request& req, const PeerInfo& peer, const ServiceState& conn_state) {
  auto start = std::chrono::steady_clock::now();
  Response r = route(req, peer, conn_state);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  record(req.method, req.path, r.status, peer, ms);
  return r;
}

Response RequestHandler::handle_malformed(const HttpError& err, const PeerInfo& peer) {
  Response r = error_response(err.status, err.code, err.reason);
  r.close = true;
  record("", "", r.status, peer, 0);
  return r;
}

Response RequestHandler::handle_expired_peer(const Request& req, const PeerInfo& peer, std::time_t not_after) {
  Response r = error_response(401, "peer_certificate_expired",
                              "the client certificate of this connection expired at " + rfc3339(not_after) +
                                  "; connect again with a valid certificate");
  r.close = true;
  record(req.method, req.path, r.status, peer, 0);
  return r;
}

void RequestHandler::record(const std::string& method, const std::string& path, int status,
                            const PeerInfo& peer, double duration_ms) {
  metrics_.http_request(route_label(path), status);
  log_.info("request", {{"method", method},
                        {"path", path},
                        {"status", status},
                        {"caller", peer.spiffe_id},
                        {"duration_ms", static_cast<double>(static_cast<long long>(duration_ms * 1000)) / 1000}});
}

Response RequestHandler::route(const Request& req, const PeerInfo& peer, const ServiceState& conn_state) {
  std::shared_ptr<const ServiceState> current = states_.get();
  // The callee is who we are now (the current leaf), the same for every open connection.
  const std::string callee = current->identity().id.str();
  if (current->policy && !current->policy->is_allowed({peer.spiffe_id, callee, req.method, req.path})) {
    metrics_.policy_denied();
    log_.info("policy_denied", {{"caller", peer.spiffe_id}, {"callee", callee}, {"method", req.method}, {"path", req.path}});
    return json_response(403, {{"error", "forbidden"},
                                     {"reason", peer.spiffe_id + " may not call " + req.method + " " + req.path + " on " + callee},
                                     {"caller", peer.spiffe_id},
                                     {"callee", callee},
                                     {"method", req.method},
                                     {"path", req.path}});
  }
  if (req.path != "/hello" && req.path != "/call") {
    return error_response(404, "not_found", "no route for " + req.path + " (try /hello or /call)");
  }
  if (req.method != "GET") {
    return error_response(405, "method_not_allowed", req.method + " is not allowed; use GET");
  }
  return req.path == "/hello" ? hello(peer, conn_state) : call(req);
}

Response RequestHandler::hello(const PeerInfo& peer, const ServiceState& conn_state) {
  const Identity& id = conn_state.identity();
  return json_response(200, {{"service", cfg_.name},
                             {"spiffe_id", id.id.str()},
                             {"serial", id.serial},
                             {"caller", peer.spiffe_id},
                             {"caller_serial", peer.serial},
                             {"tls_version", peer.tls_version}});
}

Response RequestHandler::call(const Request& req) {
  auto query = parse_query(req.query);
  if (!query) return error_response(400, "bad_request", "malformed query string");
  auto target_it = query->find("target");
  if (target_it == query->end() || target_it->second.empty()) {
    return error_response(400, "bad_request", "missing ?target=<https URL>");
  }
  const std::string& target_text = target_it->second;
  auto target = parse_target_url(target_text);
  if (!target) return error_response(400, "bad_request", target.error());
  std::string expect_text;
  if (auto e = query->find("expect"); e != query->end()) {
    expect_text = e->second;
  } else if (cfg_.expect_peer) {
    expect_text = *cfg_.expect_peer;
  } else {
    return error_response(400, "bad_request",
                          "no expected peer: pass ?expect=<SPIFFE ID> or start with --expect-peer");
  }
  auto expect = SpiffeId::parse_workload(expect_text);
  if (!expect) return error_response(400, "bad_request", "bad expect: " + expect.error());

  std::shared_ptr<const ServiceState> current = states_.get();  // our current identity
  CallOptions options{cfg_.handshake_timeout_ms, cfg_.idle_timeout_ms};
  CallOutcome out = call_upstream(*current->tls, target.value(), expect.value(), options);

  using Kind = CallOutcome::Kind;
  bool ok = out.kind == Kind::Ok;
  metrics_.outbound_call(ok);
  nlohmann::json fields = {{"target", target_text},
                           {"result", ok ? "success" : "failure"},
                           {"peer", or_null(out.peer)},
                           {"peer_serial", or_null(out.peer_serial)}};
  if (!ok) fields["reason"] = out.reason;
  if (ok) {
    log_.info("call", fields);
  } else {
    log_.warn("call", fields);
  }
  switch (out.kind) {
    case Kind::Ok: {
      nlohmann::json body = nlohmann::json::parse(out.body, nullptr, false);
      if (body.is_discarded()) body = out.body;  // not JSON: pass it on as a string
      return json_response(200, {{"service", cfg_.name},
                                 {"target", target_text},
                                 {"peer", out.peer},
                                 {"peer_serial", out.peer_serial},
                                 {"status", out.status},
                                 {"response", body}});
    }
    case Kind::BadTarget: return error_response(400, "bad_request", out.reason);
    case Kind::UpstreamTls: return error_response(502, "upstream_tls", out.reason);
    case Kind::IdentityMismatch: return error_response(502, "peer_identity_mismatch", out.reason);
    case Kind::UpstreamError: return error_response(502, "upstream_error", out.reason);
    case Kind::Timeout: return error_response(504, "upstream_timeout", out.reason);
  }
  return error_response(500, "internal", "unexpected call outcome");
}

}  // namespace zt
