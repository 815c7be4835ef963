package zt.serviceb.http;

import java.io.IOException;
import java.math.BigInteger;
import java.net.Socket;
import java.security.cert.X509Certificate;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.ScheduledFuture;
import javax.net.ssl.SSLSocket;
import javax.security.auth.x500.X500Principal;

import zt.serviceb.revocation.CrlIndex;

/**
 * One established inbound connection as issue 18 needs it: who the peer is (its chain, for a
 * lookup in a newly loaded CRL, and the earliest notAfter of that chain) and whether a request
 * is in flight. TLS checks the peer only at the handshake; this record lets the service end the
 * connection later, when the peer is revoked or its certificate expires.
 *
 * <p>Ending is decided once ({@link #end}): an idle connection is aborted at once (close_notify,
 * then the socket is closed, which also wakes the connection's thread blocked in its read); a
 * busy one is left to finish writing the response in flight, and its thread closes it right
 * after ({@link #endRequest}). A request that arrives after the decision is not served.
 */
public final class OpenConnection {
    /** What {@link #beginRequest} decided. */
    public enum Start {
        /** Serve the request. */
        SERVE,
        /** The peer's certificate has expired: answer 401 and close. */
        EXPIRED,
        /** The connection was already ended: close without serving. */
        ENDED
    }

    private final Socket raw;
    private final SSLSocket socket;
    private final Peer peer;
    /** The peer chain's (issuer, serial) pairs, issuers already hashed: see {@link CrlIndex#isRevoked(X500Principal, BigInteger)}. */
    private final X500Principal[] issuers;
    private final BigInteger[] serials;
    private final Instant notAfter;
    private boolean busy;
    private String endReason;
    private ScheduledFuture<?> expiryTimer;

    public OpenConnection(Socket raw, SSLSocket socket, Peer peer, List<X509Certificate> chain) {
        this.raw = raw;
        this.socket = socket;
        this.peer = peer;
        this.issuers = new X500Principal[chain.size()];
        this.serials = new BigInteger[chain.size()];
        Instant earliest = null;
        for (int i = 0; i < chain.size(); i++) {
            X509Certificate c = chain.get(i);
            issuers[i] = c.getIssuerX500Principal();
            // Canonicalises the name now, on the connection's own thread, not in the reload's loop.
            issuers[i].hashCode();
            serials[i] = c.getSerialNumber();
            Instant n = c.getNotAfter().toInstant();
            earliest = earliest == null || n.isBefore(earliest) ? n : earliest;
        }
        this.notAfter = earliest == null ? Instant.MAX : earliest;
    }

    public Peer peer() {
        return peer;
    }

    /** The earliest notAfter of the peer's chain: after it, the connection is not served. */
    public Instant notAfter() {
        return notAfter;
    }

    /** One hash lookup per certificate of the peer's chain. */
    public boolean isRevokedBy(CrlIndex crl) {
        for (int i = 0; i < issuers.length; i++) {
            if (crl.isRevoked(issuers[i], serials[i])) {
                return true;
            }
        }
        return false;
    }

    synchronized void expiryTimer(ScheduledFuture<?> timer) {
        this.expiryTimer = timer;
    }

    synchronized void cancelExpiryTimer() {
        if (expiryTimer != null) {
            expiryTimer.cancel(false);
        }
    }

    /** Called with a complete request head, before handling it. */
    synchronized Start beginRequest(Instant now) {
        if (endReason != null) {
            return Start.ENDED;
        }
        if (now.isAfter(notAfter)) {
            endReason = OpenConnections.EXPIRED;
            return Start.EXPIRED;
        }
        busy = true;
        return Start.SERVE;
    }

    /** Whether the connection has been ended (it closes after the response in flight). */
    synchronized boolean isEnding() {
        return endReason != null;
    }

    /** Called after the response was written; non-null: the connection was ended meanwhile, close it now. */
    synchronized String endRequest() {
        busy = false;
        return endReason;
    }

    /**
     * Decides to end the connection for {@code reason}: aborts it now when idle, else leaves it
     * to {@link #endRequest}. Returns how it ends, or null when that was decided before.
     */
    synchronized Ending end(String reason) {
        if (endReason != null) {
            return null;
        }
        endReason = reason;
        if (!busy) {
            abort();
            return Ending.IDLE;
        }
        return Ending.AFTER_RESPONSE;
    }

    /** How an ended connection was closed, for the log. */
    enum Ending {
        IDLE("idle"), AFTER_RESPONSE("after_response"), AT_REQUEST("at_request");

        final String label;

        Ending(String label) {
            this.label = label;
        }
    }

    /** Best-effort close_notify, then close the socket (which wakes the thread blocked reading it). */
    private void abort() {
        try {
            socket.shutdownOutput();
        } catch (IOException | RuntimeException e) {
            // the peer may be gone already; closing below is what matters
        }
        try {
            raw.close();
        } catch (IOException e) {
            // already closed
        }
    }
}
