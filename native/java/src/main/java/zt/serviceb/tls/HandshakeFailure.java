package zt.serviceb.tls;

import java.net.SocketTimeoutException;
import java.security.cert.CertificateParsingException;
import javax.net.ssl.SSLHandshakeException;

/**
 * Maps an exception out of {@code startHandshake()} to the contract reason and the details
 * worth logging. JSSE keeps our {@link SvidRejectedException} as a cause; everything else is
 * recognised from the JDK's exception types and, for a missing client certificate, its message
 * (JSSE does not call the trust manager when the client sends an empty Certificate message).
 *
 * <p>The JDK refuses, while parsing the Certificate message and so before the trust manager
 * runs, a certificate with an empty Subject unless its subjectAltName extension is present,
 * non-empty and critical (RFC 5280 4.1.2.6). For a leaf that breaks an X509-SVID rule (3.1
 * with a critical SAN; 2 without a URI SAN), so it counts as {@code bad_spiffe_id}, recognised
 * by the JDK's message like the empty chain; its serial and SPIFFE ID are unknown.
 */
public record HandshakeFailure(RejectReason reason, String detail, String peerSpiffeId, String peerSerial) {
    /** The JDK's text for an empty client Certificate message under needClientAuth (TLS 1.2 and 1.3). */
    private static final String EMPTY_CLIENT_CHAIN = "Empty client certificate chain";
    /** The JDK's prefix for a certificate with an empty Subject and no critical, non-empty SAN. */
    private static final String INCOMPLETE_CERTIFICATE = "X.509 Certificate is incomplete";

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
            if (t instanceof CertificateParsingException
                    && String.valueOf(t.getMessage()).startsWith(INCOMPLETE_CERTIFICATE)) {
                return new HandshakeFailure(RejectReason.BAD_SPIFFE_ID, t.getMessage()
                        + " (X509-SVID 3.1; RFC 5280 4.1.2.6)", null, null);
            }
        }
        return new HandshakeFailure(RejectReason.PROTOCOL, error.getClass().getSimpleName() + ": " + detail,
                null, null);
    }
}
