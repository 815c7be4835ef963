package zt.serviceb.tls;

import java.net.SocketTimeoutException;
import javax.net.ssl.SSLHandshakeException;

/**
 * Maps an exception out of {@code startHandshake()} to the contract reason and the details
 * worth logging. JSSE keeps our {@link SvidRejectedException} as a cause; everything else is
 * recognised from the JDK's exception types and, for a missing client certificate, its message
 * (JSSE does not call the trust manager when the client sends an empty Certificate message).
 */
public record HandshakeFailure(RejectReason reason, String detail, String peerSpiffeId, String peerSerial) {
    /** The JDK's text for an empty client Certificate message under needClientAuth (TLS 1.2 and 1.3). */
    private static final String EMPTY_CLIENT_CHAIN = "Empty client certificate chain";

    public static HandshakeFailure classify(Throwable error, boolean deadlinePassed) {
        for (Throwable t = error; t != null; t = t.getCause()) {
            if (t instanceof SvidRejectedException r) {
                return new HandshakeFailure(r.reason(), r.detail(), r.peerSpiffeId(), r.peerSerial());
            }
        }
        String detail = String.valueOf(error.getMessage());
        if (deadlinePassed) {
            return new HandshakeFailure(RejectReason.TIMEOUT, "handshake not finished within the deadline: "
                    + detail, null, null);
        }
        for (Throwable t = error; t != null; t = t.getCause()) {
            if (t instanceof SocketTimeoutException) {
                return new HandshakeFailure(RejectReason.TIMEOUT, detail, null, null);
            }
            if (t instanceof SSLHandshakeException && String.valueOf(t.getMessage()).contains(EMPTY_CLIENT_CHAIN)) {
                return new HandshakeFailure(RejectReason.NO_CLIENT_CERT, t.getMessage(), null, null);
            }
        }
        return new HandshakeFailure(RejectReason.PROTOCOL, error.getClass().getSimpleName() + ": " + detail,
                null, null);
    }
}
