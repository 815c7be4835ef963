package zt.serviceb.reload;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.Map;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/**
 * Reload without restart: a stable SSLContext over swapped managers. Each test has its own PKI,
 * because rotation rewrites the cert directory. The poll interval is long (60 s), so what these
 * tests see is the directory watch.
 */
class ReloadShould {
    private static final Duration NO_POLL = Duration.ofSeconds(60);

    @TempDir
    Path tmp;
    private TestPki pki;

    @BeforeEach
    void pki() throws Exception {
        pki = TestPki.create(tmp.resolve("pki"));
    }

    private SSLContext client(String name) throws Exception {
        return TestClient.context(pki.certDir(name), pki.bundle());
    }

    @Test
    void present_a_rotated_certificate_to_new_connections_while_established_ones_complete() throws Exception {
        String oldSerial = pki.serial("service-b");
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).reloadInterval(NO_POLL).start()) {
            SSLContext ctx = client("client");
            try (var established = TestClient.connect(ctx, svc.port())) {
                assertEquals(oldSerial, established.get("/hello").json().get("serial").asText());

                String newSerial = pki.rotate("service-b");
                assertNotEquals(oldSerial, newSerial);
                Map<String, Object> e = svc.log.await("reload", r -> newSerial.equals(r.get("new_serial")));
                assertEquals("success", e.get("result"));
                assertEquals("touch", e.get("trigger"), "the agent's touched file, not the poll (60 s)");
                assertEquals(oldSerial, e.get("old_serial"));
                Map<String, Object> rot = svc.log.await("rotation", r -> newSerial.equals(r.get("new_serial")));
                assertEquals(oldSerial, rot.get("old_serial"));
                assertEquals(pki.certDir("service-b").resolve("current").toRealPath().getFileName().toString(),
                        rot.get("generation"));
                assertEquals(svc.service.identity().notAfter().truncatedTo(java.time.temporal.ChronoUnit.SECONDS)
                        .toString(), rot.get("not_after"));

                // Same client SSLContext: if the server still resumed old sessions, this would
                // come back with the old certificate.
                try (var fresh = TestClient.connect(ctx, svc.port())) {
                    assertEquals(newSerial, fresh.serverSerial());
                    assertEquals(newSerial, fresh.get("/hello").json().get("serial").asText());
                }
                var again = established.get("/hello");
                assertEquals(200, again.status(), "an established connection still completes");
                assertEquals(oldSerial, again.json().get("serial").asText());
                assertEquals(oldSerial, established.serverSerial());
            }
            String page = svc.metricsGet("/metrics");
            assertTrue(page.contains("mtls_reloads_total{result=\"success\"} 1.0"), page);
            assertTrue(page.contains("mtls_rotation_total{result=\"success\"} 1.0"), page);
            assertTrue(page.contains("mtls_rotation_total{result=\"failure\"} 0.0"), page);
            assertTrue(page.contains("mtls_cert_info{serial=\"" + svc.service.identity().serial() + "\""), page);
            assertTrue(!page.contains("serial=\"" + oldSerial + "\""), "the old serial's info series is gone");
        }
    }

    @Test
    void keep_the_old_identity_when_the_new_generation_is_bad_and_count_the_failure() throws Exception {
        String oldSerial = pki.serial("service-b");
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).reloadInterval(NO_POLL).start()) {
            // A generation whose key does not match its certificate (wrong-key has no keystore.p12,
            // so the reader falls back to the PEM files, and validation refuses the pair).
            swapInGeneration(pki.certDir("service-b"), pki.certDir("wrong-key"), "gen-99990101T000000000000Z-bad");
            Map<String, Object> e = svc.log.await("reload", r -> "failure".equals(r.get("result")));
            assertTrue(String.valueOf(e.get("reason")).contains("private key does not match"), e.toString());
            assertEquals(oldSerial, e.get("new_serial"));
            assertEquals(1.0, svc.service.metrics().reloads("failure"));
            assertEquals(1.0, svc.service.metrics().rotations("failure"), "a new generation that was refused");
            assertEquals(0.0, svc.service.metrics().rotations("success"));
            assertTrue(svc.log.events("rotation").isEmpty());

            try (var c = TestClient.connect(client("client"), svc.port())) {
                assertEquals(oldSerial, c.serverSerial(), "still serving the old identity");
                assertEquals(200, c.get("/hello").status());
            }

            // Heal: a good generation is picked up again.
            String healed = pki.rotate("service-b");
            svc.log.await("reload", r -> "success".equals(r.get("result")) && healed.equals(r.get("new_serial")));
            assertEquals(1.0, svc.service.metrics().rotations("success"));
            try (var c = TestClient.connect(client("client"), svc.port())) {
                assertEquals(healed, c.serverSerial());
            }
        }
    }

    @Test
    void keep_the_old_identity_when_the_new_generation_has_no_key_at_all() throws Exception {
        String oldSerial = pki.serial("service-b");
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).reloadInterval(NO_POLL).start()) {
            Path gen = swapInGeneration(pki.certDir("service-b"), pki.certDir("client"), "gen-99990101T000000000000Z-nokey",
                    "keystore.p12", "key.pem");
            assertTrue(Files.isDirectory(gen));
            Map<String, Object> e = svc.log.await("reload", r -> "failure".equals(r.get("result")));
            assertTrue(String.valueOf(e.get("reason")).contains("neither keystore.p12 nor key.pem"), e.toString());
            try (var c = TestClient.connect(client("client"), svc.port())) {
                assertEquals(oldSerial, c.serverSerial());
            }
        }
    }

    @Test
    void reload_a_replaced_crl_and_refuse_the_newly_revoked_client() throws Exception {
        Path crl = tmp.resolve("crl.pem");
        Files.copy(pki.crl("crl-empty.pem"), crl);
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).crl(crl).reloadInterval(NO_POLL)
                .start()) {
            SSLContext ctx = client("client");
            try (var c = TestClient.connect(ctx, svc.port())) {
                assertEquals(200, c.get("/hello").status());
            }
            pki.writeCrl(crl, false, "client");
            svc.log.await("crl_loaded", r -> Integer.valueOf(1).equals(r.get("entries")));
            assertThrows(IOException.class, () -> {
                try (var c = TestClient.connect(ctx, svc.port())) {
                    c.get("/hello");
                }
            });
            Map<String, Object> e = svc.log.await("handshake_rejected",
                    r -> pki.serial("client").equals(r.get("peer_serial")));
            assertEquals("revoked", e.get("reason"));
            assertTrue(svc.metricsGet("/metrics").contains("mtls_crl_entries 1.0"));
            assertEquals(1.0, svc.service.metrics().reloads("success"), "a CRL-only reload is a reload ...");
            assertEquals(0.0, svc.service.metrics().rotations("success"), "... but not a rotation");
            assertTrue(svc.log.events("rotation").isEmpty());
        }
    }

    @Test
    void keep_the_old_crl_when_the_new_one_is_not_signed_by_a_known_ca() throws Exception {
        Path crl = tmp.resolve("crl.pem");
        Files.copy(pki.crl("crl.pem"), crl);
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).crl(crl).reloadInterval(NO_POLL)
                .start()) {
            replace(pki.crl("crl-foreign.pem"), crl);
            Map<String, Object> e = svc.log.await("reload", r -> "failure".equals(r.get("result")));
            assertTrue(String.valueOf(e.get("reason")).contains("not signed by a known CA"), e.toString());
            assertThrows(IOException.class, () -> {
                try (var c = TestClient.connect(client("revoked"), svc.port())) {
                    c.get("/hello");
                }
            });
            assertEquals("revoked", svc.log.await("handshake_rejected",
                    r -> pki.serial("revoked").equals(r.get("peer_serial"))).get("reason"), "old CRL still applies");
        }
    }

    @Test
    void start_using_a_crl_that_appears_in_the_cert_dir_later() throws Exception {
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).reloadInterval(NO_POLL).start()) {
            SSLContext ctx = client("revoked");
            try (var c = TestClient.connect(ctx, svc.port())) {
                assertEquals(200, c.get("/hello").status(), "no CRL yet");
            }
            replace(pki.crl("crl.pem"), pki.certDir("service-b").resolve("crl.pem"));
            svc.log.await("crl_loaded", r -> true);
            assertThrows(IOException.class, () -> {
                try (var c = TestClient.connect(ctx, svc.port())) {
                    c.get("/hello");
                }
            });
            svc.log.awaitRejection("revoked");
        }
    }

    @Test
    void reload_the_policy_and_keep_it_when_the_new_file_is_bad() throws Exception {
        Path policy = tmp.resolve("policy.json");
        Files.writeString(policy, "{\"version\":1,\"rules\":[]}");
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).policy(policy)
                .reloadInterval(NO_POLL).start()) {
            SSLContext ctx = client("client");
            try (var c = TestClient.connect(ctx, svc.port())) {
                assertEquals(403, c.get("/hello").status());
            }
            writeAtomically(policy, "{\"version\":1,\"rules\":[{\"caller\":\"spiffe://zt.lab/svc/client\",\"allow\":[\"/hello\"]}]}");
            svc.log.await("reload", r -> "success".equals(r.get("result")));
            try (var c = TestClient.connect(ctx, svc.port())) {
                assertEquals(200, c.get("/hello").status());
            }
            writeAtomically(policy, "{\"version\":3,\"rules\":[]}");
            Map<String, Object> e = svc.log.await("reload", r -> "failure".equals(r.get("result")));
            assertTrue(String.valueOf(e.get("reason")).contains("\"version\" must be 1 or 2"), e.toString());
            try (var c = TestClient.connect(ctx, svc.port())) {
                assertEquals(200, c.get("/hello").status(), "the previous policy still applies");
            }
        }
    }

    @Test
    void pick_up_a_rotation_by_the_periodic_check_on_signal_or_poll() throws Exception {
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).reloadInterval(NO_POLL).start()) {
            svc.service.reload("poll", false);
            assertTrue(svc.log.events("reload").isEmpty(), "nothing changed: no reload logged or counted");
            String newSerial = pki.rotate("service-b");
            svc.service.reload("signal", true);
            Map<String, Object> e = svc.log.await("reload", r -> newSerial.equals(r.get("new_serial")));
            assertEquals("success", e.get("result"));
        }
    }

    @Test
    void never_reload_with_no_reload_and_log_an_ignored_sighup() throws Exception {
        String oldSerial = pki.serial("service-b");
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).reloadInterval(Duration.ofSeconds(1))
                .noReload().start()) {
            String newSerial = pki.rotate("service-b");
            svc.service.onSighup();
            Map<String, Object> ignored = svc.log.await("signal_ignored", r -> true);
            assertEquals("SIGHUP", ignored.get("signal"));
            // Touch, directory change and SIGHUP are all behind us; a 1 s poll would have run twice.
            Thread.sleep(2500);
            assertTrue(svc.log.events("reload").isEmpty(), svc.log.events("reload").toString());
            try (var c = TestClient.connect(client("client"), svc.port())) {
                assertEquals(oldSerial, c.serverSerial(), "still the old identity");
            }
            assertEquals(0.0, svc.service.metrics().reloads("success"));
            assertEquals(0.0, svc.service.metrics().rotations("success"));
            assertNotEquals(oldSerial, newSerial);
        }
    }

    @Test
    void reload_on_the_poll_when_no_touch_comes() throws Exception {
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).reloadInterval(Duration.ofSeconds(1))
                .start()) {
            String newSerial = pki.rotateWithoutTouch("service-b");
            Map<String, Object> e = svc.log.await("reload", r -> newSerial.equals(r.get("new_serial")));
            assertEquals("poll", e.get("trigger"));
            assertEquals(1.0, svc.service.metrics().rotations("success"));
        }
    }

    /** Writes a new generation from {@code source}'s files (minus {@code omit}) and swaps `current` to it. */
    private static Path swapInGeneration(Path certDir, Path source, String name, String... omit) throws IOException {
        Path gen = certDir.resolve(name);
        Files.createDirectory(gen);
        Path from = source.resolve("current").toRealPath();
        try (var files = Files.list(from)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                if (!java.util.List.of(omit).contains(f.getFileName().toString())) {
                    Files.copy(f, gen.resolve(f.getFileName()));
                }
            }
        }
        Path tmpLink = certDir.resolve(".current.tmp");
        Files.deleteIfExists(tmpLink);
        Files.createSymbolicLink(tmpLink, Path.of(name));
        Files.move(tmpLink, certDir.resolve("current"), StandardCopyOption.ATOMIC_MOVE,
                StandardCopyOption.REPLACE_EXISTING);
        TestPki.touch(certDir.resolve("reload.stamp"));
        return gen;
    }

    private static void replace(Path source, Path dest) throws IOException {
        Path t = dest.resolveSibling(dest.getFileName() + ".tmp");
        Files.copy(source, t, StandardCopyOption.REPLACE_EXISTING);
        Files.move(t, dest, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    private static void writeAtomically(Path dest, String text) throws IOException {
        Path t = dest.resolveSibling(dest.getFileName() + ".tmp");
        Files.writeString(t, text);
        Files.move(t, dest, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }
}
