package zt.serviceb.identity;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/**
 * CONTRACT B: a generation with {@code bundle.pem.sha256} is loaded only when {@code bundle.pem}
 * hashes to it and {@code truststore.p12} holds exactly {@code bundle.pem}'s certificates. Every
 * refusal has a twin that loads (the same directory with an honest checksum), so the check is
 * seen to be able to pass as well as fail.
 */
class BundleChecksumShould {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    /** A standalone copy of ids/service-b with a correct bundle.pem.sha256 in its generation. */
    private Path certDir(TestPki pki, String name) throws Exception {
        Path dir = TestPki.copyCertDir(pki.certDir("service-b"), Files.createDirectory(tmp.resolve(name)));
        writeChecksum(dir.resolve("current").toRealPath());
        return dir;
    }

    /** What the agent writes: {@code sha256sum bundle.pem} in the generation. */
    static void writeChecksum(Path gen) throws Exception {
        String hex = BundleChecksum.sha256(Files.readAllBytes(gen.resolve("bundle.pem")));
        Files.writeString(gen.resolve(BundleChecksum.FILE), hex + "  bundle.pem\n");
    }

    private static MaterialException refused(Path certDir) {
        CertDirReader r = new CertDirReader(certDir);
        MaterialException e = assertThrows(MaterialException.class, r::read);
        assertEquals(BundleChecksum.CODE, e.code(), e.getMessage());
        return e;
    }

    @Test
    void load_a_generation_whose_bundle_matches_its_checksum_and_truststore() throws Exception {
        Path dir = certDir(TestPki.shared(), "good");
        CertDirReader.RawMaterial raw = new CertDirReader(dir).read();
        assertEquals("pkcs12", raw.format());
        assertEquals(PemFiles.readCertificates(dir.resolve("current/bundle.pem")), raw.bundle());
    }

    @Test
    void refuse_a_bundle_edited_after_the_checksum_was_written() throws Exception {
        TestPki pki = TestPki.shared();
        Path dir = certDir(pki, "appended");
        // An extra root appended to bundle.pem: the file no longer hashes to the checksum.
        Files.write(dir.resolve("current/bundle.pem"), Files.readAllBytes(pki.foreignBundle()),
                StandardOpenOption.APPEND);
        assertTrue(refused(dir).getMessage().contains("has sha256"));
    }

    @Test
    void refuse_a_truststore_that_differs_from_the_checked_bundle() throws Exception {
        TestPki pki = TestPki.shared();
        Path dir = certDir(pki, "truststore");
        Path gen = dir.resolve("current").toRealPath();
        // bundle.pem and its checksum agree (the foreign root), but truststore.p12 holds ours.
        Files.copy(pki.foreignBundle(), gen.resolve("bundle.pem"), StandardCopyOption.REPLACE_EXISTING);
        writeChecksum(gen);
        assertTrue(refused(dir).getMessage().contains("truststore.p12 does not hold"));
    }

    @Test
    void refuse_a_checksum_file_that_is_not_one_sha256sum_line() throws Exception {
        Path dir = certDir(TestPki.shared(), "malformed");
        Path gen = dir.resolve("current").toRealPath();
        String good = Files.readString(gen.resolve(BundleChecksum.FILE));
        Files.writeString(gen.resolve(BundleChecksum.FILE), "not a checksum\n");
        refused(dir);
        Files.writeString(gen.resolve(BundleChecksum.FILE), good.replace("bundle.pem", "other.pem"));
        assertTrue(refused(dir).getMessage().contains("names other.pem"));
        Files.writeString(gen.resolve(BundleChecksum.FILE), good);
        new CertDirReader(dir).read();
    }

    @Test
    void check_pem_only_generations_too() throws Exception {
        TestPki pki = TestPki.shared();
        Path dir = certDir(pki, "pem");
        Path gen = dir.resolve("current").toRealPath();
        Files.delete(gen.resolve("keystore.p12"));
        assertEquals("pem", new CertDirReader(dir).read().format());
        Files.write(gen.resolve("bundle.pem"), Files.readAllBytes(pki.foreignBundle()), StandardOpenOption.APPEND);
        refused(dir);
    }

    @Test
    void exit_1_at_start_when_the_bundle_does_not_match() throws Exception {
        TestPki pki = TestPki.shared();
        Path dir = certDir(pki, "start");
        Files.write(dir.resolve("current/bundle.pem"), Files.readAllBytes(pki.foreignBundle()),
                StandardOpenOption.APPEND);
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "zt.serviceb.Main",
                "--cert-dir", dir.toString(), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"));
        Process p = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS), "process exited");
        assertEquals(1, p.exitValue(), err);
        JsonNode line = JSON.readTree(err.lines().filter(l -> l.contains("start_failed")).findFirst().orElseThrow());
        assertTrue(line.get("reason").asText().startsWith(BundleChecksum.CODE + ":"), err);
    }

    @Test
    void fail_the_reload_of_a_tampered_generation_and_keep_serving() throws Exception {
        TestPki pki = TestPki.create(tmp.resolve("pki"));
        Path dir = certDir(pki, "svc");
        String oldSerial = pki.serial("service-b");
        try (RunningService svc = RunningService.builder(dir).reloadInterval(Duration.ofSeconds(60)).start()) {
            String newSerial = pki.rotateWithoutTouch("service-b");
            assertNotEquals(oldSerial, newSerial);
            Path bad = swapIn(pki, dir, "gen-99990101T000000000000Z-tampered");
            Files.write(bad.resolve("bundle.pem"), Files.readAllBytes(pki.foreignBundle()), StandardOpenOption.APPEND);
            TestPki.touch(dir.resolve("reload.stamp"));

            Map<String, Object> e = svc.log.await("reload", r -> "failure".equals(r.get("result")));
            assertEquals(BundleChecksum.CODE, e.get("reason"), e.toString());
            assertTrue(String.valueOf(e.get("detail")).contains("has sha256"), e.toString());
            assertEquals(List.of("identity"), e.get("rejected"));
            assertEquals(1.0, svc.service.metrics().reloads("failure"));
            assertEquals(1.0, svc.service.metrics().rotations("failure"));
            try (var c = TestClient.connect(TestClient.context(pki.certDir("client"), pki.bundle()), svc.port())) {
                assertEquals(oldSerial, c.serverSerial(), "the old identity keeps serving");
            }

            // The twin: the same generation with an honest bundle is taken.
            swapIn(pki, dir, "gen-99990102T000000000000Z-good");
            TestPki.touch(dir.resolve("reload.stamp"));
            svc.log.await("reload", r -> "success".equals(r.get("result")));
            try (var c = TestClient.connect(TestClient.context(pki.certDir("client"), pki.bundle()), svc.port())) {
                assertEquals(newSerial, c.serverSerial());
            }
            assertEquals(1.0, svc.service.metrics().reloads("failure"));
        }
    }

    /** Copies ids/service-b's current generation (with its checksum) into {@code dir} and points current at it. */
    private static Path swapIn(TestPki pki, Path dir, String name) throws Exception {
        Path gen = Files.createDirectory(dir.resolve(name));
        Path from = pki.certDir("service-b").resolve("current").toRealPath();
        try (var files = Files.list(from)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                Files.copy(f, gen.resolve(f.getFileName()));
            }
        }
        writeChecksum(gen);
        Path link = dir.resolve(".current.tmp");
        Files.deleteIfExists(link);
        Files.createSymbolicLink(link, Path.of(name));
        Files.move(link, dir.resolve("current"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        return gen;
    }
}
