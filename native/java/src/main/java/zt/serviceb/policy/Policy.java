package zt.serviceb.policy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Set;

import zt.serviceb.identity.MaterialException;

/**
 * Who may call which path (contracts.md 4). Deny by default: a request is allowed when some
 * rule's {@code caller} matches the caller's SPIFFE ID and one of its {@code allow} entries
 * matches the path. Matching is exact, or a prefix match when the pattern ends with {@code *}.
 * {@link #allowAll()} stands for "no --policy".
 */
public final class Policy {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Set<String> TOP_KEYS = Set.of("version", "rules");
    private static final Set<String> RULE_KEYS = Set.of("caller", "allow");

    private final List<Rule> rules;
    private final boolean allowAll;
    private final Path source;

    private Policy(List<Rule> rules, boolean allowAll, Path source) {
        this.rules = rules;
        this.allowAll = allowAll;
        this.source = source;
    }

    public static Policy allowAll() {
        return new Policy(List.of(), true, null);
    }

    public static Policy load(Path file) throws MaterialException {
        String text;
        try {
            text = Files.readString(file);
        } catch (IOException e) {
            throw new MaterialException("cannot read policy file " + file + ": " + e, e);
        }
        try {
            return parse(text, file);
        } catch (MaterialException e) {
            throw new MaterialException("policy " + file + ": " + e.getMessage(), e);
        }
    }

    static Policy parse(String text, Path source) throws MaterialException {
        JsonNode root;
        try {
            root = JSON.readTree(text);
        } catch (IOException e) {
            throw new MaterialException("not JSON: " + (e instanceof com.fasterxml.jackson.core.JsonProcessingException j ? j.getOriginalMessage() : e.getMessage()), e);
        }
        if (root == null || !root.isObject()) {
            throw new MaterialException("top level must be an object");
        }
        checkKeys(root, TOP_KEYS, "top-level");
        JsonNode version = root.get("version");
        if (version == null || !version.isInt() || version.intValue() != 1) {
            throw new MaterialException("\"version\" must be 1");
        }
        JsonNode rulesNode = root.get("rules");
        if (rulesNode == null || !rulesNode.isArray()) {
            throw new MaterialException("\"rules\" must be an array");
        }
        List<Rule> rules = new ArrayList<>();
        int i = 0;
        for (JsonNode r : rulesNode) {
            String where = "rules[" + i++ + "]";
            if (!r.isObject()) {
                throw new MaterialException(where + " must be an object");
            }
            checkKeys(r, RULE_KEYS, where);
            JsonNode caller = r.get("caller");
            if (caller == null || !caller.isTextual() || caller.textValue().isEmpty()) {
                throw new MaterialException(where + ".caller must be a non-empty string");
            }
            JsonNode allow = r.get("allow");
            if (allow == null || !allow.isArray()) {
                throw new MaterialException(where + ".allow must be an array of strings");
            }
            List<String> paths = new ArrayList<>();
            for (JsonNode p : allow) {
                if (!p.isTextual() || p.textValue().isEmpty()) {
                    throw new MaterialException(where + ".allow must hold non-empty strings");
                }
                paths.add(p.textValue());
            }
            rules.add(new Rule(caller.textValue(), List.copyOf(paths)));
        }
        return new Policy(List.copyOf(rules), false, source);
    }

    private static void checkKeys(JsonNode obj, Set<String> allowed, String where) throws MaterialException {
        for (Iterator<String> it = obj.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            if (!allowed.contains(k)) {
                throw new MaterialException("unknown " + where + " key \"" + k + "\"");
            }
        }
    }

    /** {@code path} is the request path without the query string. */
    public boolean isAllowed(String caller, String path) {
        if (allowAll) {
            return true;
        }
        for (Rule r : rules) {
            if (matches(r.caller, caller)) {
                for (String a : r.allow) {
                    if (matches(a, path)) {
                        return true;
                    }
                }
            }
        }
        return false;
    }

    /** Exact equality, or for a pattern ending in '*', a prefix match on what precedes it. */
    static boolean matches(String pattern, String value) {
        if (pattern.endsWith("*")) {
            return value.startsWith(pattern.substring(0, pattern.length() - 1));
        }
        return pattern.equals(value);
    }

    public Path source() {
        return source;
    }

    public int ruleCount() {
        return rules.size();
    }

    private record Rule(String caller, List<String> allow) {
    }
}
