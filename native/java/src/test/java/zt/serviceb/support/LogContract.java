package zt.serviceb.support;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * CONTRACT L's rules for the fields service-b writes, checked in Java without the schema file:
 * every line a test's in-process service writes goes through it ({@link CapturedLog}), and
 * {@code LogSchemaShould} applies it beside the JSON Schema to the real process's lines.
 */
public final class LogContract {
    private static final Pattern SERIAL = Pattern.compile("0|[1-9a-f][0-9a-f]*");
    private static final Pattern TS = Pattern.compile("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z");
    private static final Pattern TIME = Pattern.compile("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?Z");

    private LogContract() {
    }

    /** The contract's rules for the fields service-b writes, checked without the schema. */
    public static List<String> errors(JsonNode l, String component) {
        List<String> out = new ArrayList<>();
        if (!l.path("ts").isTextual() || !TS.matcher(l.get("ts").asText()).matches()) {
            out.add("ts");
        }
        if (!List.of("debug", "info", "warn", "error").contains(l.path("level").asText())) {
            out.add("level");
        }
        if (!component.equals(l.path("component").asText()) || l.has("service")) {
            out.add("component");
        }
        if (!l.path("event").asText().matches("[a-z][a-z0-9_]*")) {
            out.add("event");
        }
        for (String k : List.of("serial", "old_serial", "new_serial", "peer_serial")) {
            if (l.has(k) && !l.get(k).isNull() && !(l.get(k).isTextual() && SERIAL.matcher(l.get(k).asText()).matches())) {
                out.add(k);
            }
        }
        for (String k : List.of("spiffe_id", "peer_spiffe_id", "caller", "callee", "peer")) {
            if (l.has(k) && !l.get(k).isNull() && !l.get(k).asText().startsWith("spiffe://")) {
                out.add(k);
            }
        }
        for (String k : List.of("crl_number", "entries", "status", "port", "metrics_port", "pid")) {
            if (l.has(k) && !l.get(k).isNull() && !l.get(k).isIntegralNumber()) {
                out.add(k);
            }
        }
        for (String k : List.of("not_after", "next_update")) {
            if (l.has(k) && !l.get(k).isNull() && !TIME.matcher(l.get(k).asText()).matches()) {
                out.add(k);
            }
        }
        if (l.has("duration_ms") && !(l.get("duration_ms").isNumber() && l.get("duration_ms").asDouble() >= 0)) {
            out.add("duration_ms");
        }
        if (l.has("peer_addr") && !l.get("peer_addr").asText().matches("\\S+:\\d{1,5}")) {
            out.add("peer_addr");
        }
        List<String> required = switch (l.path("event").asText()) {
            case "rotation" -> List.of("old_serial", "new_serial");
            case "handshake_rejected" -> List.of("reason", "peer_addr");
            case "policy_denied" -> List.of("caller", "callee", "method", "path");
            default -> List.of();
        };
        for (String k : required) {
            if (!l.has(k)) {
                out.add("missing " + k);
            }
        }
        return out;
    }
}
