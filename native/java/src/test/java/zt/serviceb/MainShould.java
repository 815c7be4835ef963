package zt.serviceb;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/** The real process: exit codes, --help, pid file, SIGHUP reloads, SIGTERM exits 0. */
class MainShould {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    private static Process spawn(String... args) throws Exception {
        // --add-opens: what the jar's manifest (Add-Opens) gives `java -jar` (tls/RevokedAlert).
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-opens", "java.base/sun.security.ssl=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), "zt.serviceb.Main"));
        cmd.addAll(List.of(args));
        return new ProcessBuilder(cmd).start();
    }

    private static int exit(Process p) throws Exception {
        assertTrue(p.waitFor(30, TimeUnit.SECONDS), "process exited");
        return p.exitValue();
    }

    @Test
    void print_help_and_exit_0() throws Exception {
        Process p = spawn("--help");
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, exit(p));
        assertTrue(out.contains("--crl-stale refuse|warn"), out);
    }

    @Test
    void exit_2_on_bad_flags() throws Exception {
        Process p = spawn("--cert-dir", "/nonexistent", "--crl-stale", "sometimes");
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(2, exit(p));
        assertTrue(err.contains("--crl-stale"), err);
    }

    @Test
    void exit_1_when_the_material_cannot_be_loaded() throws Exception {
        Process p = spawn("--cert-dir", TestPki.shared().certDir("wrong-key").toString(),
                "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0");
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(1, exit(p));
        JsonNode line = JSON.readTree(err.lines().filter(l -> l.contains("start_failed")).findFirst().orElseThrow());
        assertTrue(line.get("reason").asText().contains("private key does not match"), err);
    }

    @Test
    void exit_1_when_an_explicit_crl_does_not_load() throws Exception {
        TestPki pki = TestPki.shared();
        Process p = spawn("--cert-dir", pki.certDir("service-b").toString(), "--crl",
                pki.crl("crl-foreign.pem").toString(), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0");
        p.getErrorStream().readAllBytes();
        assertEquals(1, exit(p));
    }

    @Test
    void serve_reload_on_sighup_and_exit_0_on_sigterm() throws Exception {
        TestPki pki = TestPki.create(tmp.resolve("pki"));
        Path pidFile = tmp.resolve("service-b.pid");
        Process p = spawn("--cert-dir", pki.certDir("service-b").toString(), "--listen", "127.0.0.1:0",
                "--metrics-listen", "127.0.0.1:0", "--pid-file", pidFile.toString(), "--reload-interval", "0");
        BlockingQueue<JsonNode> lines = new LinkedBlockingQueue<>();
        List<String> raw = java.util.Collections.synchronizedList(new ArrayList<>());
        Thread reader = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getErrorStream(), StandardCharsets.UTF_8))) {
                String l;
                while ((l = r.readLine()) != null) {
                    raw.add(l);
                    try {
                        lines.add(JSON.readTree(l));
                    } catch (java.io.IOException e) {
                        // not a JSON line (a JVM warning): kept in `raw` for the failure message
                    }
                }
            } catch (Exception e) {
                // process ended
            }
        });
        reader.setDaemon(true);
        reader.start();
        try {
            JsonNode start = next(lines, "start");
            int port = Integer.parseInt(start.get("listen").asText().replaceAll(".*:", ""));
            assertEquals(Long.toString(p.pid()), Files.readString(pidFile).strip());
            var ctx = TestClient.context(pki.certDir("client"), pki.bundle());
            try (var c = TestClient.connect(ctx, port)) {
                assertEquals(200, c.get("/hello").status());
            }

            // Only `current` moves (no touch) and the poll is off: the reload is the signal's.
            String newSerial = pki.rotateWithoutTouch("service-b");
            new ProcessBuilder("kill", "-HUP", Long.toString(p.pid())).start().waitFor();
            JsonNode reload = next(lines, "reload");
            assertEquals("success", reload.get("result").asText());
            assertEquals("signal", reload.get("trigger").asText());
            assertEquals(newSerial, reload.get("new_serial").asText());
            assertTrue(p.isAlive(), "SIGHUP does not terminate the JVM");
            try (var c = TestClient.connect(ctx, port)) {
                assertEquals(newSerial, c.serverSerial());
            }

            // Not Process.destroy(): it also closes our end of the child's stderr.
            new ProcessBuilder("kill", "-TERM", Long.toString(p.pid())).start().waitFor();
            assertEquals(0, exit(p));
            assertEquals("SIGTERM", next(lines, "stop", raw).get("reason").asText());
        } finally {
            p.destroyForcibly();
        }
    }

    @Test
    void ignore_sighup_with_no_reload_and_keep_serving() throws Exception {
        TestPki pki = TestPki.create(tmp.resolve("pki"));
        String oldSerial = pki.serial("service-b");
        Process p = spawn("--cert-dir", pki.certDir("service-b").toString(), "--listen", "127.0.0.1:0",
                "--metrics-listen", "127.0.0.1:0", "--no-reload");
        BlockingQueue<JsonNode> lines = new LinkedBlockingQueue<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getErrorStream(), StandardCharsets.UTF_8))) {
                String l;
                while ((l = r.readLine()) != null) {
                    try {
                        lines.add(JSON.readTree(l));
                    } catch (java.io.IOException e) {
                        // not a JSON line
                    }
                }
            } catch (Exception e) {
                // process ended
            }
        });
        reader.setDaemon(true);
        reader.start();
        try {
            JsonNode start = next(lines, "start");
            assertEquals("off", start.get("reload").asText());
            int port = Integer.parseInt(start.get("listen").asText().replaceAll(".*:", ""));
            pki.rotate("service-b");
            new ProcessBuilder("kill", "-HUP", Long.toString(p.pid())).start().waitFor();
            JsonNode ignored = next(lines, "signal_ignored");
            assertEquals("--no-reload", ignored.get("reason").asText());
            assertTrue(p.isAlive(), "SIGHUP does not terminate the JVM");
            var ctx = TestClient.context(pki.certDir("client"), pki.bundle());
            try (var c = TestClient.connect(ctx, port)) {
                assertEquals(oldSerial, c.serverSerial(), "no reload happened");
            }
            new ProcessBuilder("kill", "-TERM", Long.toString(p.pid())).start().waitFor();
            assertEquals(0, exit(p));
        } finally {
            p.destroyForcibly();
        }
    }

    private static JsonNode next(BlockingQueue<JsonNode> lines, String event) throws InterruptedException {
        return next(lines, event, List.of());
    }

    private static JsonNode next(BlockingQueue<JsonNode> lines, String event, List<String> raw)
            throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (System.nanoTime() < deadline) {
            JsonNode n = lines.poll(100, TimeUnit.MILLISECONDS);
            if (n != null && event.equals(n.path("event").asText())) {
                return n;
            }
        }
        throw new AssertionError("no '" + event + "' log line from the process within 20 s; stderr: " + raw);
    }
}
