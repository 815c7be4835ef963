package zt.serviceb.policy;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import zt.serviceb.identity.MaterialException;

class PolicyShould {
    private static final String CONTRACT_EXAMPLE = """
            {
              "version": 1,
              "rules": [
                {"caller": "spiffe://zt.lab/svc/service-a", "allow": ["/hello", "/call"]},
                {"caller": "spiffe://zt.lab/svc/load",      "allow": ["/hello"]},
                {"caller": "spiffe://zt.lab/ops/*",         "allow": ["*"]}
              ]
            }""";

    @ParameterizedTest(name = "{0} {1} -> {2}")
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
    void allow_only_what_a_rule_names(String caller, String path, boolean allowed) throws Exception {
        Policy p = Policy.parse(CONTRACT_EXAMPLE, null);
        assertTrue(p.isAllowed(caller, path) == allowed);
    }

    @Test
    void match_a_trailing_star_as_a_prefix_and_nothing_else_as_a_wildcard() {
        assertTrue(Policy.matches("/admin/*", "/admin/x/y"));
        assertFalse(Policy.matches("/admin/*", "/admin"));
        assertTrue(Policy.matches("*", ""));
        assertFalse(Policy.matches("/a*b", "/a-b"));
        assertTrue(Policy.matches("/a*b", "/a*b"));
        assertFalse(Policy.matches("/hello?", "/hello"));
    }

    @Test
    void deny_everything_with_empty_rules() throws Exception {
        Policy p = Policy.parse("{\"version\":1,\"rules\":[]}", null);
        assertFalse(p.isAllowed("spiffe://zt.lab/svc/service-a", "/hello"));
    }

    @Test
    void allow_everything_without_a_policy() {
        assertTrue(Policy.allowAll().isAllowed("spiffe://zt.lab/svc/anyone", "/anything"));
    }

    @ParameterizedTest
    @ValueSource(strings = {
        "",
        "[]",
        "{\"rules\":[]}",
        "{\"version\":2,\"rules\":[]}",
        "{\"version\":\"1\",\"rules\":[]}",
        "{\"version\":1}",
        "{\"version\":1,\"rules\":{}}",
        "{\"version\":1,\"rules\":[],\"extra\":true}",
        "{\"version\":1,\"rules\":[{\"caller\":\"x\",\"allow\":[\"/\"],\"deny\":[]}]}",
        "{\"version\":1,\"rules\":[{\"allow\":[\"/\"]}]}",
        "{\"version\":1,\"rules\":[{\"caller\":\"x\"}]}",
        "{\"version\":1,\"rules\":[{\"caller\":\"x\",\"allow\":\"/hello\"}]}",
        "{\"version\":1,\"rules\":[{\"caller\":\"x\",\"allow\":[1]}]}",
        "{\"version\":1,\"rules\":[\"x\"]}",
    })
    void reject_malformed_files(String text) {
        assertThrows(MaterialException.class, () -> Policy.parse(text, null));
    }
}
