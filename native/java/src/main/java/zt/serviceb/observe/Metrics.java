package zt.serviceb.observe;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.Gauge;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.IOException;
import java.io.OutputStream;
import java.time.Clock;
import java.time.Instant;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * The contract's metrics (contracts.md 6), same names and labels as service-a, in a private
 * registry (no JVM or process collectors, so the page holds exactly the contract's families).
 */
public final class Metrics {
    public static final String CONTENT_TYPE = PrometheusTextFormatWriter.CONTENT_TYPE;

    private final PrometheusRegistry registry = new PrometheusRegistry();
    private final Counter handshakes = Counter.builder().name("mtls_handshakes_total")
            .help("Inbound TLS handshakes by result").labelNames("result").register(registry);
    private final Counter handshakeFailures = Counter.builder().name("mtls_handshake_failures_total")
            .help("Inbound TLS handshake failures by reason").labelNames("reason").register(registry);
    private final Gauge certNotAfter = Gauge.builder().name("mtls_cert_not_after_timestamp_seconds")
            .help("notAfter of the current leaf certificate, Unix time").register(registry);
    private final Gauge certInfo = Gauge.builder().name("mtls_cert_info")
            .help("The current leaf certificate (always 1)").labelNames("serial", "spiffe_id").register(registry);
    private final Counter reloads = Counter.builder().name("mtls_reloads_total")
            .help("Reload attempts by result").labelNames("result").register(registry);
    private final Counter rotations = Counter.builder().name("mtls_rotation_total")
            .help("Identity changes: reloads that changed the served leaf's serial (success), reloads that saw "
                    + "a new generation and failed (failure)").labelNames("result").register(registry);
    private final Counter connectionsClosed = Counter.builder().name("mtls_connections_closed_total")
            .help("Open inbound connections ended because the peer's certificate was revoked or expired")
            .labelNames("reason").register(registry);
    private final Gauge crlEntries = Gauge.builder().name("mtls_crl_entries")
            .help("Revoked serials in the loaded CRL(s)").register(registry);
    private final Gauge crlNextUpdate = Gauge.builder().name("mtls_crl_next_update_seconds")
            .help("Earliest nextUpdate of the loaded CRL(s), Unix time; 0 when none").register(registry);
    private final Counter policyDenials = Counter.builder().name("mtls_policy_denials_total")
            .help("Requests refused with 403 by policy").register(registry);
    private final Counter outboundCalls = Counter.builder().name("mtls_outbound_calls_total")
            .help("/call upstream calls by result").labelNames("result").register(registry);
    private final Counter httpRequests = Counter.builder().name("http_requests_total")
            .help("HTTP requests by route and status code").labelNames("path", "code").register(registry);
    private String[] certLabels;
    /** The served leaf's notAfter; {@code mtls_cert_expiry_seconds} is computed from it at each scrape. */
    private volatile Instant notAfter;

    /** The reasons of {@code mtls_connections_closed_total}, exported at 0 from the start. */
    public static final List<String> CLOSE_REASONS = List.of("revoked", "expired");

    /**
     * {@code stale} is read at each scrape: a CRL goes stale by the clock, without any event.
     * Likewise the time left until the leaf's notAfter is taken from {@code clock} at each
     * scrape, so it counts down between rotations (and goes negative once expired).
     * {@code failureReasons} are exported at 0 from the start, so a dashboard sees every series.
     */
    public Metrics(Clock clock, BooleanSupplier stale, List<String> failureReasons) {
        GaugeWithCallback.builder().name("mtls_crl_stale").help("1 when a loaded CRL is past nextUpdate")
                .callback(cb -> cb.call(stale.getAsBoolean() ? 1 : 0)).register(registry);
        GaugeWithCallback.builder().name("mtls_cert_expiry_seconds")
                .help("Seconds until notAfter of the current leaf certificate, at scrape time (negative once expired)")
                .callback(cb -> {
                    Instant t = notAfter;
                    if (t != null) {
                        cb.call(secondsUntil(t, clock.instant()));
                    }
                }).register(registry);
        for (String r : new String[] {"success", "failure"}) {
            handshakes.labelValues(r);
            reloads.labelValues(r);
            rotations.labelValues(r);
            outboundCalls.labelValues(r);
        }
        for (String reason : CLOSE_REASONS) {
            connectionsClosed.labelValues(reason);
        }
        for (String reason : failureReasons) {
            handshakeFailures.labelValues(reason);
        }
    }

    public void handshakeSucceeded() {
        handshakes.labelValues("success").inc();
    }

    public void handshakeFailed(String reason) {
        handshakes.labelValues("failure").inc();
        handshakeFailures.labelValues(reason).inc();
    }

    public synchronized void identity(String serial, String spiffeId, Instant notAfter) {
        this.notAfter = notAfter;
        certNotAfter.set(notAfter.getEpochSecond());
        if (certLabels != null) {
            certInfo.remove(certLabels);
        }
        certLabels = new String[] {serial, spiffeId};
        certInfo.labelValues(certLabels).set(1);
    }

    public void reload(boolean success) {
        reloads.labelValues(success ? "success" : "failure").inc();
    }

    /** {@code success}: a reload changed the served serial; failure: a new generation was seen and refused. */
    public void rotation(boolean success) {
        rotations.labelValues(success ? "success" : "failure").inc();
    }

    public void connectionClosed(String reason) {
        connectionsClosed.labelValues(reason).inc();
    }

    public void crl(int entries, Instant nextUpdate) {
        crlEntries.set(entries);
        crlNextUpdate.set(nextUpdate == null ? 0 : nextUpdate.getEpochSecond());
    }

    public void policyDenied() {
        policyDenials.inc();
    }

    public void outboundCall(boolean success) {
        outboundCalls.labelValues(success ? "success" : "failure").inc();
    }

    public void httpRequest(String route, int code) {
        httpRequests.labelValues(route, Integer.toString(code)).inc();
    }

    public void write(OutputStream out) throws IOException {
        PrometheusTextFormatWriter.create().write(out, registry.scrape());
    }

    /** {@code mtls_cert_expiry_seconds}: seconds from {@code now} to {@code notAfter}, millisecond precision. */
    static double secondsUntil(Instant notAfter, Instant now) {
        return (notAfter.toEpochMilli() - now.toEpochMilli()) / 1000.0;
    }

    /** For tests and the start line: the current value of a counter sample. */
    public double handshakeFailures(String reason) {
        return handshakeFailures.labelValues(reason).get();
    }

    public double reloads(String result) {
        return reloads.labelValues(result).get();
    }

    public double rotations(String result) {
        return rotations.labelValues(result).get();
    }

    public double policyDenials() {
        return policyDenials.get();
    }

    public double connectionsClosed(String reason) {
        return connectionsClosed.labelValues(reason).get();
    }
}
