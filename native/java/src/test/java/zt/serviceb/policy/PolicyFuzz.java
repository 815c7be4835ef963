package zt.serviceb.policy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

import zt.serviceb.identity.MaterialException;

/**
 * Jazzer fuzz targets for the policy file parser (issue 19; docs/testing.md; contracts.md 4).
 * One feeds any bytes as a policy file: it parses (version 1 or 2) or fails with a
 * {@link MaterialException}, never another exception. The other builds policies from the
 * fuzzer's choices: every generated good v2 file parses and decides each generated request as
 * a reference model (prefix patterns as regular expressions) says, its v1 rendering decides as
 * the v2 rules with callee and methods "*", and the same file with one defect is a clean error.
 * Committed inputs: {@code PolicyFuzzInputs/} in src/test/resources beside this package.
 */
class PolicyFuzz {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String[] IDS = {"spiffe://zt.lab/svc/service-a", "spiffe://zt.lab/svc/service-b",
        "spiffe://zt.lab/ops/admin", "spiffe://zt.lab/svc/load", "spiffe://other.lab/svc/service-a"};
    private static final String[] METHODS = {"GET", "POST", "DELETE", "PUT"};
    private static final String[] PATHS = {"/hello", "/call", "/admin/x", "/", "/hello/world"};

    @FuzzTest(maxDuration = "30s")
    void parse_any_file_or_fail_cleanly(byte[] data) {
        Policy p;
        try {
            p = Policy.parse(new String(data, StandardCharsets.UTF_8), null);
        } catch (MaterialException e) {
            assertFalse(e.getMessage() == null || e.getMessage().isEmpty());
            return;
        }
        assertTrue(p.version() == 1 || p.version() == 2);
        for (String id : IDS) {
            p.isAllowed(id, IDS[1], "GET", "/hello");
        }
    }

    @FuzzTest(maxDuration = "30s")
    void decide_generated_policies_as_the_reference_model(FuzzedDataProvider in) throws Exception {
        int count = in.consumeInt(0, 4);
        List<RefRule> rules = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            rules.add(new RefRule(pattern(in, IDS), pattern(in, IDS), methods(in), patterns(in, PATHS)));
        }
        ObjectNode v2 = render(rules, 2);
        Policy policy = Policy.parse(JSON.writeValueAsString(v2), null);
        assertEquals(2, policy.version());
        assertEquals(count, policy.ruleCount());
        List<RefRule> asV1 = new ArrayList<>();
        for (RefRule r : rules) {
            asV1.add(new RefRule(r.caller, "*", List.of("*"), r.paths));
        }
        Policy v1 = Policy.parse(JSON.writeValueAsString(render(rules, 1)), null);
        assertEquals(1, v1.version());
        for (int q = in.consumeInt(1, 8); q > 0; q--) {
            String caller = pick(in, IDS);
            String callee = pick(in, IDS);
            String method = pick(in, METHODS);
            String path = in.consumeBoolean() ? pick(in, PATHS) : in.consumeString(12);
            assertEquals(reference(rules, caller, callee, method, path),
                    policy.isAllowed(caller, callee, method, path),
                    "v2 " + v2 + " on " + caller + " " + callee + " " + method + " " + path);
            assertEquals(reference(asV1, caller, callee, method, path), v1.isAllowed(caller, callee, method, path),
                    "v1 on " + caller + " " + method + " " + path);
        }
        if (!rules.isEmpty()) {
            String bad = withOneDefect(v2, in.consumeInt(0, 7), in.consumeInt(0, rules.size() - 1));
            assertThrows(MaterialException.class, () -> Policy.parse(bad, null), bad);
        }
    }

    /** The reference decision: some rule matches all four, each pattern a regular expression. */
    private static boolean reference(List<RefRule> rules, String caller, String callee, String method, String path) {
        for (RefRule r : rules) {
            if (regex(r.caller).matcher(caller).matches() && regex(r.callee).matcher(callee).matches()
                    && r.methods.stream().anyMatch(m -> regex(m).matcher(method).matches())
                    && r.paths.stream().anyMatch(p -> regex(p).matcher(path).matches())) {
                return true;
            }
        }
        return false;
    }

    /** "abc*" matches "abc" followed by anything (DOTALL: any character); otherwise the literal. */
    private static Pattern regex(String pattern) {
        if (pattern.endsWith("*")) {
            return Pattern.compile(Pattern.quote(pattern.substring(0, pattern.length() - 1)) + ".*", Pattern.DOTALL);
        }
        return Pattern.compile(Pattern.quote(pattern));
    }

    private static String withOneDefect(ObjectNode good, int defect, int index) throws Exception {
        ObjectNode root = good.deepCopy();
        ObjectNode rule = (ObjectNode) root.withArray("rules").get(index);
        switch (defect) {
            case 0 -> rule.put("extra", "x");
            case 1 -> rule.remove("methods");
            case 2 -> rule.putArray("paths");
            case 3 -> rule.put("caller", "");
            case 4 -> rule.putArray("methods").add("get");
            case 5 -> root.put("version", 3);
            case 6 -> root.put("unknown", true);
            default -> rule.putArray("paths").add(7);
        }
        return JSON.writeValueAsString(root);
    }

    private static ObjectNode render(List<RefRule> rules, int version) {
        ObjectNode root = JSON.createObjectNode();
        root.put("version", version);
        ArrayNode arr = root.putArray("rules");
        for (RefRule r : rules) {
            ObjectNode o = arr.addObject();
            o.put("caller", r.caller);
            if (version == 1) {
                r.paths.forEach(o.putArray("allow")::add);
            } else {
                o.put("callee", r.callee);
                r.methods.forEach(o.putArray("methods")::add);
                r.paths.forEach(o.putArray("paths")::add);
            }
        }
        return root;
    }

    /** A value from the list, a prefix of one ending in "*", or "*". */
    private static String pattern(FuzzedDataProvider in, String[] values) {
        String v = pick(in, values);
        return switch (in.consumeInt(0, 3)) {
            case 0 -> "*";
            case 1 -> v.substring(0, in.consumeInt(0, v.length())) + "*";
            default -> v;
        };
    }

    private static List<String> patterns(FuzzedDataProvider in, String[] values) {
        List<String> out = new ArrayList<>();
        for (int n = in.consumeInt(1, 3); n > 0; n--) {
            out.add(pattern(in, values));
        }
        return out;
    }

    private static List<String> methods(FuzzedDataProvider in) {
        List<String> out = new ArrayList<>();
        for (int n = in.consumeInt(1, 3); n > 0; n--) {
            out.add(in.consumeInt(0, 4) == 0 ? "*" : pick(in, METHODS));
        }
        return out;
    }

    private static String pick(FuzzedDataProvider in, String[] values) {
        return values[in.consumeInt(0, values.length - 1)];
    }

    private record RefRule(String caller, String callee, List<String> methods, List<String> paths) {
    }
}
