package zt.serviceb.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import zt.serviceb.identity.SpiffeId;
import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestClient.Response;
import zt.serviceb.support.TestPki;

/**
 * GET /call against a second real server instance: the target's SPIFFE ID is checked (not its
 * host name), its chain against the bundle and the CRL; every failure has its contract code.
 */
class OutboundCallShould {
    @TempDir
    static Path tmp;
    private static TestPki pki;
    private static RunningService caller;
    private static RunningService callerWithExpectPeer;
    private static RunningService serviceA;
    private static RunningService revokedTarget;
    private static RunningService refusingTarget;
    private static SSLContext client;

    @BeforeAll
    static void start() throws Exception {
        pki = TestPki.shared();
        caller = RunningService.builder(pki.certDir("service-b")).crl(pki.crl("crl.pem"))
                .handshakeTimeoutMs(1000).start();
        callerWithExpectPeer = RunningService.builder(pki.certDir("service-b"))
                .expectPeer(SpiffeId.parse("spiffe://zt.lab/svc/service-a")).start();
        serviceA = RunningService.builder(pki.certDir("service-a")).name("service-a").start();
        revokedTarget = RunningService.builder(pki.certDir("revoked")).name("revoked").start();
        // A target whose CRL revokes service-b: it refuses the caller's certificate.
        Path revokesB = tmp.resolve("revokes-b.pem");
        pki.writeCrl(revokesB, false, "service-b");
        refusingTarget = RunningService.builder(pki.certDir("service-a")).name("refusing").crl(revokesB).start();
        client = TestClient.context(pki.certDir("client"), pki.bundle());
    }

    @AfterAll
    static void stop() {
        for (RunningService s : new RunningService[] {caller, callerWithExpectPeer, serviceA, revokedTarget,
            refusingTarget}) {
            s.close();
        }
    }

    private static Response call(RunningService via, String query) throws Exception {
        try (var c = TestClient.connect(client, via.port())) {
            return c.get("/call?" + query);
        }
    }

    private static String target(int port) {
        return "target=" + enc("https://127.0.0.1:" + port + "/hello");
    }

    private static String enc(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8);
    }

    @Test
    void call_the_target_with_its_own_identity_when_the_spiffe_id_matches() throws Exception {
        Response r = call(caller, target(serviceA.port()) + "&expect=" + enc("spiffe://zt.lab/svc/service-a"));
        assertEquals(200, r.status(), r.body());
        JsonNode j = r.json();
        assertEquals("service-b", j.get("service").asText());
        assertEquals("spiffe://zt.lab/svc/service-a", j.get("peer").asText());
        assertEquals(pki.serial("service-a"), j.get("peer_serial").asText());
        assertEquals(200, j.get("status").asInt());
        assertEquals("service-a", j.get("response").get("service").asText());
        assertEquals("spiffe://zt.lab/svc/service-b", j.get("response").get("caller").asText(),
                "the target saw service-b's identity");
        caller.log.await("call", e -> "success".equals(e.get("result")));
    }

    @Test
    void refuse_a_target_with_another_spiffe_id() throws Exception {
        Response r = call(caller, target(serviceA.port()) + "&expect=" + enc("spiffe://zt.lab/svc/other"));
        assertEquals(502, r.status());
        assertEquals("peer_identity_mismatch", r.json().get("error").asText());
        assertEquals("expected spiffe://zt.lab/svc/other, got spiffe://zt.lab/svc/service-a",
                r.json().get("reason").asText());
    }

    @Test
    void use_expect_peer_when_the_request_names_none() throws Exception {
        Response ok = call(callerWithExpectPeer, target(serviceA.port()));
        assertEquals(200, ok.status(), ok.body());
        Response bad = call(callerWithExpectPeer, target(revokedTarget.port()));
        assertEquals(502, bad.status());
        assertEquals("peer_identity_mismatch", bad.json().get("error").asText());
    }

    @Test
    void answer_400_without_any_expected_peer() throws Exception {
        Response r = call(caller, target(serviceA.port()));
        assertEquals(400, r.status());
        assertEquals("bad_request", r.json().get("error").asText());
    }

    @Test
    void answer_400_to_bad_targets_and_bad_expect() throws Exception {
        assertEquals(400, call(caller, "expect=" + enc("spiffe://zt.lab/svc/service-a")).status());
        assertEquals(400, call(caller, "target=" + enc("http://127.0.0.1:1/hello") + "&expect="
                + enc("spiffe://zt.lab/svc/service-a")).status());
        assertEquals(400, call(caller, target(serviceA.port()) + "&expect=" + enc("https://not-spiffe")).status());
        assertEquals(400, call(caller, "target=%zz").status());
    }

    @Test
    void refuse_a_revoked_target_as_upstream_tls() throws Exception {
        Response r = call(caller, target(revokedTarget.port()) + "&expect=" + enc("spiffe://zt.lab/svc/revoked"));
        assertEquals(502, r.status());
        assertEquals("upstream_tls", r.json().get("error").asText());
        assertTrue(r.json().get("reason").asText().startsWith("certificate verify failed: revoked"),
                r.json().get("reason").asText());
    }

    @Test
    void report_a_target_that_refuses_our_certificate_as_upstream_tls() throws Exception {
        Response r = call(caller, target(refusingTarget.port()) + "&expect=" + enc("spiffe://zt.lab/svc/service-a"));
        assertEquals(502, r.status());
        assertEquals("upstream_tls", r.json().get("error").asText(), r.body());
        refusingTarget.log.await("handshake_rejected", e -> "revoked".equals(e.get("reason")));
    }

    @Test
    void report_a_refused_connection_as_upstream_error() throws Exception {
        int closedPort;
        try (ServerSocket s = new ServerSocket(0)) {
            closedPort = s.getLocalPort();
        }
        Response r = call(caller, target(closedPort) + "&expect=" + enc("spiffe://zt.lab/svc/service-a"));
        assertEquals(502, r.status());
        assertEquals("upstream_error", r.json().get("error").asText());
        caller.log.await("call", e -> "failure".equals(e.get("result")));
    }

    @Test
    void report_a_target_that_never_answers_the_handshake_as_upstream_timeout() throws Exception {
        try (ServerSocket silent = new ServerSocket(0)) {
            Thread t = new Thread(() -> {
                try (Socket s = silent.accept()) {
                    s.getInputStream().readAllBytes();
                } catch (Exception e) {
                    // the caller gave up; done
                }
            });
            t.setDaemon(true);
            t.start();
            long t0 = System.nanoTime();
            Response r = call(caller, target(silent.getLocalPort()) + "&expect=" + enc("spiffe://zt.lab/svc/service-a"));
            assertEquals(504, r.status());
            assertEquals("upstream_timeout", r.json().get("error").asText());
            assertTrue(System.nanoTime() - t0 < 5_000_000_000L, "bounded by the 1 s handshake timeout");
        }
    }

    @Test
    void count_outbound_calls_by_result() throws Exception {
        call(caller, target(serviceA.port()) + "&expect=" + enc("spiffe://zt.lab/svc/service-a"));
        String page = caller.metricsGet("/metrics");
        assertTrue(page.matches("(?s).*mtls_outbound_calls_total\\{result=\"success\"} [1-9].*"), page);
        assertTrue(page.contains("http_requests_total{code=\"200\",path=\"/call\"}"), page);
    }
}
