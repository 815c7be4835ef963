package zt.serviceb;

import java.io.Closeable;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.time.Clock;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;

import zt.serviceb.http.HttpConnection;
import zt.serviceb.http.MtlsServer;
import zt.serviceb.http.OpenConnections;
import zt.serviceb.http.OutboundCaller;
import zt.serviceb.http.Router;
import zt.serviceb.identity.CertDirReader;
import zt.serviceb.identity.IdentityMaterial;
import zt.serviceb.identity.MaterialException;
import zt.serviceb.observe.JsonLog;
import zt.serviceb.observe.Metrics;
import zt.serviceb.observe.MetricsServer;
import zt.serviceb.policy.Policy;
import zt.serviceb.reload.FileStamp;
import zt.serviceb.reload.Reloader;
import zt.serviceb.revocation.CrlIndex;
import zt.serviceb.revocation.StaleCrlMonitor;
import zt.serviceb.tls.RejectReason;
import zt.serviceb.tls.RevokedAlert;
import zt.serviceb.tls.SvidVerifier;
import zt.serviceb.tls.TlsContext;

/**
 * The assembled service: loads and validates everything at start (or fails with exit code 1),
 * runs the mTLS listener, the metrics listener and the reloader, and owns the reload step.
 * Startable in-process (tests) as well as from {@link Main}.
 */
public final class ServiceB implements Closeable {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Config config;
    private final JsonLog log;
    private final Clock clock;
    private final CertDirReader reader;
    private final Metrics metrics;
    private final TlsContext tls;
    private final StaleCrlMonitor staleMonitor;
    /** The one current snapshot: the only thing a reload changes, with one {@code set}. */
    private final AtomicReference<ServiceState> state;
    private final ScheduledThreadPoolExecutor timer;
    private final MtlsServer server;
    private final MetricsServer metricsServer;
    private final Reloader reloader;

    // Reload bookkeeping, guarded by `this`: the sources of the last attempt (loaded or not).
    private ServiceState.Sources attempted;
    private boolean closed;

    /** Startup failed: the message is for the operator; the exit code is 1. */
    public static final class StartupException extends Exception {
        private static final long serialVersionUID = 1L;

