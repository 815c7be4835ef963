package zt.serviceb.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import zt.serviceb.support.MovableClock;
import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/**
 * Issue 18: revocation and expiry also end connections that are already open (TLS checks the
 * peer only at the handshake). Real keep-alive mTLS connections, real CRL files; each case has
 * a connection that must keep working as its negative twin.
 */
class OpenConnectionCutShould {
    private static final Duration NO_POLL = Duration.ofSeconds(60);

    @TempDir
    Path tmp;

    private static SSLContext client(TestPki pki, String name) throws Exception {
        return TestClient.context(pki.certDir(name), pki.bundle());
    }

    /** True when the server has closed {@code c}: EOF or an error on the next request. */
    private static boolean closedByServer(TestClient.Connection c) {
        try {
            c.get("/hello");
            return false;
        } catch (IOException e) {
            return true;
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"TLSv1.3", "TLSv1.2"})
    void end_an_idle_connection_of_a_newly_revoked_client_at_once_and_keep_the_others(String protocol)
            throws Exception {
        TestPki pki = TestPki.shared();
        Path crl = tmp.resolve("crl.pem");
        Files.copy(pki.crl("crl-empty.pem"), crl);
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).crl(crl).reloadInterval(NO_POLL)
                .start();
             var victim = TestClient.connect(client(pki, "client"), svc.port(), new String[] {protocol});
             var bystander = TestClient.connect(client(pki, "service-a"), svc.port())) {
            assertEquals(protocol, victim.socket().getSession().getProtocol());
            assertEquals(200, victim.get("/hello").status());
            assertEquals(200, bystander.get("/hello").status());

            pki.writeCrl(crl, false, "client");
            Map<String, Object> e = svc.log.await("connection_closed", r -> true);
            assertEquals("revoked", e.get("reason"));
            assertEquals("spiffe://zt.lab/svc/client", e.get("peer"));
            assertEquals(pki.serial("client"), e.get("peer_serial"));
            assertEquals("idle", e.get("when"));
            assertEquals(-1, victim.readByte(), "the server closed the idle connection without being asked");

            assertEquals(200, bystander.get("/hello").status(), "a connection of a client not revoked goes on");
            assertEquals(1, svc.log.events("connection_closed").size());
            assertEquals(1.0, svc.service.metrics().connectionsClosed("revoked"));
            String page = svc.metricsGet("/metrics");
            assertTrue(page.contains("mtls_connections_closed_total{reason=\"revoked\"} 1.0"), page);
            assertTrue(page.contains("mtls_connections_closed_total{reason=\"expired\"} 0.0"), page);
        }
    }

    @Test
    void answer_the_request_in_flight_then_end_the_connection_of_a_newly_revoked_client() throws Exception {
        TestPki pki = TestPki.shared();
        Path crl = tmp.resolve("crl.pem");
        Files.copy(pki.crl("crl-empty.pem"), crl);
        // An upstream that accepts TCP and never answers: /call waits out the handshake timeout,
        // which keeps the client's request in flight for that long.
        try (ServerSocket silent = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
             RunningService svc = RunningService.builder(pki.certDir("service-b")).crl(crl).reloadInterval(NO_POLL)
                     .handshakeTimeoutMs(4000).start();
             var victim = TestClient.connect(client(pki, "client"), svc.port())) {
            String call = "/call?target=" + URLEncoder.encode("https://127.0.0.1:" + silent.getLocalPort() + "/hello",
                    StandardCharsets.UTF_8) + "&expect=" + URLEncoder.encode("spiffe://zt.lab/svc/service-a",
                    StandardCharsets.UTF_8);
            victim.write(("GET " + call + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            Thread.sleep(500);
            pki.writeCrl(crl, false, "client");
            Map<String, Object> e = svc.log.await("connection_closed", r -> true);
            assertEquals("revoked", e.get("reason"));
            assertEquals("after_response", e.get("when"), "the request was still in flight");

            TestClient.Response r = victim.read();
            assertEquals(504, r.status(), "the request in flight is answered: " + r);
            assertEquals("close", r.headers().get("connection"));
            assertEquals(-1, victim.readByte(), "then the connection is closed");
            assertEquals(1.0, svc.service.metrics().connectionsClosed("revoked"));
        }
    }

    @Test
    void answer_401_and_close_at_the_next_request_once_the_client_certificate_has_expired() throws Exception {
        TestPki pki = TestPki.shared();
        MovableClock clock = new MovableClock();
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).clock(clock).start();
             var c = TestClient.connect(client(pki, "client"), svc.port())) {
            assertEquals(200, c.get("/hello").status());
            assertEquals(200, c.get("/hello").status(), "keep-alive, not expired: served");
            clock.advance(Duration.ofDays(3650));
            TestClient.Response r = c.get("/hello");
            assertEquals(401, r.status(), r.toString());
            assertEquals("peer_certificate_expired", r.json().get("error").asText());
            assertEquals("close", r.headers().get("connection"));
            assertEquals(-1, c.readByte());
            Map<String, Object> e = svc.log.await("connection_closed", x -> true);
            assertEquals("expired", e.get("reason"));
            assertEquals("at_request", e.get("when"));
            assertEquals(pki.serial("client"), e.get("peer_serial"));
            assertEquals(1.0, svc.service.metrics().connectionsClosed("expired"));
        }
    }

    @Test
    void end_an_idle_connection_when_the_client_certificate_expires() throws Exception {
        TestPki pki = TestPki.create(tmp.resolve("pki"));
        pki.rotateWithoutTouch("client", 12);
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).reloadInterval(NO_POLL).start();
             var shortLived = TestClient.connect(client(pki, "client"), svc.port());
             var longLived = TestClient.connect(client(pki, "service-a"), svc.port())) {
            assertEquals(200, shortLived.get("/hello").status());
            Map<String, Object> e = svc.log.await("connection_closed", x -> true, Duration.ofSeconds(30));
            assertEquals("expired", e.get("reason"));
            assertEquals("idle", e.get("when"), "ended by the timer, no request needed");
            assertEquals(-1, shortLived.readByte());
            assertEquals(200, longLived.get("/hello").status(), "the other connection goes on");
            assertTrue(closedByServer(shortLived));
        }
    }
}
