package zt.serviceb.policy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import zt.serviceb.identity.MaterialException;

/** The parser and matcher of both policy versions (contracts.md 4, CONTRACT P), good and bad files. */
class PolicyShould {
    private static final String B = "spiffe://zt.lab/svc/service-b";
    private static final String A = "spiffe://zt.lab/svc/service-a";
    private static final String V1_EXAMPLE = """
            {
              "version": 1,
              "rules": [
                {"caller": "spiffe://zt.lab/svc/service-a", "allow": ["/hello", "/call"]},
                {"caller": "spiffe://zt.lab/svc/load",      "allow": ["/hello"]},
                {"caller": "spiffe://zt.lab/ops/*",         "allow": ["*"]}
              ]
            }""";
    private static final String V2_EXAMPLE = """
            {"version": 2,
             "rules": [
               {"caller": "spiffe://zt.lab/svc/service-a", "callee": "spiffe://zt.lab/svc/service-b",
                "methods": ["GET"], "paths": ["/hello", "/call"]},
               {"caller": "spiffe://zt.lab/svc/service-b", "callee": "spiffe://zt.lab/svc/service-a",
                "methods": ["GET"], "paths": ["/hello"]},
               {"caller": "spiffe://zt.lab/svc/load", "callee": "spiffe://zt.lab/svc/*",
                "methods": ["GET", "HEAD"], "paths": ["/hello"]},
               {"caller": "spiffe://zt.lab/ops/*", "callee": "*", "methods": ["*"], "paths": ["*"]}
             ]}""";

    @ParameterizedTest(name = "v1: {0} {1} -> {2}")
    @CsvSource({
        "spiffe://zt.lab/svc/service-a, /hello, true",
        "spiffe://zt.lab/svc/service-a, /call, true",
        "spiffe://zt.lab/svc/service-a, /admin, false",
        "spiffe://zt.lab/svc/load, /hello, true",
        "spiffe://zt.lab/svc/load, /call, false",
        "spiffe://zt.lab/ops/alice, /anything, true",
        "spiffe://zt.lab/ops, /hello, false",
        "spiffe://zt.lab/svc/service-ab, /hello, false",
        "spiffe://zt.lab/svc/other, /hello, false",
    })
    void keep_version_1_meaning_any_callee_and_method(String caller, String path, boolean allowed) throws Exception {
        Policy p = Policy.parse(V1_EXAMPLE, null);
        assertEquals(1, p.version());
        for (String callee : new String[] {B, A, "spiffe://zt.lab/svc/anything"}) {
            for (String method : new String[] {"GET", "POST"}) {
                assertEquals(allowed, p.isAllowed(caller, callee, method, path), callee + " " + method);
            }
        }
    }

    @ParameterizedTest(name = "v2: {0} -> {1} {2} {3}: {4}")
    @CsvSource({
        // service-a may call service-b's /hello and /call, with GET only ...
        "spiffe://zt.lab/svc/service-a, spiffe://zt.lab/svc/service-b, GET, /hello, true",
        "spiffe://zt.lab/svc/service-a, spiffe://zt.lab/svc/service-b, GET, /call, true",
        "spiffe://zt.lab/svc/service-a, spiffe://zt.lab/svc/service-b, POST, /hello, false",
        "spiffe://zt.lab/svc/service-a, spiffe://zt.lab/svc/service-b, get, /hello, false",
        "spiffe://zt.lab/svc/service-a, spiffe://zt.lab/svc/service-b, GET, /admin, false",
        // ... but not service-a's own (the callee is what one shared file could not say in v1)
        "spiffe://zt.lab/svc/service-a, spiffe://zt.lab/svc/service-a, GET, /hello, false",
        "spiffe://zt.lab/svc/service-b, spiffe://zt.lab/svc/service-a, GET, /hello, true",
        "spiffe://zt.lab/svc/service-b, spiffe://zt.lab/svc/service-a, GET, /call, false",
        "spiffe://zt.lab/svc/service-b, spiffe://zt.lab/svc/service-b, GET, /hello, false",
        // callee prefix, several methods
        "spiffe://zt.lab/svc/load, spiffe://zt.lab/svc/service-a, HEAD, /hello, true",
        "spiffe://zt.lab/svc/load, spiffe://zt.lab/svc/service-b, GET, /hello, true",
        "spiffe://zt.lab/svc/load, spiffe://zt.lab/ops/x, GET, /hello, false",
        "spiffe://zt.lab/svc/load, spiffe://zt.lab/svc/service-b, DELETE, /hello, false",
        // everything for ops
        "spiffe://zt.lab/ops/alice, spiffe://zt.lab/svc/service-b, DELETE, /x/y, true",
        "spiffe://zt.lab/ops, spiffe://zt.lab/svc/service-b, GET, /hello, false",
        "spiffe://zt.lab/svc/other, spiffe://zt.lab/svc/service-b, GET, /hello, false",
    })
    void match_caller_callee_method_and_path_in_version_2(String caller, String callee, String method, String path,
                                                          boolean allowed) throws Exception {
        Policy p = Policy.parse(V2_EXAMPLE, null);
        assertEquals(2, p.version());
        assertEquals(4, p.ruleCount());
        assertEquals(allowed, p.isAllowed(caller, callee, method, path));
    }