        public StartupException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    private ServiceB(Config config, JsonLog log, Clock clock) throws StartupException {
        this.config = config;
        this.log = log;
        this.clock = clock;
        this.reader = new CertDirReader(config.certDir());
        this.staleMonitor = new StaleCrlMonitor(config.crlStale(), (next, mode) -> log.warn("crl_stale",
                "next_update", rfc3339(next), "mode", mode.flag()));
        try {
            Path gen = reader.resolveCurrent();
            // Stamps before reading: a file replaced in between differs at the next check.
            FileStamp crlStamp = FileStamp.of(config.crlPath());
            FileStamp policyStamp = FileStamp.of(config.policy());
            IdentityMaterial id = IdentityMaterial.validate(reader.readGeneration(gen), clock.instant());
            CrlIndex crl = config.crlRequired() || crlStamp.exists()
                    ? CrlIndex.load(config.crlPath(), id.caCertificates()) : CrlIndex.none();
            Policy p = config.policy() == null ? Policy.allowAll() : Policy.load(config.policy());
            ServiceState initial = new ServiceState(id, verifierFor(id, crl), p,
                    new ServiceState.Sources(gen, crlStamp, policyStamp));
            state = new AtomicReference<>(initial);
            attempted = initial.sources();
            tls = new TlsContext(() -> state.get().identity(), () -> state.get().verifier());
            metrics = new Metrics(clock, () -> state.get().crl().isStale(clock.instant()),
                    Arrays.stream(RejectReason.values()).map(RejectReason::label).toList());
            metrics.identity(id.serial(), id.spiffeId().toString(), id.notAfter());
            metrics.crl(crl.entries(), crl.nextUpdate());
            if (crl.isConfigured()) {
                logCrlLoaded(crl);
                staleMonitor.check(crl, clock.instant());
            }
        } catch (MaterialException e) {
            throw new StartupException(e.getMessage(), e);
        } catch (GeneralSecurityException e) {
            throw new StartupException("cannot build the TLS context: " + e.getMessage(), e);
        }

        AtomicInteger n = new AtomicInteger();
        ScheduledThreadPoolExecutor timers = new ScheduledThreadPoolExecutor(2, r -> {
            Thread t = new Thread(r, "service-timer-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
        // Every connection schedules two timers (its handshake watchdog, its peer's expiry) and
        // cancels them when done with them; without this, a cancelled task stays queued until its
        // delay runs out (the expiry one: the peer certificate's notAfter, hours away), so the
        // queue grew by one entry per connection and every schedule paid for the bigger heap
        // (issue 15: found in the handshake bench's profile).
        timers.setRemoveOnCancelPolicy(true);
        timer = timers;
        OutboundCaller caller = new OutboundCaller(tls, timer, config.handshakeTimeoutMs(), config.idleTimeoutMs());
        Router router = new Router(config.name(), () -> state.get().identity().spiffeId().toString(),
                () -> state.get().policy(),
                config.expectPeer(), caller, metrics, log);
        server = new MtlsServer(tls, config.listen().toSocketAddress(), config.maxConnections(),
                config.handshakeTimeoutMs(), new HttpConnection(router, config.idleTimeoutMs(), config.threads()),
                new OpenConnections(metrics, log, clock, timer), metrics, log, timer);
        try {
            server.start();
        } catch (IOException e) {
            timer.shutdownNow();
            throw new StartupException("cannot listen on " + config.listen() + ": " + e.getMessage(), e);
        }
        try {
            metricsServer = new MetricsServer(config.metricsListen().toSocketAddress(), metrics, this::healthJson);
            metricsServer.start();
        } catch (IOException e) {
            server.close();
            timer.shutdownNow();
            throw new StartupException("cannot listen on " + config.metricsListen() + ": " + e.getMessage(), e);
        }
        Set<Path> files = new LinkedHashSet<>();
        files.add(config.crlPath());
        if (config.policy() != null) {
            files.add(config.policy());
        }
        // --no-reload: no reloader at all (no watch, no poll); SIGHUP is refused in onSighup().
        reloader = config.noReload() ? null : new Reloader(config.reloadFilePath(), files, config.reloadInterval(),
                Reloader.DEFAULT_DEBOUNCE, trigger -> reload(trigger, false), log, timer);
    }

    /** Loads, validates, listens and starts watching; throws with a message on any failure. */
    public static ServiceB start(Config config, JsonLog log, Clock clock) throws StartupException {
        ServiceB s = new ServiceB(config, log, clock);
        if (config.pidFile() != null) {
            try {
                writePidFile(config.pidFile());
            } catch (IOException e) {
                s.close("pid file");
                throw new StartupException("cannot write pid file " + config.pidFile() + ": " + e, e);
            }
        }
        if (s.reloader != null) {
            s.reloader.start();
        }
        if (!RevokedAlert.available()) {
            log.warn("tls_alert_fallback", "reason", "revoked clients get certificate_unknown, not certificate_revoked "
                    + "(run with --add-opens java.base/sun.security.ssl=ALL-UNNAMED): " + RevokedAlert.unavailableReason());
        }
        IdentityMaterial id = s.state.get().identity();
        CrlIndex crl = s.state.get().crl();
        log.info("start", "listen", config.listen().host() + ":" + s.port(),
                "metrics_listen", config.metricsListen().host() + ":" + s.metricsPort(),
                "port", s.port(), "metrics_port", s.metricsPort(), "pid", ProcessHandle.current().pid(),
                "spiffe_id", id.spiffeId().toString(), "serial", id.serial(), "not_after", rfc3339(id.notAfter()),
                "crl", crl.isConfigured() ? crl.source().toString() : null,
                "policy", config.policy() == null ? null : config.policy().toString(),
                "format", id.format(),
                "reload", config.noReload() ? "off" : "touch " + config.reloadFilePath()
                        + ", poll " + config.reloadInterval().toSeconds() + " s, SIGHUP");
        return s;
    }

    public int port() {
        return server.port();
    }

    public int metricsPort() {
        return metricsServer.port();
    }

    public Metrics metrics() {
        return metrics;
    }

    public IdentityMaterial identity() {
        return state.get().identity();
    }

    /** Tasks waiting on the service's timer (periodic ones and per-connection ones): for tests. */
    public int queuedTimers() {
        return timer.getQueue().size();
    }

    private String healthJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("status", "ok");
        m.put("serial", state.get().identity().serial());
        try {
            return JSON.writeValueAsString(m);
        } catch (JsonProcessingException e) {
            return "{\"status\":\"ok\"}";
        }
    }

    /**
     * SIGHUP: a forced reload, or with {@code --no-reload} nothing but a log line (the lab starts a
     * service so to prove that a broken reload fails Milestone 2; the signal must not kill it).
     */
    public void onSighup() {
        if (config.noReload()) {
            log.warn("signal_ignored", "signal", "SIGHUP", "reason", "--no-reload");
            return;
        }
        reload("signal", true);
    }

    private SvidVerifier verifierFor(IdentityMaterial id, CrlIndex crl) {
        return new SvidVerifier(id.bundle(), id.spiffeId().trustDomain(), crl, staleMonitor, clock);
    }

    /**
     * One reload attempt, all or nothing. Looks at what changed since the snapshot in use was
     * built (the generation {@code current} points to, the CRL's and policy's stamps), builds a
     * whole new snapshot from it, validating every part (identity and key, the CRL against the
     * new identity's CAs, the policy), and publishes it with one reference swap, then empties
     * the session caches. If any part fails, nothing changes: the old identity, bundle, CRL and
     * policy all stay, one failed reload is counted, and every part's reason is logged.
     * Unchanged state is a no-op (no log, no count), and a failed combination is not retried
     * until something changes again, unless {@code force} (SIGHUP). Also notices a CRL going
     * stale by the clock.
     */
    public synchronized void reload(String trigger, boolean force) {
        if (closed) {
            return;
        }
        ServiceState old = state.get();
        ServiceState.Sources had = old.sources();
        staleMonitor.check(old.crl(), clock.instant());

        Path gen;
        String genError = null;
        try {
            gen = reader.resolveCurrent();
        } catch (MaterialException e) {
            gen = null;
            genError = e.getMessage();
        }
        FileStamp crlStamp = FileStamp.of(config.crlPath());
        if (!crlStamp.exists()) {
            // A CRL file that disappears keeps the loaded CRL: there is nothing new to load.
            crlStamp = had.crl();
        }
        ServiceState.Sources wanted = new ServiceState.Sources(gen, crlStamp, FileStamp.of(config.policy()));
        if (wanted.equals(had) || (!force && wanted.equals(attempted))) {
            return;
        }
        attempted = wanted;

        boolean idChanged = gen == null || !gen.equals(had.generation());
        boolean crlChanged = !crlStamp.equals(had.crl());
        boolean policyChanged = config.policy() != null && !wanted.policy().equals(had.policy());
        List<String> parts = new ArrayList<>();
        List<String> failures = new ArrayList<>();
        List<String> details = new ArrayList<>();

        IdentityMaterial id = old.identity();
        if (idChanged) {
            parts.add("identity");
            if (gen == null) {
                failures.add(genError);
            } else {
                try {
                    id = IdentityMaterial.validate(reader.readGeneration(gen), clock.instant());
                } catch (MaterialException e) {
                    // A coded failure (bundle_checksum_mismatch) is logged by its code; its text goes to detail.
                    failures.add(e.code() != null ? e.code() : e.getMessage());
                    if (e.code() != null) {
                        details.add(e.getMessage());
                    }
                }
            }
        }
        CrlIndex crl = old.crl();
        if (crlChanged) {
            parts.add("crl");
        }
        // A new identity may come with a new bundle: the CRL in use must verify against it too.
        if (crlChanged || (id != old.identity() && crl.isConfigured() && FileStamp.of(config.crlPath()).exists())) {
            try {
                crl = CrlIndex.load(config.crlPath(), id.caCertificates());
            } catch (MaterialException e) {
                failures.add(e.getMessage());
            }
        }
        Policy policy = old.policy();
        if (policyChanged) {
            parts.add("policy");
            try {
                policy = Policy.load(config.policy());
            } catch (MaterialException e) {
                failures.add(e.getMessage());
            }
        }

        if (!failures.isEmpty()) {
            metrics.reload(false);
            if (idChanged && gen != null) {
                // A new generation was there and could not be served: a failed rotation.
                metrics.rotation(false);
            }
            log.error("reload", "result", "failure", "old_serial", old.identity().serial(),
                    "new_serial", old.identity().serial(), "reason", String.join("; ", failures),
                    "trigger", trigger, "changed", List.of(), "rejected", parts,
                    "detail", details.isEmpty() ? null : String.join("; ", details));
            return;
        }

        SvidVerifier verifier = id == old.identity() && crl == old.crl() ? old.verifier() : verifierFor(id, crl);
        state.set(new ServiceState(id, verifier, policy, wanted));
        tls.invalidateSessions();

        if (id != old.identity()) {
            metrics.identity(id.serial(), id.spiffeId().toString(), id.notAfter());
        }
        if (crl != old.crl()) {
            metrics.crl(crl.entries(), crl.nextUpdate());
            if (crlChanged) {
                logCrlLoaded(crl);
            }
            staleMonitor.check(crl, clock.instant());
            // Issue 18: TLS judged the open connections' peers at their handshakes only.
            server.established().endRevoked(crl);
        }
        // An identity change (a new generation with the same serial, e.g. a new bundle, is not one).
        boolean rotated = !id.serial().equals(old.identity().serial());
        // Counters before log lines: whoever sees the line may read the counters at once.
        metrics.reload(true);
        if (rotated) {
            metrics.rotation(true);
        }
        log.info("reload", "result", "success", "old_serial", old.identity().serial(), "new_serial", id.serial(),
                "trigger", trigger, "changed", parts);
        if (rotated) {
            log.info("rotation", "old_serial", old.identity().serial(), "new_serial", id.serial(),
                    "not_after", rfc3339(id.notAfter()), "generation", gen.getFileName().toString(),
                    "trigger", trigger);
        }
    }

    private void logCrlLoaded(CrlIndex crl) {
        log.info("crl_loaded", "path", crl.source().toString(), "entries", crl.entries(),
                "next_update", crl.nextUpdate() == null ? null : rfc3339(crl.nextUpdate()),
                "crl_number", crl.crlNumber(),
                "crls", crl.crlCount());
    }

    static String rfc3339(Instant t) {
        return t.truncatedTo(ChronoUnit.SECONDS).toString();
    }

    /** Writes the PID file (contracts.md 8); the agent signals that PID. */
    public static void writePidFile(Path file) throws IOException {
        Files.writeString(file, ProcessHandle.current().pid() + "\n");
    }

    @Override
    public void close() {
        close("closed");
    }

    public void close(String reason) {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        if (reloader != null) {
            reloader.close();
        }
        server.close();
        metricsServer.close();
        timer.shutdownNow();
        log.info("stop", "reason", reason);
    }
}
