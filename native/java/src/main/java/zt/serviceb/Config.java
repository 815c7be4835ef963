package zt.serviceb;

import java.nio.file.Path;
import java.time.Duration;

import zt.serviceb.identity.SpiffeId;
import zt.serviceb.revocation.StaleMode;

/**
 * The service's settings, immutable, one field per flag of contracts.md section 8.
 *
 * @param crl        the explicit {@code --crl}, or null: then {@code DIR/crl.pem} is used when present
 * @param reloadFile the explicit {@code --reload-file}, or null: then {@code DIR/reload.stamp}
 * @param noReload   {@code --no-reload}: never reload (no watch, no poll, SIGHUP ignored)
 */
public record Config(Path certDir, HostPort listen, HostPort metricsListen, Path policy, Path crl,
                     StaleMode crlStale, SpiffeId expectPeer, String name, Path pidFile,
                     Duration reloadInterval, int handshakeTimeoutMs, int idleTimeoutMs, int threads,
                     Path reloadFile, boolean noReload) {

    public static final String DEFAULT_NAME = "service-b";
    public static final String DEFAULT_CRL_FILE = "crl.pem";
    /** The file the agent touches after each write ({@code zt-agent --touch DIR/reload.stamp}). */
    public static final String DEFAULT_RELOAD_FILE = "reload.stamp";

    /**
     * Open connections allowed at once, per worker thread: each connection has its own thread
     * for its handshake and request reads (slow clients hold only that), and {@code --threads}
     * bounds the requests handled at once. 32 per worker gives 512 with the default 16.
     * Measured (JDK 17, this lab's 2-core VM): 512 connections held in their handshake took
     * the process from 27 to 540 threads and from 109 to 169 MB RSS (about 115 KiB each), and
     * the 513th was refused at once; 100 such connections delay a /hello by well under a second.
     */
    public static final int CONNECTIONS_PER_THREAD = 32;

    /** The cap on open connections; one more is refused before its handshake. */
    public int maxConnections() {
        return threads * CONNECTIONS_PER_THREAD;
    }

    /** The CRL file to watch: the explicit one, or {@code DIR/crl.pem}. */
    public Path crlPath() {
        return crl != null ? crl : certDir.resolve(DEFAULT_CRL_FILE);
    }

    /** The touched file whose change triggers a reload: the explicit one, or {@code DIR/reload.stamp}. */
    public Path reloadFilePath() {
        return reloadFile != null ? reloadFile : certDir.resolve(DEFAULT_RELOAD_FILE);
    }

    /** An explicit {@code --crl} must load at start; the implicit {@code DIR/crl.pem} may be absent. */
    public boolean crlRequired() {
        return crl != null;
    }

    public Config withListen(HostPort l, HostPort m) {
        return new Config(certDir, l, m, policy, crl, crlStale, expectPeer, name, pidFile, reloadInterval,
                handshakeTimeoutMs, idleTimeoutMs, threads, reloadFile, noReload);
    }
}
