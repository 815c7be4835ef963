package zt.serviceb.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/**
 * Real TLS handshakes over loopback against the real server. Every rejection test asserts the
 * reason the server logged and counted, not just that the client failed.
 */
class MtlsServerShould {
    private static TestPki pki;
    private static RunningService svc;

    @BeforeAll
    static void start() throws Exception {
        pki = TestPki.shared();
        svc = RunningService.builder(pki.certDir("service-b")).crl(pki.crl("crl.pem"))
                .handshakeTimeoutMs(1000).idleTimeoutMs(3000).threads(4).start();
    }

    @AfterAll
    static void stop() {
        svc.close();
    }

    private static SSLContext client(String name) throws Exception {
        return TestClient.context(pki.certDir(name), pki.bundle());
    }

    @Test
    void answer_hello_with_both_identities_to_a_valid_client() throws Exception {
        try (var c = TestClient.connect(client("client"), svc.port())) {
            var r = c.get("/hello");
            assertEquals(200, r.status());
            assertEquals("application/json", r.headers().get("content-type"));
            JsonNode j = r.json();
            assertEquals("service-b", j.get("service").asText());
            assertEquals("spiffe://zt.lab/svc/service-b", j.get("spiffe_id").asText());
            assertEquals(pki.serial("service-b"), j.get("serial").asText());
            assertEquals("spiffe://zt.lab/svc/client", j.get("caller").asText());
            assertEquals(pki.serial("client"), j.get("caller_serial").asText());
            assertEquals("TLSv1.3", j.get("tls_version").asText());
            assertEquals(pki.serial("service-b"), c.serverSerial());
        }
    }

    @Test
    void serve_tls_1_2_clients_too() throws Exception {
        try (var c = TestClient.connect(client("client"), svc.port(), new String[] {"TLSv1.2"})) {
            assertEquals("TLSv1.2", c.get("/hello").json().get("tls_version").asText());
        }
    }

    @Test
    void refuse_tls_1_1_as_a_protocol_failure() throws Exception {
        double before = svc.service.metrics().handshakeFailures("protocol");
        SSLContext ctx = client("client");
        int mark = svc.log.mark();  // another test's protocol refusal must not answer this wait
        assertThrows(IOException.class, () -> TestClient.connect(ctx, svc.port(), new String[] {"TLSv1.1"}));
        svc.log.awaitAfter(mark, "handshake_rejected", r -> "protocol".equals(r.get("reason")), Duration.ofSeconds(10));
        assertTrue(svc.service.metrics().handshakeFailures("protocol") > before);
    }

