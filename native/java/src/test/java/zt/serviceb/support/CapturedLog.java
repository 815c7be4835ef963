package zt.serviceb.support;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

import zt.serviceb.observe.JsonLog;

/** A JsonLog sink that keeps records, so tests can wait for the event that proves a behaviour. */
public final class CapturedLog implements JsonLog.Sink {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final List<Map<String, Object>> records = new ArrayList<>();
    /** Lines that broke CONTRACT L's field rules ({@link LogContract}); RunningService fails on any. */
    private final List<String> violations = new ArrayList<>();
    private final boolean echo = Boolean.getBoolean("zt.test.echoLogs");
    private String component;

    public JsonLog log(String component) {
        this.component = component;
        return new JsonLog(component, Clock.systemUTC(), this);
    }

    @Override
    public synchronized void write(Map<String, Object> record, String line) {
        try {
            List<String> errs = LogContract.errors(JSON.readTree(line), component);
            if (!errs.isEmpty()) {
                violations.add(errs + " in " + line);
            }
        } catch (IOException e) {
            violations.add("not JSON: " + line);
        }
        records.add(record);
        if (echo) {
            System.err.println(line);
        }
        notifyAll();
    }

    public synchronized List<String> violations() {
        return new ArrayList<>(violations);
    }

    public synchronized List<Map<String, Object>> events(String event) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (Map<String, Object> r : records) {
            if (event.equals(r.get("event"))) {
                out.add(r);
            }
        }
        return out;
    }

    /** Waits for a record of {@code event} matching {@code match}; fails saying what it waited for. */
    public synchronized Map<String, Object> await(String event, Predicate<Map<String, Object>> match,
                                                  Duration timeout) {
        return awaitAfter(0, event, match, timeout);
    }

    /**
     * How many records there are now: a test that provokes the same event twice passes this to
     * {@link #awaitAfter}, so the second wait cannot be answered by the first event's record.
     */
    public synchronized int mark() {
        return records.size();
    }

    /** {@link #await}, among the records written after {@code mark} (from {@link #mark()}). */
    public synchronized Map<String, Object> awaitAfter(int mark, String event, Predicate<Map<String, Object>> match,
                                                       Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            for (Map<String, Object> r : records.subList(Math.min(mark, records.size()), records.size())) {
                if (event.equals(r.get("event")) && match.test(r)) {
                    return r;
                }
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new AssertionError("no '" + event + "' log event matched within " + timeout
                        + "; events so far: " + records);
            }
            try {
                wait(Math.max(1, left / 1_000_000));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted while waiting for " + event);
            }
        }
    }

    public Map<String, Object> await(String event, Predicate<Map<String, Object>> match) {
        return await(event, match, Duration.ofSeconds(10));
    }

    /** Waits for a {@code handshake_rejected} with this reason. */
    public Map<String, Object> awaitRejection(String reason) {
        return await("handshake_rejected", r -> reason.equals(r.get("reason")));
    }
}
