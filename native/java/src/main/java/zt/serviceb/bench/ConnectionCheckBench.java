package zt.serviceb.bench;

import java.net.Socket;
import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.time.Clock;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;

import zt.serviceb.http.OpenConnections;
import zt.serviceb.http.Peer;
import zt.serviceb.identity.CertDirReader;
import zt.serviceb.identity.IdentityMaterial;
import zt.serviceb.observe.JsonLog;
import zt.serviceb.observe.Metrics;
import zt.serviceb.revocation.CrlIndex;

/**
 * Issue 18's cost: the check a CRL reload makes over the open connections (each peer chain's
 * certificates looked up in the CRL index), for N registered connections against the 100k-entry
 * CRL, cold (the first check after start, as the JIT left it) and warm (median of R repeats).
 * The registrations hold real peer chains (N-1 of ids/client, one of ids/revoked, which the
 * large CRL lists); their sockets are not connected, which the check never touches except to
 * end the revoked one. OpenConnectionsCostShould measures the same with 1,000 real connections.
 * Usage: ConnectionCheckBench PKI_DIR [N] [R]
 */
public final class ConnectionCheckBench {
    private ConnectionCheckBench() {
    }

    public static void main(String[] args) throws Exception {
        Path pki = Path.of(args[0]);
        int n = args.length > 1 ? Integer.parseInt(args[1]) : 1000;
        int repeats = args.length > 2 ? Integer.parseInt(args[2]) : 200;
        IdentityMaterial server = load(pki.resolve("ids/service-b"));
        List<X509Certificate> client = load(pki.resolve("ids/client")).chain();
        List<X509Certificate> revoked = load(pki.resolve("ids/revoked")).chain();
        CrlIndex crl = CrlIndex.load(pki.resolve("crl/crl-large.pem"), server.caCertificates());

        ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "bench-timer");
            t.setDaemon(true);
            return t;
        });
        List<Double> durations = new ArrayList<>();
        JsonLog log = new JsonLog("bench", Clock.systemUTC(), (record, line) -> {
            if ("connections_checked".equals(record.get("event"))) {
                synchronized (durations) {
                    durations.add(((Number) record.get("duration_ms")).doubleValue());
                }
            }
        });
        OpenConnections open = new OpenConnections(new Metrics(Clock.systemUTC(), () -> false, List.of()), log, Clock.systemUTC(), timer);
        SSLContext ctx = SSLContext.getDefault();
        for (int i = 0; i < n; i++) {
            List<X509Certificate> chain = i == 0 ? revoked : client;
            open.register(new Socket(), (SSLSocket) ctx.getSocketFactory().createSocket(),
                    new Peer("spiffe://zt.lab/svc/x", "00", null, "TLSv1.3", "127.0.0.1:" + i), chain);
        }
        // In a running service the JSSE classes a close_notify needs are loaded long before the
        // first CRL reload; load them here too, so "cold" is the check, not JSSE's class loading.
        try (SSLSocket warmup = (SSLSocket) ctx.getSocketFactory().createSocket()) {
            warmup.shutdownOutput();
        } catch (java.io.IOException e) {
            // unconnected: expected
        }
        // Likewise the JSON log (Jackson) has written lines before any reload in a service.
        log.info("bench_start", "connections", n);
        int ended = open.endRevoked(crl);
        for (int r = 0; r < repeats; r++) {
            open.endRevoked(crl);
        }
        double cold = durations.get(0);
        double[] warm = durations.subList(1, durations.size()).stream().mapToDouble(Double::doubleValue).sorted()
                .toArray();
        System.out.printf(Locale.ROOT, "%d open connections (chains of %d), CRL of %d entries: ended %d; "
                        + "check cold %.3f ms, warm median %.3f ms (p99 %.3f ms), %.2f us per connection warm%n",
                n, client.size(), crl.entries(), ended, cold, warm[warm.length / 2],
                warm[Math.min(warm.length - 1, (int) Math.ceil(warm.length * 0.99) - 1)],
                warm[warm.length / 2] * 1000 / n);
        System.out.println("raw warm ms: " + Arrays.toString(Arrays.copyOf(warm, Math.min(5, warm.length))) + " ...");
        timer.shutdownNow();
    }

    private static IdentityMaterial load(Path certDir) throws Exception {
        CertDirReader r = new CertDirReader(certDir);
        return IdentityMaterial.validate(r.readGeneration(r.resolveCurrent()), java.time.Instant.now());
    }
}
