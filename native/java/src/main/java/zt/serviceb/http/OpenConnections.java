package zt.serviceb.http;

import java.net.Socket;
import java.security.cert.X509Certificate;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLSocket;

import zt.serviceb.observe.JsonLog;
import zt.serviceb.observe.Metrics;
import zt.serviceb.revocation.CrlIndex;

/**
 * The established inbound connections (issue 18), so that a revocation or an expiry also ends
 * connections that are already open: on each newly loaded CRL, {@link #endRevoked} looks every
 * connection's peer chain up in the CRL index (one hash lookup per certificate); a timer per
 * connection fires at its peer's notAfter, and {@link HttpConnection} checks the expiry again
 * at every request. Each ending is logged once ({@code connection_closed}) and counted
 * ({@code mtls_connections_closed_total{reason}}).
 */
public final class OpenConnections {
    public static final String REVOKED = "revoked";
    public static final String EXPIRED = "expired";
    /** The timer fires this long after notAfter, so that "now is after notAfter" holds when it runs. */
    private static final Duration TIMER_SLACK = Duration.ofMillis(5);

    private final Set<OpenConnection> open = ConcurrentHashMap.newKeySet();
    private final Metrics metrics;
    private final JsonLog log;
    private final Clock clock;
    private final ScheduledExecutorService timer;

    public OpenConnections(Metrics metrics, JsonLog log, Clock clock, ScheduledExecutorService timer) {
        this.metrics = metrics;
        this.log = log;
        this.clock = clock;
        this.timer = timer;
    }

    /** A connection whose handshake just completed; its expiry timer starts now. */
    public OpenConnection register(Socket raw, SSLSocket socket, Peer peer, List<X509Certificate> chain) {
        OpenConnection c = new OpenConnection(raw, socket, peer, chain);
        open.add(c);
        if (!c.notAfter().equals(Instant.MAX)) {
            long delayMs = Math.max(0, Duration.between(clock.instant(), c.notAfter()).plus(TIMER_SLACK).toMillis());
            try {
                c.expiryTimer(timer.schedule(() -> end(c, EXPIRED), delayMs, TimeUnit.MILLISECONDS));
            } catch (RejectedExecutionException e) {
                // shutting down: the per-request check still applies
            }
        }
        return c;
    }

    /** The connection is gone (its thread is done with it). */
    public void remove(OpenConnection c) {
        c.cancelExpiryTimer();
        open.remove(c);
    }

    public int size() {
        return open.size();
    }

    /**
     * Ends every open connection whose peer chain has a certificate on {@code crl}: idle ones at
     * once, busy ones after the response in flight. Returns how many were ended.
     */
    public int endRevoked(CrlIndex crl) {
        long start = System.nanoTime();
        int checked = 0;
        int ended = 0;
        for (OpenConnection c : open) {
            checked++;
            if (c.isRevokedBy(crl) && end(c, REVOKED)) {
                ended++;
            }
        }
        log.debug("connections_checked", "open", checked, "ended", ended, "crl_entries", crl.entries(),
                "duration_ms", (System.nanoTime() - start) / 1e6);
        return ended;
    }

    /** Decides to end {@code c}; logs and counts when this call is the one that decided. */
    boolean end(OpenConnection c, String reason) {
        OpenConnection.Ending how = c.end(reason);
        if (how == null) {
            return false;
        }
        closed(c, reason, how);
        return true;
    }

    /** The request on {@code c} found the peer expired (its answer is 401, then close). */
    void expiredAtRequest(OpenConnection c) {
        closed(c, EXPIRED, OpenConnection.Ending.AT_REQUEST);
    }

    private void closed(OpenConnection c, String reason, OpenConnection.Ending how) {
        metrics.connectionClosed(reason);
        Peer p = c.peer();
        log.info("connection_closed", "reason", reason, "peer", p.spiffeId(), "peer_serial", p.serial(),
                "peer_addr", p.address(), "when", how.label, "peer_not_after",
                c.notAfter().equals(Instant.MAX) ? null : c.notAfter().toString());
    }

    public Clock clock() {
        return clock;
    }
}
