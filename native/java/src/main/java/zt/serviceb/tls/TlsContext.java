package zt.serviceb.tls;

import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.Collections;
import javax.net.ssl.KeyManager;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSessionContext;
import javax.net.ssl.TrustManager;

import zt.serviceb.identity.IdentityMaterial;

/**
 * One SSLContext for the life of the process, built over the swappable managers. A reload swaps
 * the managers' contents and then invalidates both session caches, so no new connection resumes
 * a session made under the old identity, bundle or CRL. Established connections are untouched.
 */
public final class TlsContext {
    /** TLS 1.2 and 1.3 only (contracts.md 5). */
    public static final String[] PROTOCOLS = {"TLSv1.3", "TLSv1.2"};
    /**
     * Without this, the JDK's server resumes from stateless tickets that no cache invalidation
     * can reach; stateful resumption is cleared by {@link #invalidateSessions()}.
     */
    public static final String STATELESS_TICKETS_PROPERTY = "jdk.tls.server.enableSessionTicketExtension";

    private final SSLContext context;
    private final SwappableKeyManager keyManager;
    private final SwappableTrustManager trustManager;

    public TlsContext(IdentityMaterial identity, SvidVerifier verifier) throws GeneralSecurityException {
        System.setProperty(STATELESS_TICKETS_PROPERTY, "false");
        keyManager = new SwappableKeyManager(identity);
        trustManager = new SwappableTrustManager(verifier);
        context = SSLContext.getInstance("TLS");
        context.init(new KeyManager[] {keyManager}, new TrustManager[] {trustManager}, new SecureRandom());
    }

    public SSLContext context() {
        return context;
    }

    public SvidVerifier verifier() {
        return trustManager.current();
    }

    /** New identity and the verifier built for its bundle, then a fresh session cache. */
    public void swap(IdentityMaterial identity, SvidVerifier verifier) {
        trustManager.swap(verifier);
        keyManager.swap(identity);
        invalidateSessions();
    }

    /** A new verifier alone (a new CRL), then a fresh session cache. */
    public void swap(SvidVerifier verifier) {
        trustManager.swap(verifier);
        invalidateSessions();
    }

    public void invalidateSessions() {
        invalidate(context.getServerSessionContext());
        invalidate(context.getClientSessionContext());
    }

    private static void invalidate(SSLSessionContext sessions) {
        for (byte[] id : Collections.list(sessions.getIds())) {
            SSLSession s = sessions.getSession(id);
            if (s != null) {
                s.invalidate();
            }
        }
    }

    /** Parameters shared by both directions: protocols; no endpoint identification (SPIFFE instead). */
    public SSLParameters parameters(boolean server) {
        SSLParameters p = context.getDefaultSSLParameters();
        p.setProtocols(PROTOCOLS);
        p.setEndpointIdentificationAlgorithm(null);
        if (server) {
            p.setNeedClientAuth(true);
        }
        return p;
    }
}
