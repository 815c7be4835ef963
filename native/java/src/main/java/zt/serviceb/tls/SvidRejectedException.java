package zt.serviceb.tls;

import java.security.cert.CertificateException;

/**
 * A peer's certificate chain was refused. Thrown from the trust manager, so JSSE aborts the
 * handshake and keeps this as the cause; the accept loop reads the reason back for the metric
 * and the {@code handshake_rejected} log line.
 */
public final class SvidRejectedException extends CertificateException {
    private static final long serialVersionUID = 1L;

    private final RejectReason reason;
    private final String peerSpiffeId;
    private final String peerSerial;

    public SvidRejectedException(RejectReason reason, String detail, String peerSpiffeId, String peerSerial,
                                 Throwable cause) {
        super(reason.label() + ": " + detail, cause);
        this.reason = reason;
        this.peerSpiffeId = peerSpiffeId;
        this.peerSerial = peerSerial;
    }

    public RejectReason reason() {
        return reason;
    }

    /** The detail without the reason prefix. */
    public String detail() {
        String m = getMessage();
        return m.substring(reason.label().length() + 2);
    }

    /** The single URI SAN the peer claimed, when there was exactly one; else null. */
    public String peerSpiffeId() {
        return peerSpiffeId;
    }

    public String peerSerial() {
        return peerSerial;
    }
}
