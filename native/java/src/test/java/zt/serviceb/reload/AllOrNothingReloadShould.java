package zt.serviceb.reload;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/**
 * A reload is all or nothing (issue 8): a new generation whose certificate is good but whose
 * bundle, policy or CRL is bad changes nothing at all. The policy and the CRL live inside the
 * generation here ({@code --policy DIR/current/policy.json}, {@code --crl DIR/current/crl.pem}),
 * so one rename of {@code current} changes all parts at once and the service sees exactly one
 * reload attempt. Each case then heals with an all-good generation, which must be taken whole:
 * the negative twin proving the test can see a change.
 */
class AllOrNothingReloadShould {
    private static final Duration NO_POLL = Duration.ofSeconds(60);
    private static final String GOOD_POLICY = "{\"version\":1,\"rules\":[{\"caller\":\"spiffe://zt.lab/svc/client\","
            + "\"allow\":[\"/hello\"]}]}";
    private static final String BAD_POLICY = "{\"version\":3,\"rules\":[]}";

    @TempDir
    Path tmp;
    private TestPki pki;
    private Path certDir;

    @BeforeEach
    void serviceDir() throws Exception {
        pki = TestPki.create(tmp.resolve("pki"));
        // The service runs on a copy, so rotating ids/service-b makes a new good certificate
        // without the service seeing it until a test swaps it in.
        certDir = TestPki.copyCertDir(pki.certDir("service-b"), Files.createDirectory(tmp.resolve("svc")));
        Path gen = certDir.resolve("current").toRealPath();
        Files.writeString(gen.resolve("policy.json"), GOOD_POLICY);
        Files.copy(pki.crl("crl.pem"), gen.resolve("crl.pem"));
    }

    private SSLContext client(String name) throws Exception {
        return TestClient.context(pki.certDir(name), pki.bundle());
    }

    @ParameterizedTest(name = "good certificate, bad {0}")
    @CsvSource(delimiter = '|', value = {
        "bundle | chain does not verify against the bundle",
        "policy | \"version\" must be 1 or 2",
        "crl    | not signed by a known CA",
    })
    void change_nothing_when_one_part_of_a_new_generation_is_bad(String badPart, String reason) throws Exception {
        String oldSerial = pki.serial("service-b");
        try (RunningService svc = RunningService.builder(certDir).policy(certDir.resolve("current/policy.json"))
                .crl(certDir.resolve("current/crl.pem")).reloadInterval(NO_POLL).start()) {
            assertEquals(0.0, svc.service.metrics().reloads("failure"));
            String newSerial = pki.rotateWithoutTouch("service-b");
            assertNotEquals(oldSerial, newSerial);

            Map<String, byte[]> parts = goodParts();
            switch (badPart) {
                case "bundle" -> parts.put("bundle.pem", Files.readAllBytes(pki.foreignBundle()));
                case "policy" -> parts.put("policy.json", BAD_POLICY.getBytes(StandardCharsets.UTF_8));
                case "crl" -> parts.put("crl.pem", Files.readAllBytes(pki.crl("crl-foreign.pem")));
                default -> throw new IllegalArgumentException(badPart);
            }
            // bundle.pem is read only when the generation has no truststore.p12.
            swapInGeneration("gen-99990101T000000000000Z-bad-" + badPart, parts, "truststore.p12");

            Map<String, Object> e = svc.log.await("reload", r -> "failure".equals(r.get("result")));
            assertTrue(String.valueOf(e.get("reason")).contains(reason), e.toString());
            assertEquals(oldSerial, e.get("old_serial"));
            assertEquals(oldSerial, e.get("new_serial"), "a failed reload names the serial still in use");
            assertEquals(List.of(), e.get("changed"), e.toString());

            // Nothing changed: the identity a real client sees, the bundle that judges it (a
            // foreign bundle would refuse it), the policy (the bad one denies everything) ...
            try (var c = TestClient.connect(client("client"), svc.port())) {
                assertEquals(oldSerial, c.serverSerial(), "the old identity keeps serving");
                var hello = c.get("/hello");
                assertEquals(200, hello.status(), "the old bundle and policy still apply");
                assertEquals(oldSerial, hello.json().get("serial").asText());
            }
            // ... and the CRL (the foreign one would not list this client).
            SSLContext revoked = client("revoked");
            assertThrows(IOException.class, () -> {
                try (var c = TestClient.connect(revoked, svc.port())) {
                    c.get("/hello");
                }
            });
            svc.log.awaitRejection("revoked");
            String page = svc.metricsGet("/metrics");
            assertTrue(page.contains("mtls_cert_info{serial=\"" + oldSerial + "\""), page);
            assertFalse(page.contains(newSerial), "the new certificate was never published");
            assertTrue(page.contains("mtls_reloads_total{result=\"failure\"} 1.0"), page);
            assertEquals(1.0, svc.service.metrics().reloads("failure"), "exactly one failed reload");
            assertEquals(0.0, svc.service.metrics().reloads("success"));
            assertEquals(oldSerial, svc.service.identity().serial());

            // Heal: the same certificate with good parts is taken whole.
            swapInGeneration("gen-99990102T000000000000Z-good", goodParts());
            svc.log.await("reload", r -> "success".equals(r.get("result")));
            try (var c = TestClient.connect(client("client"), svc.port())) {
                assertEquals(newSerial, c.serverSerial());
                assertEquals(200, c.get("/hello").status());
            }
            assertEquals(1.0, svc.service.metrics().reloads("failure"));
            assertEquals(1.0, svc.service.metrics().reloads("success"));
        }
    }

    private Map<String, byte[]> goodParts() throws IOException {
        Map<String, byte[]> parts = new LinkedHashMap<>();
        parts.put("policy.json", GOOD_POLICY.getBytes(StandardCharsets.UTF_8));
        parts.put("crl.pem", Files.readAllBytes(pki.crl("crl.pem")));
        return parts;
    }

    /**
     * Writes a generation from ids/service-b's current files (minus {@code omit}) plus
     * {@code parts}, then points {@code current} at it with one rename and touches
     * {@code reload.stamp}, as the agent does.
     */
    private void swapInGeneration(String name, Map<String, byte[]> parts, String... omit) throws IOException {
        Path gen = certDir.resolve(name);
        Files.createDirectory(gen);
        Path from = pki.certDir("service-b").resolve("current").toRealPath();
        try (var files = Files.list(from)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                if (!List.of(omit).contains(f.getFileName().toString())) {
                    Files.copy(f, gen.resolve(f.getFileName()));
                }
            }
        }
        for (Map.Entry<String, byte[]> p : parts.entrySet()) {
            Files.write(gen.resolve(p.getKey()), p.getValue());
        }
        Path tmpLink = certDir.resolve(".current.tmp");
        Files.deleteIfExists(tmpLink);
        Files.createSymbolicLink(tmpLink, Path.of(name));
        Files.move(tmpLink, certDir.resolve("current"), StandardCopyOption.ATOMIC_MOVE,
                StandardCopyOption.REPLACE_EXISTING);
        TestPki.touch(certDir.resolve("reload.stamp"));
    }
}
