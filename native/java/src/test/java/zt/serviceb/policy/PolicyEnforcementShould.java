package zt.serviceb.policy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/** Version 1 through the real server: 403 with a JSON reason over the completed TLS connection; allowed twins get 200. */
class PolicyEnforcementShould {
    private static final String B = "spiffe://zt.lab/svc/service-b";
    @TempDir
    static Path tmp;
    private static TestPki pki;
    private static RunningService svc;

    @BeforeAll
    static void start() throws Exception {
        pki = TestPki.shared();
        Path policy = tmp.resolve("policy.json");
        Files.writeString(policy, """
                {"version": 1, "rules": [
                  {"caller": "spiffe://zt.lab/svc/client", "allow": ["/hello"]},
                  {"caller": "spiffe://zt.lab/svc/service-*", "allow": ["*"]}
                ]}""");
        svc = RunningService.builder(pki.certDir("service-b")).policy(policy).start();
    }

    @AfterAll
    static void stop() {
        svc.close();
    }

    @Test
    void allow_a_caller_a_path_its_rule_names() throws Exception {
        try (var c = TestClient.connect(TestClient.context(pki.certDir("client"), pki.bundle()), svc.port())) {
            assertEquals(200, c.get("/hello").status());
        }
    }

    @Test
    void deny_a_path_the_callers_rule_does_not_name_with_403_json() throws Exception {
        double before = svc.service.metrics().policyDenials();
        try (var c = TestClient.connect(TestClient.context(pki.certDir("client"), pki.bundle()), svc.port())) {
            var r = c.get("/call?target=https://127.0.0.1:1/hello");
            assertEquals(403, r.status());
            var j = r.json();
            assertEquals("forbidden", j.get("error").asText());
            assertEquals("spiffe://zt.lab/svc/client may not call GET /call on " + B, j.get("reason").asText());
            assertEquals("spiffe://zt.lab/svc/client", j.get("caller").asText());
            assertEquals(B, j.get("callee").asText());
            assertEquals("GET", j.get("method").asText());
            assertEquals("/call", j.get("path").asText(), "the path without the query string");
            assertEquals(200, c.get("/hello").status(), "the connection stays usable");
        }
        Map<String, Object> e = svc.log.await("policy_denied", r -> "/call".equals(r.get("path"))
                && "spiffe://zt.lab/svc/client".equals(r.get("caller")));
        assertEquals(B, e.get("callee"));
        assertEquals("GET", e.get("method"));
        assertTrue(svc.service.metrics().policyDenials() >= before + 1);
        assertTrue(svc.metricsGet("/metrics").matches("(?s).*mtls_policy_denials_total [1-9].*"));
    }

    @Test
    void deny_a_caller_no_rule_matches() throws Exception {
        try (var c = TestClient.connect(TestClient.context(pki.certDir("revoked"), pki.bundle()), svc.port())) {
            var r = c.get("/hello");
            assertEquals(403, r.status());
            assertEquals("spiffe://zt.lab/svc/revoked may not call GET /hello on " + B, r.json().get("reason").asText());
        }
    }

    @Test
    void allow_by_prefix_pattern() throws Exception {
        try (var c = TestClient.connect(TestClient.context(pki.certDir("service-a"), pki.bundle()), svc.port())) {
            assertEquals(404, c.get("/anything").status(), "allowed by policy, then no such route");
            assertEquals(200, c.get("/hello").status());
        }
    }
}
