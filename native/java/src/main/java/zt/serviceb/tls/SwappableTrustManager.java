package zt.serviceb.tls;

import java.net.Socket;
import java.security.cert.X509Certificate;
import java.util.function.Supplier;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedTrustManager;

/**
 * The trust manager of the one, stable SSLContext: it delegates to the {@link SvidVerifier}
 * (bundle + CRL index) of the service's current snapshot, read on every check; a reload swaps
 * the snapshot, never this object.
 *
 * <p>Being an X509ExtendedTrustManager, JSSE uses it as is (no wrapper adding hostname checks):
 * peers are identified by SPIFFE ID, never by host name. Both directions apply the same rules.
 */
public final class SwappableTrustManager extends X509ExtendedTrustManager {
    private final Supplier<SvidVerifier> current;

    public SwappableTrustManager(Supplier<SvidVerifier> current) {
        this.current = current;
    }

    private void check(X509Certificate[] chain) throws SvidRejectedException {
        current.get().verify(chain);
    }

    /**
     * A client whose certificate (or a CA of its path) is revoked gets the alert
     * {@code certificate_revoked}, as from OpenSSL (see {@link RevokedAlert}); the refusal is
     * then thrown as for every other reason, for the metric and the log line.
     */
    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket)
            throws SvidRejectedException {
        try {
            check(chain);
        } catch (SvidRejectedException e) {
            if (e.reason() == RejectReason.REVOKED) {
                RevokedAlert.send(socket, e.getMessage(), e);
            }
            throw e;
        }
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket)
            throws SvidRejectedException {
        check(chain);
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine)
            throws SvidRejectedException {
        check(chain);
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine)
            throws SvidRejectedException {
        check(chain);
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType) throws SvidRejectedException {
        check(chain);
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType) throws SvidRejectedException {
        check(chain);
    }

    /** The roots: sent as certificate_authorities in a TLS 1.2 CertificateRequest. */
    @Override
    public X509Certificate[] getAcceptedIssuers() {
        return current.get().bundle().roots().toArray(new X509Certificate[0]);
    }
}