    @Test
    void match_a_trailing_star_as_a_prefix_and_nothing_else_as_a_wildcard() {
        assertTrue(Policy.matches("/admin/*", "/admin/x/y"));
        assertFalse(Policy.matches("/admin/*", "/admin"));
        assertTrue(Policy.matches("*", ""));
        assertFalse(Policy.matches("/a*b", "/a-b"));
        assertTrue(Policy.matches("/a*b", "/a*b"));
        assertFalse(Policy.matches("/hello?", "/hello"));
        assertFalse(Policy.matches("*", null), "an unknown value matches nothing");
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2})
    void deny_everything_with_empty_rules(int version) throws Exception {
        Policy p = Policy.parse("{\"version\":" + version + ",\"rules\":[]}", null);
        assertFalse(p.isAllowed(A, B, "GET", "/hello"));
    }

    @Test
    void allow_everything_without_a_policy() {
        assertTrue(Policy.allowAll().isAllowed("spiffe://zt.lab/svc/anyone", B, "PUT", "/anything"));
    }

    private static String v2(String rule) {
        return "{\"version\":2,\"rules\":[" + rule + "]}";
    }

    private static final String GOOD_V2_RULE = "{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"GET\"],\"paths\":[\"/\"]}";

    @Test
    void accept_the_good_twin_of_every_bad_version_2_rule() throws Exception {
        assertEquals(1, Policy.parse(v2(GOOD_V2_RULE), null).ruleCount());
        assertEquals(1, Policy.parse(v2("{\"caller\":\"x\",\"callee\":\"*\",\"methods\":[\"*\"],\"paths\":[\"*\"]}"), null)
                .ruleCount());
    }

    @ParameterizedTest
    @ValueSource(strings = {
        "",
        "[]",
        "{\"rules\":[]}",
        "{\"version\":3,\"rules\":[]}",
        "{\"version\":0,\"rules\":[]}",
        "{\"version\":\"1\",\"rules\":[]}",
        "{\"version\":2.0,\"rules\":[]}",
        "{\"version\":1}",
        "{\"version\":1,\"rules\":{}}",
        "{\"version\":1,\"rules\":[],\"extra\":true}",
        "{\"version\":1,\"rules\":[{\"caller\":\"x\",\"allow\":[\"/\"],\"deny\":[]}]}",
        "{\"version\":1,\"rules\":[{\"allow\":[\"/\"]}]}",
        "{\"version\":1,\"rules\":[{\"caller\":\"x\"}]}",
        "{\"version\":1,\"rules\":[{\"caller\":\"x\",\"allow\":\"/hello\"}]}",
        "{\"version\":1,\"rules\":[{\"caller\":\"x\",\"allow\":[1]}]}",
        "{\"version\":1,\"rules\":[\"x\"]}",
        // a v1 rule in a v2 file and the reverse
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"allow\":[\"/\"]}]}",
        "{\"version\":1,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"GET\"],\"paths\":[\"/\"]}]}",
        // v2: missing keys
        "{\"version\":2,\"rules\":[{\"callee\":\"y\",\"methods\":[\"GET\"],\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"methods\":[\"GET\"],\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"GET\"]}]}",
        // v2: unknown key
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"GET\"],\"paths\":[\"/\"],\"allow\":[]}]}",
        // v2: empty lists, empty strings, non-strings
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[],\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"GET\"],\"paths\":[]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"\",\"callee\":\"y\",\"methods\":[\"GET\"],\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"\",\"methods\":[\"GET\"],\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"GET\"],\"paths\":[\"\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":1,\"callee\":\"y\",\"methods\":[\"GET\"],\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":[\"y\"],\"methods\":[\"GET\"],\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":\"GET\",\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"GET\"],\"paths\":[null]}]}",
        // v2: methods must be upper-case method names or "*"
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"get\"],\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"G*\"],\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"GET POST\"],\"paths\":[\"/\"]}]}",
        "{\"version\":2,\"rules\":[{\"caller\":\"x\",\"callee\":\"y\",\"methods\":[\"GET-X\"],\"paths\":[\"/\"]}]}",
    })
    void reject_malformed_files(String text) {
        assertThrows(MaterialException.class, () -> Policy.parse(text, null));
    }
}
