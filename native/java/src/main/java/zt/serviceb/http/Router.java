package zt.serviceb.http;

import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Supplier;

import zt.serviceb.identity.InvalidSpiffeIdException;
import zt.serviceb.identity.SpiffeId;
import zt.serviceb.observe.JsonLog;
import zt.serviceb.observe.Metrics;
import zt.serviceb.policy.Policy;

/**
 * Turns one request from an authenticated caller into a response (contracts.md 5): policy
 * first (deny by default when a policy is loaded), then the routes {@code /hello} and
 * {@code /call}; counts {@code http_requests_total} and logs {@code request} for every answer.
 */
public final class Router {
    private final String serviceName;
    private final Supplier<String> ownSpiffeId;
    private final Supplier<Policy> policy;
    private final SpiffeId expectPeer;
    private final OutboundCaller caller;
    private final Metrics metrics;
    private final JsonLog log;

    public Router(String serviceName, Supplier<String> ownSpiffeId, Supplier<Policy> policy, SpiffeId expectPeer,
                  OutboundCaller caller, Metrics metrics, JsonLog log) {
        this.serviceName = serviceName;
        this.ownSpiffeId = ownSpiffeId;
        this.policy = policy;
        this.expectPeer = expectPeer;
        this.caller = caller;
        this.metrics = metrics;
        this.log = log;
    }

    public HttpResponse handle(HttpRequest req, Peer peer) {
        long start = System.nanoTime();
        HttpResponse resp = route(req, peer);
        record(req.method(), req.path(), resp.status(), peer, start);
        return resp;
    }

    /** A request the reader refused (400, 431): counted and logged like any other answer. */
    public HttpResponse refused(HttpProtocolException e, Peer peer) {
        HttpResponse resp = HttpResponse.error(e.status(), e.error(), e.getMessage());
        record(null, null, resp.status(), peer, System.nanoTime());
        return resp;
    }

    private void record(String method, String path, int status, Peer peer, long startNanos) {
        metrics.httpRequest(routeLabel(path), status);
        log.info("request", "method", method, "path", path, "status", status, "caller", peer.spiffeId(),
                "duration_ms", (System.nanoTime() - startNanos) / 1_000_000.0);
    }

    static String routeLabel(String path) {
        return "/hello".equals(path) || "/call".equals(path) ? path : "other";
    }

    private HttpResponse route(HttpRequest req, Peer peer) {
        String callee = ownSpiffeId.get();
        if (!policy.get().isAllowed(peer.spiffeId(), callee, req.method(), req.path())) {
            // Counter before the log line: whoever sees the line may read the counter at once.
            metrics.policyDenied();
            log.info("policy_denied", "caller", peer.spiffeId(), "callee", callee, "method", req.method(),
                    "path", req.path());
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("error", "forbidden");
            m.put("reason", peer.spiffeId() + " may not call " + req.method() + " " + req.path() + " on " + callee);
            m.put("caller", peer.spiffeId());
            m.put("callee", callee);
            m.put("method", req.method());
            m.put("path", req.path());
            return HttpResponse.json(403, m);
        }
        boolean known = "/hello".equals(req.path()) || "/call".equals(req.path());
        if (!known) {
            return HttpResponse.error(404, "not_found", "no route for " + req.path() + " (try /hello or /call)");
        }
        if (!"GET".equals(req.method())) {
            return HttpResponse.error(405, "method_not_allowed", req.method() + " is not allowed; use GET");
        }
        return "/hello".equals(req.path()) ? hello(peer) : call(req, peer);
    }

    private HttpResponse hello(Peer peer) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("service", serviceName);
        m.put("spiffe_id", ownSpiffeId.get());
        m.put("serial", peer.localSerial());
        m.put("caller", peer.spiffeId());
        m.put("caller_serial", peer.serial());
        m.put("tls_version", peer.tlsVersion());
        return HttpResponse.json(200, m);
    }

    private HttpResponse call(HttpRequest req, Peer peer) {
        Map<String, String> q;
        try {
            q = parseQuery(req.query());
        } catch (IllegalArgumentException e) {
            return HttpResponse.error(400, "bad_request", "malformed query string: " + e.getMessage());
        }
        String targetText = q.get("target");
        if (targetText == null || targetText.isEmpty()) {
            return HttpResponse.error(400, "bad_request", "missing target=<https URL>");
        }
        OutboundCaller.Target target;
        try {
            target = OutboundCaller.parseTarget(targetText);
        } catch (IllegalArgumentException e) {
            return HttpResponse.error(400, "bad_request", e.getMessage());
        }
        SpiffeId expected;
        String expectText = q.get("expect");
        if (expectText != null) {
            try {
                expected = SpiffeId.parse(expectText);
            } catch (InvalidSpiffeIdException e) {
                return HttpResponse.error(400, "bad_request", "bad expect: " + e.getMessage());
            }
        } else if (expectPeer != null) {
            expected = expectPeer;
        } else {
            return HttpResponse.error(400, "bad_request",
                    "no expected peer: pass expect=<SPIFFE ID> or start the service with --expect-peer");
        }
        CallResult result = caller.call(target, expected);
        if (result instanceof CallResult.Answered a) {
            metrics.outboundCall(true);
            log.info("call", "target", target.text(), "result", "success", "peer", a.peer(),
                    "peer_serial", a.peerSerial(), "status", a.status());
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("service", serviceName);
            m.put("target", target.text());
            m.put("peer", a.peer());
            m.put("peer_serial", a.peerSerial());
            m.put("status", a.status());
            m.put("response", a.body());
            return HttpResponse.json(200, m);
        }
        CallResult.Failed f = (CallResult.Failed) result;
        metrics.outboundCall(false);
        log.warn("call", "target", target.text(), "result", "failure", "peer", f.peer(), "peer_serial",
                f.peerSerial(), "reason", f.error() + ": " + f.reason());
        return HttpResponse.error(f.httpStatus(), f.error(), f.reason());
    }

    /** application/x-www-form-urlencoded; the first value of a repeated name wins. */
    static Map<String, String> parseQuery(String query) {
        Map<String, String> m = new HashMap<>();
        if (query == null || query.isEmpty()) {
            return m;
        }
        for (String pair : query.split("&")) {
            if (pair.isEmpty()) {
                continue;
            }
            int eq = pair.indexOf('=');
            String k = URLDecoder.decode(eq < 0 ? pair : pair.substring(0, eq), StandardCharsets.UTF_8);
            String v = eq < 0 ? "" : URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8);
            m.putIfAbsent(k, v);
        }
        return m;
    }
}
