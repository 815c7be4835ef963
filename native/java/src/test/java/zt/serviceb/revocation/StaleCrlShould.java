package zt.serviceb.revocation;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/** --crl-stale refuse (fail closed) against warn (fail open with an alarm), with a real stale CRL. */
class StaleCrlShould {
    private static TestPki pki;
    @TempDir
    Path tmp;

    @BeforeAll
    static void pki() throws Exception {
        pki = TestPki.shared();
    }

    @Test
    void refuse_handshakes_in_refuse_mode_with_reason_crl_stale() throws Exception {
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).crl(pki.crl("crl-stale.pem"))
                .stale(StaleMode.REFUSE).start()) {
            var ctx = TestClient.context(pki.certDir("client"), pki.bundle());
            assertThrows(IOException.class, () -> {
                try (var c = TestClient.connect(ctx, svc.port())) {
                    c.get("/hello");
                }
            });
            svc.log.awaitRejection("crl_stale");
            Map<String, Object> alarm = svc.log.await("crl_stale", r -> true);
            assertEquals("refuse", alarm.get("mode"));
            assertTrue(svc.metricsGet("/metrics").contains("mtls_crl_stale 1.0"));
            assertEquals(1, svc.log.events("crl_stale").size(), "logged once per transition");
        }
    }

    @Test
    void proceed_in_warn_mode_with_the_alarm_raised() throws Exception {
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).crl(pki.crl("crl-stale.pem"))
                .stale(StaleMode.WARN).start()) {
            var ctx = TestClient.context(pki.certDir("client"), pki.bundle());
            try (var c = TestClient.connect(ctx, svc.port())) {
                assertEquals(200, c.get("/hello").status());
            }
            assertEquals("warn", svc.log.await("crl_stale", r -> true).get("mode"));
            assertTrue(svc.metricsGet("/metrics").contains("mtls_crl_stale 1.0"));
        }
    }

    @ParameterizedTest
    @EnumSource(StaleMode.class)
    void log_once_per_crl_and_recover_when_a_fresh_crl_is_loaded(StaleMode mode) throws Exception {
        Path crl = tmp.resolve("crl.pem");
        Files.copy(pki.crl("crl-stale.pem"), crl);
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).crl(crl).stale(mode)
                .reloadInterval(Duration.ofSeconds(60)).start()) {
            var ctx = TestClient.context(pki.certDir("client"), pki.bundle());
            for (int i = 0; i < 3; i++) {
                if (mode == StaleMode.REFUSE) {
                    assertThrows(IOException.class, () -> {
                        try (var c = TestClient.connect(ctx, svc.port())) {
                            c.get("/hello");
                        }
                    });
                } else {
                    try (var c = TestClient.connect(ctx, svc.port())) {
                        assertEquals(200, c.get("/hello").status());
                    }
                }
            }
            // The client sees the refusal before the server's thread has counted it: wait, bounded.
            double want = mode == StaleMode.REFUSE ? 3.0 : 0.0;
            long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
            while (svc.service.metrics().handshakeFailures("crl_stale") < want && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            assertEquals(want, svc.service.metrics().handshakeFailures("crl_stale"));
            assertEquals(1, svc.log.events("crl_stale").size(), "once per CRL, not per handshake");
            assertTrue(svc.metricsGet("/metrics").contains("mtls_crl_stale 1.0"));

            // The agent's next CRL (fresh, renamed into place): both modes recover.
            pki.writeCrl(crl, false, "revoked");
            svc.log.await("reload", r -> "success".equals(r.get("result")), Duration.ofSeconds(15));
            try (var c = TestClient.connect(ctx, svc.port())) {
                assertEquals(200, c.get("/hello").status(), "served again with a fresh CRL");
            }
            assertTrue(svc.metricsGet("/metrics").contains("mtls_crl_stale 0.0"));
            assertEquals(1, svc.log.events("crl_stale").size(), "no new alarm for a fresh CRL");

            // A new CRL that is stale again is a new CRL: one more alarm.
            pki.writeCrl(crl, true, "revoked");
            svc.log.await("crl_stale", r -> svc.log.events("crl_stale").size() == 2, Duration.ofSeconds(15));
            assertTrue(svc.metricsGet("/metrics").contains("mtls_crl_stale 1.0"));
        }
    }

    @Test
    void raise_no_alarm_with_a_fresh_crl() throws Exception {
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).crl(pki.crl("crl.pem"))
                .stale(StaleMode.REFUSE).start()) {
            var ctx = TestClient.context(pki.certDir("client"), pki.bundle());
            try (var c = TestClient.connect(ctx, svc.port())) {
                assertEquals(200, c.get("/hello").status());
            }
            String page = svc.metricsGet("/metrics");
            assertTrue(page.contains("mtls_crl_stale 0.0"), page);
            for (String reason : new String[] {"no_client_cert", "untrusted", "expired", "revoked", "bad_spiffe_id",
                "crl_stale", "timeout", "protocol"}) {
                assertTrue(page.contains("mtls_handshake_failures_total{reason=\"" + reason + "\"} 0.0"), page);
            }
            assertTrue(svc.log.events("crl_stale").isEmpty());
        }
    }
}