    @Test
    void refuse_a_tls_1_2_client_that_offers_only_cbc_suites() throws Exception {
        SSLContext ctx = client("client");
        String[] tls12 = {"TLSv1.2"};
        String[] cbc = {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA256"};
        IOException e = assertThrows(IOException.class, () -> TestClient.connect(ctx, svc.port(), tls12, cbc));
        assertTrue(String.valueOf(e.getMessage()).contains("handshake_failure"), e.toString());
        Map<String, Object> logged = svc.log.await("handshake_rejected", r -> "protocol".equals(r.get("reason"))
                && String.valueOf(r.get("detail")).contains("cipher suites in common"));
        assertTrue(String.valueOf(logged.get("peer_addr")).startsWith("127.0.0.1:"), logged.toString());

        // The twin: the same client offering AEAD suites is served.
        String[] aead = {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"};
        try (var c = TestClient.connect(ctx, svc.port(), tls12, aead)) {
            assertEquals(200, c.get("/hello").status());
            assertTrue(c.socket().getSession().getCipherSuite().contains("_GCM_"));
        }
    }

    @Test
    void refuse_client_initiated_renegotiation_on_tls_1_2() throws Exception {
        try (var c = TestClient.connect(client("client"), svc.port(), new String[] {"TLSv1.2"})) {
            assertEquals(200, c.get("/hello").status());
            // On an established TLS 1.2 connection the JDK client's startHandshake() sends a new
            // ClientHello: a client-initiated renegotiation. A server that allowed it would go on
            // to answer the next request; ours answers the ClientHello with a fatal alert.
            c.socket().startHandshake();
            IOException e = assertThrows(IOException.class, () -> c.get("/hello"));
            assertTrue(String.valueOf(e.getMessage()).contains("handshake_failure"), e.toString());
        }
        try (var c = TestClient.connect(client("client"), svc.port(), new String[] {"TLSv1.2"})) {
            assertEquals(200, c.get("/hello").status(), "a new connection is served as usual");
        }
    }

    @Test
    void keep_a_connection_alive_across_requests() throws Exception {
        try (var c = TestClient.connect(client("client"), svc.port())) {
            for (int i = 0; i < 3; i++) {
                var r = c.get("/hello");
                assertEquals(200, r.status());
                assertEquals("keep-alive", r.headers().get("connection"));
            }
        }
    }

    @Test
    void refuse_a_client_without_a_certificate() throws Exception {
        SSLContext noCert = TestClient.context(null, pki.bundle());
        assertThrows(IOException.class, () -> {
            try (var c = TestClient.connect(noCert, svc.port())) {
                c.get("/hello");
            }
        });
        svc.log.awaitRejection("no_client_cert");
    }

    @Test
    void refuse_a_tls_1_2_client_without_a_certificate() throws Exception {
        SSLContext noCert = TestClient.context(null, pki.bundle());
        long before = svc.log.events("handshake_rejected").stream()
                .filter(r -> "no_client_cert".equals(r.get("reason"))).count();
        assertThrows(IOException.class, () -> TestClient.connect(noCert, svc.port(), new String[] {"TLSv1.2"}));
        svc.log.await("handshake_rejected", r -> "no_client_cert".equals(r.get("reason"))
                && svc.log.events("handshake_rejected").stream()
                .filter(x -> "no_client_cert".equals(x.get("reason"))).count() > before);
    }

    @ParameterizedTest(name = "{0} -> {1}")
    @CsvSource({
        "foreign, untrusted",
        "expired, expired",
        "not-yet-valid, expired",
        "revoked, revoked",
        "two-uris, bad_spiffe_id",
        "not-spiffe, bad_spiffe_id",
        "no-uri, bad_spiffe_id",
        "ku-not-critical, bad_spiffe_id",
        "ku-key-agreement, bad_spiffe_id",
        "eku-client-only, bad_spiffe_id",
    })
    void refuse_a_bad_client_certificate_with_its_reason(String identity, String reason) throws Exception {
        double before = svc.service.metrics().handshakeFailures(reason);
        SSLContext ctx = client(identity);
        assertThrows(IOException.class, () -> {
            try (var c = TestClient.connect(ctx, svc.port())) {
                c.get("/hello");
            }
        });
        Map<String, Object> e = svc.log.await("handshake_rejected",
                r -> pki.serial(identity).equals(r.get("peer_serial")));
        assertEquals(reason, e.get("reason"), e.toString());
        assertTrue(svc.service.metrics().handshakeFailures(reason) > before);
        assertTrue(String.valueOf(e.get("peer_addr")).startsWith("127.0.0.1:"));
    }

    @Test
    void refuse_a_client_with_an_empty_subject_and_a_non_critical_san_as_bad_spiffe_id() throws Exception {
        // docs/svid-rules.md L-4. The JDK cannot parse this leaf (so neither can our Java test
        // client load it): openssl s_client presents it, with the intermediate.
        double before = svc.service.metrics().handshakeFailures("bad_spiffe_id");
        Path dir = pki.certDir("empty-subject");
        Process p = new ProcessBuilder("openssl", "s_client", "-quiet", "-connect", "127.0.0.1:" + svc.port(),
                "-cert", dir.resolve("cert.pem").toString(), "-key", dir.resolve("key.pem").toString(),
                "-cert_chain", pki.root().resolve("ca/intermediate.pem").toString(),
                "-CAfile", pki.bundle().toString()).redirectErrorStream(true).start();
        try (var in = p.getOutputStream()) {
            in.write("GET /hello HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
        }
        assertTrue(p.waitFor(30, TimeUnit.SECONDS), "openssl s_client finished");
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertFalse(out.contains("HTTP/1.1 200"), out);
        Map<String, Object> e = svc.log.await("handshake_rejected", r -> String.valueOf(r.get("detail"))
                .contains("SubjectAlternativeName extension MUST be marked critical"));
        assertEquals("bad_spiffe_id", e.get("reason"), e.toString());
        assertTrue(svc.service.metrics().handshakeFailures("bad_spiffe_id") > before);
    }

    @Test
    void answer_400_to_malformed_http_then_close_and_keep_serving() throws Exception {
        try (var c = TestClient.connect(client("client"), svc.port())) {
            var r = c.send("THIS IS NOT HTTP\r\n\r\n");
            assertEquals(400, r.status());
            assertEquals("bad_request", r.json().get("error").asText());
            assertEquals("close", r.headers().get("connection"));
            assertEquals(-1, c.readByte(), "the server closes after a 400");
        }
        try (var c = TestClient.connect(client("client"), svc.port())) {
            c.write(new byte[] {0, 1, 2, (byte) 0xff, '\r', '\n', '\r', '\n'});
            assertEquals(400, c.read().status());
        }
        try (var c = TestClient.connect(client("client"), svc.port())) {
            assertEquals(200, c.get("/hello").status());
        }
    }

    @Test
    void answer_431_to_a_request_head_over_16_kib() throws Exception {
        try (var c = TestClient.connect(client("client"), svc.port())) {
            var r = c.send("GET /hello HTTP/1.1\r\nHost: a\r\nX-Pad: " + "p".repeat(17 * 1024) + "\r\n\r\n");
            assertEquals(431, r.status());
            assertEquals("headers_too_large", r.json().get("error").asText());
        }
        try (var c = TestClient.connect(client("client"), svc.port())) {
            assertEquals(200, c.get("/hello").status());
        }
    }

    @Test
    void answer_404_to_unknown_paths_and_405_to_other_methods() throws Exception {
        try (var c = TestClient.connect(client("client"), svc.port())) {
            var r = c.get("/nope");
            assertEquals(404, r.status());
            assertEquals("not_found", r.json().get("error").asText());
            var m = c.send("DELETE /hello HTTP/1.1\r\nHost: a\r\n\r\n");
            assertEquals(405, m.status());
            assertEquals("method_not_allowed", m.json().get("error").asText());
            assertEquals(200, c.get("/hello").status(), "still usable after 404 and 405");
        }
    }

    @Test
    void not_let_a_client_stuck_in_its_handshake_block_another() throws Exception {
        // Its own instance: a small pool and a 3 s deadline, so "served before the stuck client
        // timed out" does not depend on how fast this machine is.
        try (RunningService small = RunningService.builder(pki.certDir("service-b")).threads(2)
                .handshakeTimeoutMs(3000).start();
             Socket slow = new Socket("127.0.0.1", small.port())) {
            // A TLS record header promising more bytes than ever come: the server waits in its handshake.
            slow.getOutputStream().write(new byte[] {0x16, 0x03, 0x01, 0x02, 0x00, 0x01});
            slow.getOutputStream().flush();
            try (var c = TestClient.connect(client("client"), small.port())) {
                assertEquals(200, c.get("/hello").status());
            }
            assertTrue(small.log.events("handshake_rejected").isEmpty(),
                    "the other client was served while the stuck one still waited in its handshake");
            Map<String, Object> e = small.log.awaitRejection("timeout");
            assertTrue(String.valueOf(e.get("peer_addr")).endsWith(":" + slow.getLocalPort()), e.toString());
            slow.setSoTimeout(5000);
            assertEquals(-1, drain(slow.getInputStream()), "the server closed the stuck connection at the deadline");
        }
    }

    @Test
    void close_a_connection_idle_past_the_idle_timeout() throws Exception {
        try (var c = TestClient.connect(client("client"), svc.port())) {
            assertEquals(200, c.get("/hello").status());
            c.socket().setSoTimeout(10_000);
            long t0 = System.nanoTime();
            assertEquals(-1, c.readByte());
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms >= 2500 && ms < 9000, "closed after about 3 s idle, took " + ms + " ms");
        }
    }

    @Test
    void expose_the_contract_metrics_and_health() throws Exception {
        try (var c = TestClient.connect(client("client"), svc.port())) {
            c.get("/hello");
            c.get("/other");
        }
        String page = svc.metricsGet("/metrics");
        for (String name : new String[] {"mtls_handshakes_total{result=\"success\"}", "mtls_handshakes_total{result=\"failure\"}",
            "mtls_handshake_failures_total", "mtls_cert_expiry_seconds", "mtls_cert_info{serial=\"" + pki.serial("service-b")
                + "\",spiffe_id=\"spiffe://zt.lab/svc/service-b\"} 1.0", "mtls_reloads_total{result=\"success\"}",
            "mtls_crl_entries 1.0", "mtls_crl_next_update_seconds", "mtls_crl_stale 0.0", "mtls_policy_denials_total",
            "mtls_outbound_calls_total{result=\"success\"}", "http_requests_total{code=\"200\",path=\"/hello\"}",
            "http_requests_total{code=\"404\",path=\"other\"}"}) {
            assertTrue(page.contains(name), () -> name + " missing from\n" + page);
        }
        JsonNode health = new com.fasterxml.jackson.databind.ObjectMapper().readTree(svc.metricsGet("/healthz"));
        assertEquals("ok", health.get("status").asText());
        assertEquals(pki.serial("service-b"), health.get("serial").asText());
    }

    @Test
    void log_each_request_with_caller_status_and_duration() throws Exception {
        try (var c = TestClient.connect(client("client"), svc.port())) {
            c.get("/hello?x=1");
        }
        Map<String, Object> e = svc.log.await("request", r -> "/hello".equals(r.get("path"))
                && "spiffe://zt.lab/svc/client".equals(r.get("caller")));
        assertEquals("GET", e.get("method"));
        assertEquals(200, e.get("status"));
        assertTrue(e.get("duration_ms") instanceof Number);
        assertTrue(e.get("ts").toString().matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z"));
        assertEquals("service-b", e.get("component"));
        assertFalse(e.containsKey("service"), "component replaces service (CONTRACT L)");
    }

    private static int drain(InputStream in) throws IOException {
        byte[] b = new byte[1024];
        int n;
        while ((n = in.read(b)) > 0) {
            // an alert may come first; read until the close
            assertTrue(n <= 1024, new String(b, StandardCharsets.ISO_8859_1));
        }
        return n;
    }
}
