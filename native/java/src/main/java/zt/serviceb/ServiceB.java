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
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;

import zt.serviceb.http.HttpConnection;
import zt.serviceb.http.MtlsServer;
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
    private final AtomicReference<IdentityMaterial> identity;
    private final AtomicReference<Policy> policy;
    private final ScheduledExecutorService timer;
    private final MtlsServer server;
    private final MetricsServer metricsServer;
    private final Reloader reloader;

    // Reload bookkeeping, guarded by `this`: what is loaded, and what was last tried.
    private Path loadedGeneration;
    private Path attemptedGeneration;
    private FileStamp loadedCrl;
    private FileStamp attemptedCrl;
    private FileStamp loadedPolicy;
    private FileStamp attemptedPolicy;
    private boolean closed;

    /** Startup failed: the message is for the operator; the exit code is 1. */
    public static final class StartupException extends Exception {
        public StartupException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    private ServiceB(Config config, JsonLog log, Clock clock) throws StartupException {
        this.config = config;
        this.log = log;
        this.clock = clock;
        this.reader = new CertDirReader(config.certDir());
        try {
            loadedGeneration = reader.resolveCurrent();
            attemptedGeneration = loadedGeneration;
            IdentityMaterial id = IdentityMaterial.validate(reader.readGeneration(loadedGeneration), clock.instant());
            identity = new AtomicReference<>(id);

            Path crlPath = config.crlPath();
            CrlIndex crl = CrlIndex.none();
            loadedCrl = FileStamp.of(crlPath);
            attemptedCrl = loadedCrl;
            if (config.crlRequired() || loadedCrl.exists()) {
                crl = CrlIndex.load(crlPath, id.caCertificates());
            }

            Policy p = Policy.allowAll();
            loadedPolicy = FileStamp.of(config.policy());
            attemptedPolicy = loadedPolicy;
            if (config.policy() != null) {
                p = Policy.load(config.policy());
            }
            policy = new AtomicReference<>(p);

            staleMonitor = new StaleCrlMonitor(config.crlStale(), (next, mode) -> log.warn("crl_stale",
                    "next_update", rfc3339(next), "mode", mode.flag()));
            SvidVerifier verifier = new SvidVerifier(id.bundle(), id.spiffeId().trustDomain(), crl, staleMonitor,
                    clock);
            tls = new TlsContext(id, verifier);
            metrics = new Metrics(() -> tls.verifier().crl().isStale(clock.instant()),
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
        timer = Executors.newScheduledThreadPool(2, r -> {
            Thread t = new Thread(r, "service-timer-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
        OutboundCaller caller = new OutboundCaller(tls, timer, config.handshakeTimeoutMs(), config.idleTimeoutMs());
        Router router = new Router(config.name(), () -> identity.get().spiffeId().toString(), policy::get,
                config.expectPeer(), caller, metrics, log);
        server = new MtlsServer(tls, config.listen().toSocketAddress(), config.threads(),
                config.handshakeTimeoutMs(), new HttpConnection(router, config.idleTimeoutMs()), metrics, log, timer);
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
        reloader = new Reloader(config.certDir(), files, config.reloadInterval(), Reloader.DEFAULT_DEBOUNCE,
                trigger -> reload(trigger, false), log, timer);
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
        s.reloader.start();
        IdentityMaterial id = s.identity.get();
        CrlIndex crl = s.tls.verifier().crl();
        log.info("start", "listen", config.listen().host() + ":" + s.port(),
                "metrics_listen", config.metricsListen().host() + ":" + s.metricsPort(),
                "spiffe_id", id.spiffeId().toString(), "serial", id.serial(), "not_after", rfc3339(id.notAfter()),
                "crl", crl.isConfigured() ? crl.source().toString() : null,
                "policy", config.policy() == null ? null : config.policy().toString(),
                "format", id.format());
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
        return identity.get();
    }

    private String healthJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("status", "ok");
        m.put("serial", identity.get().serial());
        try {
            return JSON.writeValueAsString(m);
        } catch (JsonProcessingException e) {
            return "{\"status\":\"ok\"}";
        }
    }

    /**
     * One reload attempt. Looks at what changed since the last load (the generation
     * {@code current} points to, the CRL's and policy's stamps); loads and fully validates each
     * changed part; swaps in what validated and keeps the old value of what did not. Unchanged
     * state is a no-op (no log, no count), and a failed change is not retried until it changes
     * again, unless {@code force} (SIGHUP). Also notices a CRL going stale by the clock.
     */
    public synchronized void reload(String trigger, boolean force) {
        if (closed) {
            return;
        }
        IdentityMaterial oldId = identity.get();
        SvidVerifier oldVerifier = tls.verifier();
        staleMonitor.check(oldVerifier.crl(), clock.instant());

        Path gen;
        String genError = null;
        try {
            gen = reader.resolveCurrent();
        } catch (MaterialException e) {
            gen = null;
            genError = e.getMessage();
        }
        FileStamp crlStamp = FileStamp.of(config.crlPath());
        FileStamp policyStamp = FileStamp.of(config.policy());

        boolean idChanged = gen == null ? force || attemptedGeneration != null
                : !gen.equals(loadedGeneration) && (force || !gen.equals(attemptedGeneration));
        // A CRL file that disappears keeps the loaded CRL: there is nothing new to load.
        boolean crlChanged = crlStamp.exists() && !crlStamp.equals(loadedCrl)
                && (force || !crlStamp.equals(attemptedCrl));
        boolean policyChanged = config.policy() != null && !policyStamp.equals(loadedPolicy)
                && (force || !policyStamp.equals(attemptedPolicy));
        if (!idChanged && !crlChanged && !policyChanged) {
            return;
        }

        List<String> failures = new ArrayList<>();
        List<String> changed = new ArrayList<>();
        IdentityMaterial newId = oldId;
        if (idChanged) {
            attemptedGeneration = gen;
            if (gen == null) {
                failures.add(genError);
            } else {
                try {
                    newId = IdentityMaterial.validate(reader.readGeneration(gen), clock.instant());
                    loadedGeneration = gen;
                    changed.add("identity");
                } catch (MaterialException e) {
                    failures.add(e.getMessage());
                }
            }
        }
        CrlIndex crl = oldVerifier.crl();
        if (crlChanged) {
            attemptedCrl = crlStamp;
            try {
                crl = CrlIndex.load(config.crlPath(), newId.caCertificates());
                loadedCrl = crlStamp;
                changed.add("crl");
            } catch (MaterialException e) {
                failures.add(e.getMessage());
            }
        }
        if (policyChanged) {
            attemptedPolicy = policyStamp;
            try {
                policy.set(Policy.load(config.policy()));
                loadedPolicy = policyStamp;
                changed.add("policy");
            } catch (MaterialException e) {
                failures.add(e.getMessage());
            }
        }

        if (newId != oldId) {
            identity.set(newId);
            tls.swap(newId, new SvidVerifier(newId.bundle(), newId.spiffeId().trustDomain(), crl, staleMonitor,
                    clock));
            metrics.identity(newId.serial(), newId.spiffeId().toString(), newId.notAfter());
        } else if (crl != oldVerifier.crl()) {
            tls.swap(oldVerifier.withCrl(crl));
        }
        if (crl != oldVerifier.crl()) {
            metrics.crl(crl.entries(), crl.nextUpdate());
            logCrlLoaded(crl);
            staleMonitor.check(crl, clock.instant());
        }

        boolean ok = failures.isEmpty();
        metrics.reload(ok);
        if (ok) {
            log.info("reload", "result", "success", "old_serial", oldId.serial(), "new_serial", newId.serial(),
                    "trigger", trigger, "changed", changed);
        } else {
            log.error("reload", "result", "failure", "old_serial", oldId.serial(), "new_serial", newId.serial(),
                    "reason", String.join("; ", failures), "trigger", trigger, "changed", changed);
        }
    }

    private void logCrlLoaded(CrlIndex crl) {
        log.info("crl_loaded", "path", crl.source().toString(), "entries", crl.entries(),
                "next_update", crl.nextUpdate() == null ? null : rfc3339(crl.nextUpdate()),
                "crl_number", crl.crlNumber() == null ? null : crl.crlNumber().toString(),
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
        reloader.close();
        server.close();
        metricsServer.close();
        timer.shutdownNow();
        log.info("stop", "reason", reason);
    }
}
