package zt.serviceb.identity;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** One case per SPIFFE-ID syntax rule (SPIFFE-ID section 2). */
class SpiffeIdShould {

    @ParameterizedTest
    @ValueSource(strings = {
        "spiffe://zt.lab/svc/service-a",
        "spiffe://zt.lab",
        "spiffe://a-b_c.9/x/Y.z-_/0",
        "spiffe://zt.lab/ops/Deploy_01",
    })
    void accept_valid_ids(String id) throws Exception {
        assertEquals(id, SpiffeId.parse(id).toString());
    }

    @ParameterizedTest(name = "{1}: {0}")
    @CsvSource(delimiter = '|', value = {
        "https://zt.lab/svc/a         | scheme is not spiffe",
        "SPIFFE://zt.lab/svc/a        | scheme is not spiffe",
        "spiffe:/zt.lab/svc/a         | scheme is not spiffe",
        "spiffe:///svc/a              | empty trust domain",
        "spiffe://ZT.lab/svc/a        | trust domain has invalid character",
        "spiffe://zt.lab:443/svc/a    | trust domain has invalid character",
        "spiffe://user@zt.lab/svc/a   | trust domain has invalid character",
        "spiffe://zt%2elab/svc/a      | trust domain has invalid character",
        "spiffe://zt.lab/svc/a?x=1    | path has invalid character",
        "spiffe://zt.lab/svc/a#frag   | path has invalid character",
        "spiffe://zt.lab/svc//a       | empty path segment",
        "spiffe://zt.lab/svc/a/       | empty path segment",
        "spiffe://zt.lab/svc/./a      | path segment '.'",
        "spiffe://zt.lab/svc/../a     | path segment '..'",
        "spiffe://zt.lab/svc/a%20b    | path has invalid character",
        "spiffe://zt.lab/svc/a b      | path has invalid character",
    })
    void reject_each_broken_rule_naming_it(String id, String rule) {
        InvalidSpiffeIdException e = assertThrows(InvalidSpiffeIdException.class, () -> SpiffeId.parse(id));
        assertTrue(e.getMessage().contains(rule), () -> "message '" + e.getMessage() + "' should name " + rule);
    }

    @Test
    void reject_empty_and_overlong_ids() {
        assertThrows(InvalidSpiffeIdException.class, () -> SpiffeId.parse(""));
        assertThrows(InvalidSpiffeIdException.class, () -> SpiffeId.parse("spiffe://zt.lab/" + "a".repeat(2100)));
    }

    @Test
    void tell_workload_ids_from_trust_domain_ids() throws Exception {
        assertTrue(SpiffeId.parse("spiffe://zt.lab/svc/a").hasWorkloadPath());
        assertFalse(SpiffeId.parse("spiffe://zt.lab").hasWorkloadPath());
    }

    @Test
    void compare_by_value_and_expose_trust_domain() throws Exception {
        SpiffeId a = SpiffeId.parse("spiffe://zt.lab/svc/a");
        assertEquals(a, SpiffeId.parse("spiffe://zt.lab/svc/a"));
        assertEquals("zt.lab", a.trustDomain());
        assertTrue(a.isMemberOf("zt.lab"));
        assertFalse(a.isMemberOf("other.lab"));
    }
}
