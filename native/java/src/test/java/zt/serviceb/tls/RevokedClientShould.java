package zt.serviceb.tls;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.time.Duration;
import java.util.Map;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/**
 * A client whose serial is on the CRL: refused with the TLS alert certificate_revoked (what
 * OpenSSL sends; the JDK alone would send certificate_unknown), counted as reason revoked, and
 * logged with its SPIFFE ID, serial and address. The expired client is the negative twin: it
 * still gets certificate_unknown, so the check can tell the two apart.
 */
class RevokedClientShould {
    private static TestPki pki;
    private static RunningService svc;

    @BeforeAll
    static void start() throws Exception {
        pki = TestPki.shared();
        svc = RunningService.builder(pki.certDir("service-b")).crl(pki.crl("crl.pem")).start();
    }

    @AfterAll
    static void stop() {
        svc.close();
    }

    private static String refusal(String identity, String protocol) throws Exception {
        SSLContext ctx = TestClient.context(pki.certDir(identity), pki.bundle(), protocol);
        IOException e = assertThrows(IOException.class, () -> {
            try (var c = TestClient.connect(ctx, svc.port())) {
                c.get("/hello");
            }
        });
        StringBuilder all = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            all.append(t).append(" | ");
        }
        return all.toString();
    }

    @ParameterizedTest(name = "{0} over {1} -> {2}")
    @CsvSource({
        "revoked, TLSv1.3, certificate_revoked",
        "revoked, TLSv1.2, certificate_revoked",
        "expired, TLSv1.3, certificate_unknown",
    })
    void send_the_alert_that_names_the_reason(String identity, String protocol, String alert) throws Exception {
        assertTrue(RevokedAlert.available(), "the test JVM opens sun.security.ssl: " + RevokedAlert.unavailableReason());
        String reason = identity.equals("revoked") ? "revoked" : "expired";
        double before = svc.service.metrics().handshakeFailures(reason);
        // The same client is refused over each protocol: this case's line, not the last case's
        // (which would answer at once, before this refusal was counted).
        int mark = svc.log.mark();
        String seen = refusal(identity, protocol);
        assertTrue(seen.contains("Received fatal alert: " + alert), seen);

        Map<String, Object> e = svc.log.awaitAfter(mark, "handshake_rejected",
                r -> pki.serial(identity).equals(r.get("peer_serial")) && reason.equals(r.get("reason")),
                Duration.ofSeconds(10));
        assertEquals("spiffe://zt.lab/svc/" + identity, e.get("peer_spiffe_id"), e.toString());
        assertTrue(String.valueOf(e.get("peer_addr")).startsWith("127.0.0.1:"), e.toString());
        assertTrue(svc.service.metrics().handshakeFailures(reason) > before, "the refusal was counted as " + reason);
    }
}
