package zt.serviceb.tls;

import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.function.Supplier;
import javax.net.ssl.KeyManager;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSessionContext;
import javax.net.ssl.TrustManager;

import zt.serviceb.identity.IdentityMaterial;

/**
 * One SSLContext for the life of the process, built over key and trust managers that read the
 * service's current snapshot (identity, verifier). A reload publishes a new snapshot with one
 * reference swap and then calls {@link #invalidateSessions()}, so no new connection resumes a
 * session made under the old identity, bundle or CRL. Established connections are untouched.
 */
public final class TlsContext {
    /** TLS 1.2 and 1.3 only (contracts.md 5). */
    public static final String[] PROTOCOLS = {"TLSv1.3", "TLSv1.2"};
    /**
     * AEAD suites only (issue 9): the TLS 1.3 suites (all AEAD) and, for TLS 1.2, ECDHE with
     * AES-GCM or ChaCha20-Poly1305. No CBC (MAC-then-encrypt, Lucky 13 / padding oracles), no
     * static RSA key exchange (no forward secrecy). The same list as RFC 9325 section 4.2 recommends.
     */
    public static final List<String> CIPHER_SUITES = List.of(
            "TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256");
    /**
     * Without this, the JDK's server resumes from stateless tickets that no cache invalidation
     * can reach; stateful resumption is cleared by {@link #invalidateSessions()}.
     */
    public static final String STATELESS_TICKETS_PROPERTY = "jdk.tls.server.enableSessionTicketExtension";
    /**
     * The JDK's server accepts a TLS 1.2 client's renegotiation by default (a client can make the
     * server redo the expensive half of a handshake as often as it likes on one connection, and
     * renegotiation has a history of attacks: CVE-2009-3555, CVE-2011-1473). With this set the
     * server answers a renegotiating ClientHello with a fatal handshake_failure alert. TLS 1.3
     * has no renegotiation. The JDK reads it once, when its server handshake class is first
     * initialised, so it must be set before the first inbound handshake of the process.
     */
    public static final String REJECT_CLIENT_RENEGOTIATION_PROPERTY = "jdk.tls.rejectClientInitiatedRenegotiation";

    private final SSLContext context;
    private final String[] cipherSuites;

    /** Sets the process-wide JSSE properties above; call before any TLS is done (Main does). */
    public static void configureJsse() {
        System.setProperty(STATELESS_TICKETS_PROPERTY, "false");
        System.setProperty(REJECT_CLIENT_RENEGOTIATION_PROPERTY, "true");
    }

    /**
     * {@code identity} and {@code verifier} are read on every handshake: they return the parts
     * of the one current snapshot, so the key and trust managers can never disagree about which
     * reload they belong to except for a handshake that straddles a swap.
     */
    public TlsContext(Supplier<IdentityMaterial> identity, Supplier<SvidVerifier> verifier)
            throws GeneralSecurityException {
        configureJsse();
        context = SSLContext.getInstance("TLS");
        context.init(new KeyManager[] {new SwappableKeyManager(identity)},
                new TrustManager[] {new SwappableTrustManager(verifier)}, new SecureRandom());
        Set<String> supported = Set.of(context.getSupportedSSLParameters().getCipherSuites());
        cipherSuites = CIPHER_SUITES.stream().filter(supported::contains).toArray(String[]::new);
        if (cipherSuites.length == 0) {
            throw new GeneralSecurityException("none of the AEAD cipher suites " + CIPHER_SUITES
                    + " is supported by this JDK");
        }
    }

    public SSLContext context() {
        return context;
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

    /**
     * Parameters shared by both directions: protocols, AEAD suites only, no endpoint
     * identification (SPIFFE instead); the server also requires a client certificate.
     */
    public SSLParameters parameters(boolean server) {
        SSLParameters p = context.getDefaultSSLParameters();
        p.setProtocols(PROTOCOLS);
        p.setCipherSuites(Arrays.copyOf(cipherSuites, cipherSuites.length));
        p.setEndpointIdentificationAlgorithm(null);
        if (server) {
            p.setNeedClientAuth(true);
        }
        return p;
    }
}
