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
import java.util.regex.Pattern;

import zt.serviceb.identity.MaterialException;

/**
 * Which caller may call which callee on which methods and paths (contracts.md 4; CONTRACT P).
 * Deny by default: a request is allowed when some rule matches the caller's SPIFFE ID, the
 * serving service's own SPIFFE ID (the callee), the method and the path. One file can then
 * serve the whole mesh: each service applies only the rules whose {@code callee} names it.
 *
 * <p>Version 2 rules have exactly {@code caller}, {@code callee}, {@code methods}, {@code paths}
 * (non-empty lists of non-empty strings). Version 1 rules ({@code caller}, {@code allow}) keep
 * their meaning: callee {@code *}, methods {@code *}, paths = {@code allow}. Caller, callee and
 * path patterns match exactly, or by prefix when they end in {@code *}; a method pattern is an
 * upper-case method name or {@code *}. {@link #allowAll()} stands for "no --policy".
 */
public final class Policy {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Set<String> TOP_KEYS = Set.of("version", "rules");
    private static final Set<String> V1_RULE_KEYS = Set.of("caller", "allow");
    private static final Set<String> V2_RULE_KEYS = Set.of("caller", "callee", "methods", "paths");
    private static final List<String> ANY = List.of("*");
    /** An upper-case HTTP method name (letters only, as service-a and contracts.md 4 say) or "*". */
    private static final Pattern METHOD = Pattern.compile("[A-Z]+|\\*");

    private final List<Rule> rules;
    private final boolean allowAll;
    private final Path source;
    private final int version;

    private Policy(List<Rule> rules, boolean allowAll, Path source, int version) {
        this.rules = rules;
        this.allowAll = allowAll;
        this.source = source;
        this.version = version;
    }

    public static Policy allowAll() {
        return new Policy(List.of(), true, null, 0);
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
            throw new MaterialException("not JSON: " + (e instanceof com.fasterxml.jackson.core.JsonProcessingException j
                    ? j.getOriginalMessage() : e.getMessage()), e);
        }
        if (root == null || !root.isObject()) {
            throw new MaterialException("top level must be an object");
        }
        checkKeys(root, TOP_KEYS, "top-level");
        JsonNode versionNode = root.get("version");
        if (versionNode == null || !versionNode.isInt() || (versionNode.intValue() != 1 && versionNode.intValue() != 2)) {
            throw new MaterialException("\"version\" must be 1 or 2");
        }
        int version = versionNode.intValue();
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
            rules.add(version == 1 ? v1Rule(r, where) : v2Rule(r, where));
        }
        return new Policy(List.copyOf(rules), false, source, version);
    }

    private static Rule v1Rule(JsonNode r, String where) throws MaterialException {
        checkKeys(r, V1_RULE_KEYS, where);
        String caller = string(r, "caller", where);
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
        return new Rule(caller, "*", ANY, List.copyOf(paths));
    }

    private static Rule v2Rule(JsonNode r, String where) throws MaterialException {
        checkKeys(r, V2_RULE_KEYS, where);
        for (String k : V2_RULE_KEYS) {
            if (!r.has(k)) {
                throw new MaterialException(where + " is missing \"" + k + "\" (a version 2 rule has caller, "
                        + "callee, methods, paths)");
            }
        }
        String caller = string(r, "caller", where);
        String callee = string(r, "callee", where);
        List<String> methods = strings(r, "methods", where);
        for (String m : methods) {
            if (!METHOD.matcher(m).matches()) {
                throw new MaterialException(where + ".methods: \"" + m + "\" is not an upper-case HTTP method or \"*\"");
            }
        }
        List<String> paths = strings(r, "paths", where);
        return new Rule(caller, callee, methods, paths);
    }

    private static String string(JsonNode r, String key, String where) throws MaterialException {
        JsonNode n = r.get(key);
        if (n == null || !n.isTextual() || n.textValue().isEmpty()) {
            throw new MaterialException(where + "." + key + " must be a non-empty string");
        }
        return n.textValue();
    }

    private static List<String> strings(JsonNode r, String key, String where) throws MaterialException {
        JsonNode n = r.get(key);
        if (n == null || !n.isArray() || n.isEmpty()) {
            throw new MaterialException(where + "." + key + " must be a non-empty array of strings");
        }
        List<String> out = new ArrayList<>();
        for (JsonNode e : n) {
            if (!e.isTextual() || e.textValue().isEmpty()) {
                throw new MaterialException(where + "." + key + " must hold non-empty strings");
            }
            out.add(e.textValue());
        }
        return List.copyOf(out);
    }

    private static void checkKeys(JsonNode obj, Set<String> allowed, String where) throws MaterialException {
        for (Iterator<String> it = obj.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            if (!allowed.contains(k)) {
                throw new MaterialException("unknown " + where + " key \"" + k + "\"");
            }
        }
    }

    /**
     * {@code callee} is the serving service's own SPIFFE ID; {@code path} is the request path
     * without the query string, compared raw (as the router routes it).
     */
    public boolean isAllowed(String caller, String callee, String method, String path) {
        if (allowAll) {
            return true;
        }
        for (Rule r : rules) {
            if (matches(r.caller, caller) && matches(r.callee, callee) && anyMatches(r.methods, method)
                    && anyMatches(r.paths, path)) {
                return true;
            }
        }
        return false;
    }

    private static boolean anyMatches(List<String> patterns, String value) {
        for (String p : patterns) {
            if (matches(p, value)) {
                return true;
            }
        }
        return false;
    }

    /** Exact equality, or for a pattern ending in '*', a prefix match on what precedes it. */
    static boolean matches(String pattern, String value) {
        if (value == null) {
            return false;
        }
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

    /** 1 or 2 for a loaded file; 0 for {@link #allowAll()}. */
    public int version() {
        return version;
    }

    private record Rule(String caller, String callee, List<String> methods, List<String> paths) {
    }
}
