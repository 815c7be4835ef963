package zt.serviceb.support;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;

import zt.serviceb.Config;
import zt.serviceb.HostPort;
import zt.serviceb.ServiceB;
import zt.serviceb.identity.SpiffeId;
import zt.serviceb.revocation.StaleMode;

/** A ServiceB started in-process on ephemeral loopback ports, with its log captured. */
public final class RunningService implements AutoCloseable {
    public final ServiceB service;
    public final CapturedLog log;

    private RunningService(ServiceB service, CapturedLog log) {
        this.service = service;
        this.log = log;
    }

    public static Builder builder(Path certDir) {
        return new Builder(certDir);
    }

    public int port() {
        return service.port();
    }

    /** GET on the plain metrics port. */
    public String metricsGet(String path) throws IOException {
        try {
            HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + service.metricsPort() + path))
                    .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
            return r.body();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(e);
        }
    }

    @Override
    public void close() {
        service.close("test done");
        // Every line this service wrote during the test kept CONTRACT L's field rules.
        if (!log.violations().isEmpty()) {
            throw new AssertionError("log lines break CONTRACT L:\n" + String.join("\n", log.violations()));
        }
    }

    public static final class Builder {
        private final Path certDir;
        private Path policy;
        private Path crl;
        private StaleMode stale = StaleMode.REFUSE;
        private SpiffeId expectPeer;
        private String name = "service-b";
        private Duration reloadInterval = Duration.ofSeconds(5);
        private int handshakeTimeoutMs = 5000;
        private int idleTimeoutMs = 30000;
        private int threads = 8;
        private boolean noReload;
        private Clock clock = Clock.systemUTC();

        Builder(Path certDir) {
            this.certDir = certDir;
        }

        public Builder policy(Path p) {
            policy = p;
            return this;
        }

        public Builder crl(Path p) {
            crl = p;
            return this;
        }

        public Builder stale(StaleMode m) {
            stale = m;
            return this;
        }

        public Builder expectPeer(SpiffeId id) {
            expectPeer = id;
            return this;
        }

        public Builder name(String n) {
            name = n;
            return this;
        }

        public Builder reloadInterval(Duration d) {
            reloadInterval = d;
            return this;
        }

        public Builder handshakeTimeoutMs(int ms) {
            handshakeTimeoutMs = ms;
            return this;
        }

        public Builder idleTimeoutMs(int ms) {
            idleTimeoutMs = ms;
            return this;
        }

        public Builder clock(Clock c) {
            clock = c;
            return this;
        }

        public Builder noReload() {
            noReload = true;
            return this;
        }

        public Builder threads(int n) {
            threads = n;
            return this;
        }

        public Config config() {
            return new Config(certDir, new HostPort("127.0.0.1", 0), new HostPort("127.0.0.1", 0), policy, crl,
                    stale, expectPeer, name, null, reloadInterval, handshakeTimeoutMs, idleTimeoutMs, threads, null,
                    noReload);
        }

        public RunningService start() throws ServiceB.StartupException {
            CapturedLog log = new CapturedLog();
            return new RunningService(ServiceB.start(config(), log.log(name), clock), log);
        }
    }
}
