package zt.serviceb.policy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/**
 * Policy version 2 (CONTRACT P) through the real server: the callee is service-b's own SPIFFE
 * ID, so a shared mesh file's rules for another callee do not open service-b; methods and paths
 * are both checked; a denial is a 403 naming caller, callee, method and path, logged and counted;
 * a good file on reload flips a decision, a bad one keeps the old policy and counts a failure,
 * and a bad file at start exits 1.
 */
class PolicyV2EnforcementShould {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String B = "spiffe://zt.lab/svc/service-b";
    private static final String CLIENT = "spiffe://zt.lab/svc/client";
    /** client: GET /hello on service-b; service-a: everything, but only on service-a (another callee). */
    private static final String MESH = """
            {"version": 2, "rules": [
              {"caller": "spiffe://zt.lab/svc/client", "callee": "spiffe://zt.lab/svc/service-b",
               "methods": ["GET"], "paths": ["/hello"]},
              {"caller": "spiffe://zt.lab/svc/service-a", "callee": "spiffe://zt.lab/svc/service-a",
               "methods": ["*"], "paths": ["*"]}
            ]}""";
    /** The same, plus service-a -> service-b GET /hello. */
    private static final String MESH_OPENED = """
            {"version": 2, "rules": [
              {"caller": "spiffe://zt.lab/svc/client", "callee": "spiffe://zt.lab/svc/service-b",
               "methods": ["GET"], "paths": ["/hello"]},
              {"caller": "spiffe://zt.lab/svc/service-a", "callee": "spiffe://zt.lab/svc/service-a",
               "methods": ["*"], "paths": ["*"]},
              {"caller": "spiffe://zt.lab/svc/service-a", "callee": "spiffe://zt.lab/svc/*",
               "methods": ["GET"], "paths": ["/hello"]}
            ]}""";
    /** MESH_OPENED with its last rule missing "methods": a bad version 2 file. */
    private static final String BAD = MESH_OPENED.replace(
            "\"callee\": \"spiffe://zt.lab/svc/*\",\n   \"methods\": [\"GET\"], ", "\"callee\": \"spiffe://zt.lab/svc/*\",\n   ");

    @TempDir
    Path tmp;
    private TestPki pki;
    private Path policy;

    @BeforeEach
    void files() throws Exception {
        pki = TestPki.shared();
        policy = tmp.resolve("policy.json");
        Files.writeString(policy, MESH);
    }

    private SSLContext client(String name) throws Exception {
        return TestClient.context(pki.certDir(name), pki.bundle());
    }

    /** The agent's way: write a temporary file and rename it over the policy. */
    private void replacePolicy(String text) throws Exception {
        Path t = tmp.resolve(".policy.tmp");
        Files.writeString(t, text);
        Files.move(t, policy, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    private static void assertDenied(TestClient.Response r, String caller, String method, String path)
            throws Exception {
        assertEquals(403, r.status(), r.body());
        JsonNode j = r.json();
        assertEquals("forbidden", j.get("error").asText());
        assertEquals(caller + " may not call " + method + " " + path + " on " + B, j.get("reason").asText());
        assertEquals(caller, j.get("caller").asText());
        assertEquals(B, j.get("callee").asText());
        assertEquals(method, j.get("method").asText());
        assertEquals(path, j.get("path").asText());
    }

    @Test
    void allow_only_the_method_and_path_the_rule_for_this_callee_names() throws Exception {
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).policy(policy).noReload().start();
             var c = TestClient.connect(client("client"), svc.port())) {
            assertEquals(200, c.get("/hello").status());
            assertDenied(c.send("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), CLIENT, "POST", "/hello");
            assertDenied(c.get("/call?target=https://127.0.0.1:1/hello"), CLIENT, "GET", "/call");
            assertEquals(200, c.get("/hello").status(), "the connection stays usable");

            Map<String, Object> e = svc.log.await("policy_denied", r -> "POST".equals(r.get("method")));
            assertEquals(CLIENT, e.get("caller"));
            assertEquals(B, e.get("callee"));
            assertEquals("/hello", e.get("path"));
            assertEquals(2.0, svc.service.metrics().policyDenials());
            assertTrue(svc.metricsGet("/metrics").contains("mtls_policy_denials_total 2.0"));
        }
    }

    @Test
    void deny_a_caller_whose_rules_name_another_callee() throws Exception {
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).policy(policy).noReload().start();
             var c = TestClient.connect(client("service-a"), svc.port())) {
            assertDenied(c.get("/hello"), "spiffe://zt.lab/svc/service-a", "GET", "/hello");
        }
    }

    @Test
    void flip_a_decision_on_reload_and_keep_the_old_policy_when_the_new_file_is_bad() throws Exception {
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).policy(policy)
                .reloadInterval(Duration.ofSeconds(60)).start()) {
            try (var c = TestClient.connect(client("service-a"), svc.port())) {
                assertEquals(403, c.get("/hello").status());
            }
            replacePolicy(MESH_OPENED);
            svc.log.await("reload", r -> "success".equals(r.get("result"))
                    && String.valueOf(r.get("changed")).contains("policy"));
            try (var c = TestClient.connect(client("service-a"), svc.port())) {
                assertEquals(200, c.get("/hello").status(), "the new rule allows it");
            }

            // A v2 rule without "methods": refused, counted once, the opened policy stays.
            assertTrue(!BAD.equals(MESH_OPENED) && BAD.contains("svc/*"), BAD);
            replacePolicy(BAD);
            Map<String, Object> e = svc.log.await("reload", r -> "failure".equals(r.get("result")));
            assertTrue(String.valueOf(e.get("reason")).contains("rules[2] is missing \"methods\""), e.toString());
            assertEquals(List.of("policy"), e.get("rejected"));
            assertEquals(1.0, svc.service.metrics().reloads("failure"));
            assertTrue(svc.metricsGet("/metrics").contains("mtls_reloads_total{result=\"failure\"} 1.0"));
            try (var c = TestClient.connect(client("service-a"), svc.port())) {
                assertEquals(200, c.get("/hello").status(), "the old (opened) policy still applies");
                assertDenied(c.get("/call"), "spiffe://zt.lab/svc/service-a", "GET", "/call");
            }
        }
    }

    @Test
    void exit_1_at_start_with_a_bad_file() throws Exception {
        Files.writeString(policy, MESH.replace("\"methods\": [\"GET\"]", "\"methods\": []"));
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "zt.serviceb.Main",
                "--cert-dir", pki.certDir("service-b").toString(), "--policy", policy.toString(),
                "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"));
        Process p = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS), "process exited");
        assertEquals(1, p.exitValue(), err);
        JsonNode line = JSON.readTree(err.lines().filter(l -> l.contains("start_failed")).findFirst().orElseThrow());
        assertTrue(line.get("reason").asText().contains("rules[0].methods must be a non-empty array"), err);
        assertTrue(line.get("reason").asText().contains(policy.toString()), err);
    }
}
