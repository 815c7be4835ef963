package zt.serviceb;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestPki;

/**
 * curl and openssl s_client against the real server, as an operator would use them.
 *
 * <p>Our leaves carry only a URI SAN, so curl's host-name check cannot pass (it matches DNS/IP
 * SANs, then falls back to a CN the leaves do not have), and {@code -k} switches off the CA
 * check too (curl then does not even load {@code --cacert}). What works: {@code -k} together
 * with {@code --pinnedpubkey} on the server's current public key, which curl still enforces;
 * and {@code openssl s_client -CAfile bundle.pem -verify_return_error}, which verifies the chain
 * to the bundle and checks no host name. Both are tested here with negative twins.
 */
class CommandLineToolsShould {
    @TempDir
    static Path tmp;
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

    private record Result(int code, String out) {
    }

    private static Result run(String stdin, String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        try (var in = p.getOutputStream()) {
            if (stdin != null) {
                in.write(stdin.getBytes(StandardCharsets.US_ASCII));
            }
        }
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS), "command finished: " + String.join(" ", cmd));
        return new Result(p.exitValue(), out);
    }

    private static String url() {
        return "https://127.0.0.1:" + svc.port() + "/hello";
    }

    private static Path serverPublicKey() throws Exception {
        Path pub = tmp.resolve("service-b.pub.pem");
        Result r = run(null, "openssl", "x509", "-in", pki.certDir("service-b").resolve("cert.pem").toString(),
                "-pubkey", "-noout");
        assertEquals(0, r.code(), r.out());
        Files.writeString(pub, r.out());
        return pub;
    }

    private static List<String> curl(String identity, String... extra) {
        Path dir = pki.certDir(identity);
        List<String> cmd = new ArrayList<>(List.of("curl", "-sS", "--max-time", "10",
                "--cert", dir.resolve("chain.pem").toString(), "--key", dir.resolve("key.pem").toString()));
        cmd.addAll(List.of(extra));
        cmd.add(url());
        return cmd;
    }

    @Test
    void serve_curl_with_a_client_certificate_and_a_pinned_server_key() throws Exception {
        Result r = run(null, curl("client", "-k", "--pinnedpubkey", serverPublicKey().toString())
                .toArray(new String[0]));
        assertEquals(0, r.code(), r.out());
        var j = new ObjectMapper().readTree(r.out());
        assertEquals("spiffe://zt.lab/svc/client", j.get("caller").asText());
        assertEquals(pki.serial("service-b"), j.get("serial").asText());
    }

    @Test
    void make_curl_refuse_a_server_key_other_than_the_pinned_one() throws Exception {
        Path otherKey = tmp.resolve("other.pub.pem");
        Result k = run(null, "openssl", "x509", "-in", pki.certDir("service-a").resolve("cert.pem").toString(),
                "-pubkey", "-noout");
        Files.writeString(otherKey, k.out());
        Result r = run(null, curl("client", "-k", "--pinnedpubkey", otherKey.toString()).toArray(new String[0]));
        assertEquals(90, r.code(), "curl exit 90: pinned public key mismatch; " + r.out());
    }

    @Test
    void fail_curls_host_name_check_because_the_leaf_has_only_a_uri_san() throws Exception {
        Result r = run(null, curl("client", "--cacert", pki.bundle().toString()).toArray(new String[0]));
        assertEquals(60, r.code(), "curl exit 60: peer certificate cannot be authenticated; " + r.out());
    }

    @Test
    void refuse_curl_with_a_revoked_client_certificate() throws Exception {
        Result r = run(null, curl("revoked", "-k", "--pinnedpubkey", serverPublicKey().toString())
                .toArray(new String[0]));
        assertNotEquals(0, r.code(), r.out());
        assertTrue(r.out().contains("alert"), r.out());
        svc.log.await("handshake_rejected", e -> pki.serial("revoked").equals(e.get("peer_serial")));
    }

    @Test
    void serve_openssl_s_client_which_verifies_the_chain_to_the_bundle() throws Exception {
        Path dir = pki.certDir("client");
        Result r = run("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                "openssl", "s_client", "-connect", "127.0.0.1:" + svc.port(), "-quiet",
                "-CAfile", pki.bundle().toString(), "-verify_return_error",
                "-cert", dir.resolve("cert.pem").toString(), "-cert_chain", dir.resolve("chain.pem").toString(),
                "-key", dir.resolve("key.pem").toString());
        assertEquals(0, r.code(), r.out());
        assertTrue(r.out().contains("\"caller\":\"spiffe://zt.lab/svc/client\""), r.out());
    }

    @Test
    void make_openssl_s_client_refuse_the_server_under_another_trust_bundle() throws Exception {
        Path dir = pki.certDir("client");
        Result r = run("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                "openssl", "s_client", "-connect", "127.0.0.1:" + svc.port(), "-quiet",
                "-CAfile", pki.foreignBundle().toString(), "-verify_return_error",
                "-cert", dir.resolve("cert.pem").toString(), "-cert_chain", dir.resolve("chain.pem").toString(),
                "-key", dir.resolve("key.pem").toString());
        assertNotEquals(0, r.code(), r.out());
        assertTrue(r.out().contains("certificate verify failed"), r.out());
    }

    @Test
    void refuse_openssl_s_client_without_a_client_certificate() throws Exception {
        Result r = run("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                "openssl", "s_client", "-connect", "127.0.0.1:" + svc.port(), "-quiet",
                "-CAfile", pki.bundle().toString(), "-verify_return_error");
        assertTrue(r.out().contains("alert") || r.code() != 0, r.out());
        assertTrue(!r.out().contains("\"caller\""), r.out());
        svc.log.awaitRejection("no_client_cert");
    }
}
