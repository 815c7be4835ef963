package zt.serviceb.observe;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.PrintStream;
import java.time.Clock;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One JSON object per line (contracts.md 7, the shared log schema of CONTRACT L):
 * {@code ts} (RFC 3339 UTC, milliseconds), {@code level}, {@code component} (the {@code --name}),
 * {@code event}, then the event's fields in the order given. The key is {@code component}, as in
 * every other zt component, so one schema and one query cover them all. Callers pass fields in
 * the schema's types (serials as lowercase hex, times as RFC 3339 Z, numbers as numbers) and
 * never pass secrets; the log has no way to tell a password from a serial.
 */
public final class JsonLog {
    private static final DateTimeFormatter TS = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")
            .withZone(ZoneOffset.UTC);
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Where finished records go: stderr in production, a list in tests. */
    public interface Sink {
        void write(Map<String, Object> record, String line);
    }

    private final String component;
    private final Clock clock;
    private final Sink sink;

    public JsonLog(String component, Clock clock, Sink sink) {
        this.component = component;
        this.clock = clock;
        this.sink = sink;
    }

    public static Sink stream(PrintStream out) {
        return (record, line) -> {
            synchronized (out) {
                out.println(line);
                out.flush();
            }
        };
    }

    public void debug(String event, Object... fields) {
        emit("debug", event, fields);
    }

    public void info(String event, Object... fields) {
        emit("info", event, fields);
    }

    public void warn(String event, Object... fields) {
        emit("warn", event, fields);
    }

    public void error(String event, Object... fields) {
        emit("error", event, fields);
    }

    /** {@code fields} alternate name, value; a null value is written as JSON null. */
    public void emit(String level, String event, Object... fields) {
        if (fields.length % 2 != 0) {
            throw new IllegalArgumentException("fields must be name/value pairs");
        }
        Map<String, Object> record = new LinkedHashMap<>();
        record.put("ts", TS.format(clock.instant().truncatedTo(ChronoUnit.MILLIS)));
        record.put("level", level);
        record.put("component", component);
        record.put("event", event);
        for (int i = 0; i < fields.length; i += 2) {
            record.put(String.valueOf(fields[i]), fields[i + 1]);
        }
        String line;
        try {
            line = JSON.writeValueAsString(record);
        } catch (JsonProcessingException e) {
            line = "{\"ts\":" + quote((String) record.get("ts")) + ",\"level\":\"error\",\"component\":"
                    + quote(component) + ",\"event\":\"log_failure\",\"reason\":" + quote(e.getMessage()) + "}";
        }
        sink.write(record, line);
    }

    private static String quote(String s) {
        try {
            return JSON.writeValueAsString(s);
        } catch (JsonProcessingException e) {
            return "\"?\"";
        }
    }
}
