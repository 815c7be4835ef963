package zt.serviceb.bench;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.security.cert.CertStore;
import java.security.cert.CollectionCertStoreParameters;
import java.security.cert.PKIXBuilderParameters;
import java.security.cert.PKIXRevocationChecker;
import java.security.cert.TrustAnchor;
import java.security.cert.X509CertSelector;
import java.security.cert.X509Certificate;
import java.io.ByteArrayInputStream;
import java.nio.file.Files;
import java.security.cert.CertPathBuilder;
import java.security.cert.CertificateFactory;
import java.time.Clock;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.function.Supplier;
import javax.net.ssl.CertPathTrustManagerParameters;
import javax.net.ssl.KeyManager;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;

import zt.serviceb.identity.CertDirReader;
import zt.serviceb.identity.IdentityMaterial;
import zt.serviceb.revocation.CrlIndex;
import zt.serviceb.revocation.StaleCrlMonitor;
import zt.serviceb.revocation.StaleMode;
import zt.serviceb.tls.SvidVerifier;
import zt.serviceb.tls.SwappableKeyManager;
import zt.serviceb.tls.SwappableTrustManager;
import zt.serviceb.tls.TlsContext;

/**
 * N real mTLS handshakes over loopback per way of checking the client's certificate:
 * no CRL, our indexed CRL (signature verified once at load), and the JDK's own
 * PKIXRevocationChecker fed the same CRL through a Collection CertStore (which re-verifies the
 * CRL, hashing all of it, on every validation). Each handshake is timed on the client from
 * connect until the server's first byte arrives, so the server's verification is inside it
 * (in TLS 1.3 the client finishes before the server has checked the client's certificate).
 * Sessions are never resumed. Usage: CrlHandshakeBench PKI_DIR [N] [WARMUP]
 */
public final class CrlHandshakeBench {
    private CrlHandshakeBench() {
    }

    public static void main(String[] args) throws Exception {
        TlsContext.configureJsse();
        if (args.length < 1) {
            System.err.println("usage: CrlHandshakeBench PKI_DIR [N] [WARMUP]  (PKI from make_test_pki.py all DIR --large-crl)");
            System.exit(2);
        }
        Path pki = Path.of(args[0]);
        int n = args.length > 1 ? Integer.parseInt(args[1]) : 1000;
        int warmup = args.length > 2 ? Integer.parseInt(args[2]) : 300;
        Path crlFile = pki.resolve("crl/crl-large.pem");

        IdentityMaterial server = load(pki.resolve("ids/service-b"));
        IdentityMaterial client = load(pki.resolve("ids/client"));
        IdentityMaterial revoked = load(pki.resolve("ids/revoked"));

        long t0 = System.nanoTime();
        CrlIndex index = CrlIndex.load(crlFile, server.caCertificates());
        double loadMs = (System.nanoTime() - t0) / 1e6;
        System.out.printf(Locale.ROOT, "CRL %s: %d entries, %.1f KiB; indexed load (parse + one signature check + index): %.0f ms%n",
                crlFile.getFileName(), index.entries(), Files.size(crlFile) / 1024.0, loadMs);

        StaleCrlMonitor monitor = new StaleCrlMonitor(StaleMode.REFUSE, (a, b) -> { });
        TrustManager noCrl = new SwappableTrustManager(fixed(new SvidVerifier(server.bundle(), "zt.lab", CrlIndex.none(),
                monitor, Clock.systemUTC())));
        TrustManager indexed = new SwappableTrustManager(fixed(new SvidVerifier(server.bundle(), "zt.lab", index,
                monitor, Clock.systemUTC())));
        TrustManager jdk = jdkRevocationTrustManager(server, crlFile);

        List<Mode> modes = List.of(new Mode("no CRL", noCrl), new Mode("indexed CRL (ours)", indexed),
                new Mode("JDK PKIXRevocationChecker", jdk));

        // Sanity: each CRL-checking mode refuses the revoked identity, and all accept the good one.
        for (Mode m : modes) {
            boolean good = handshakeOk(m, server, client);
            boolean bad = handshakeOk(m, server, revoked);
            System.out.printf(Locale.ROOT, "check %-27s good client accepted: %-5s revoked client accepted: %s%n",
                    m.name, good, bad);
            if (!good || (bad != m.name.equals("no CRL"))) {
                throw new IllegalStateException("mode " + m.name + " does not behave as expected");
            }
        }

        for (Mode m : modes) {
            run(m, server, client, warmup, null);
        }
        // Interleaved rounds, so drift (JIT, other load on the machine) hits every mode alike.
        int rounds = 4;
        for (int round = 0; round < rounds; round++) {
            for (Mode m : modes) {
                run(m, server, client, Math.max(1, n / rounds), m.samples);
            }
        }
        System.out.printf(Locale.ROOT, "%n%d full handshakes per mode (TLS 1.3, ECDSA P-256, client cert required, loopback)%n",
                modes.get(0).samples.size());
        System.out.printf(Locale.ROOT, "%-28s %10s %10s %10s %14s%n", "mode", "mean ms", "p50 ms", "p99 ms",
                "mean vs none");
        double base = mean(modes.get(0).samples);
        for (Mode m : modes) {
            double mean = mean(m.samples);
            System.out.printf(Locale.ROOT, "%-28s %10.3f %10.3f %10.3f %13.2fx%n", m.name, mean,
                    pct(m.samples, 50), pct(m.samples, 99), mean / base);
        }
        double ours = mean(modes.get(1).samples);
        double theirs = mean(modes.get(2).samples);
        System.out.printf(Locale.ROOT, "JDK checker / indexed: %.2fx (%.3f ms more per handshake)%n", theirs / ours,
                theirs - ours);
    }

    private record Mode(String name, TrustManager trust, List<Double> samples) {
        Mode(String name, TrustManager trust) {
            this(name, trust, new ArrayList<>());
        }
    }

    private static IdentityMaterial load(Path dir) throws Exception {
        return IdentityMaterial.validate(new CertDirReader(dir).read(), Instant.now());
    }

    /** The JDK's way: PKIX with revocation on, CRLs only (no OCSP, no CDP fetching), the CRL in a CertStore. */
    private static TrustManager jdkRevocationTrustManager(IdentityMaterial server, Path crlFile) throws Exception {
        Collection<? extends java.security.cert.CRL> crls = CertificateFactory.getInstance("X.509")
                .generateCRLs(new ByteArrayInputStream(Files.readAllBytes(crlFile)));
        Set<TrustAnchor> anchors = new HashSet<>();
        for (X509Certificate r : server.bundle().roots()) {
            anchors.add(new TrustAnchor(r, null));
        }
        PKIXBuilderParameters params = new PKIXBuilderParameters(anchors, new X509CertSelector());
        PKIXRevocationChecker rc = (PKIXRevocationChecker) CertPathBuilder.getInstance("PKIX").getRevocationChecker();
        rc.setOptions(EnumSet.of(PKIXRevocationChecker.Option.PREFER_CRLS, PKIXRevocationChecker.Option.NO_FALLBACK,
                PKIXRevocationChecker.Option.ONLY_END_ENTITY));
        params.addCertPathChecker(rc);
        params.setRevocationEnabled(true);
        List<Object> store = new ArrayList<>(crls);
        store.add(server.chain().get(1)); // the intermediate, the CRL's signer
        params.addCertStore(CertStore.getInstance("Collection", new CollectionCertStoreParameters(store)));
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(new CertPathTrustManagerParameters(params));
        return tmf.getTrustManagers()[0];
    }

    /** A verifier that never changes: the bench has no reloads. */
    private static Supplier<SvidVerifier> fixed(SvidVerifier verifier) {
        return () -> verifier;
    }

    private static SSLContext context(IdentityMaterial id, TrustManager tm) throws Exception {
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(new KeyManager[] {new SwappableKeyManager(() -> id)}, new TrustManager[] {tm}, new SecureRandom());
        return ctx;
    }

    private static boolean handshakeOk(Mode m, IdentityMaterial server, IdentityMaterial client) throws Exception {
        try {
            run(m, server, client, 1, null);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    /** {@code count} sequential full handshakes; adds per-handshake milliseconds to {@code out}. */
    private static void run(Mode m, IdentityMaterial server, IdentityMaterial client, int count, List<Double> out)
            throws Exception {
        SSLContext serverCtx = context(server, m.trust);
        // The client checks the server the same way in every mode, so only the server's check differs.
        SSLContext clientCtx = context(client, new SwappableTrustManager(fixed(new SvidVerifier(client.bundle(), "zt.lab",
                CrlIndex.none(), new StaleCrlMonitor(StaleMode.WARN, (a, b) -> { }), Clock.systemUTC()))));
        try (SSLServerSocket ss = (SSLServerSocket) serverCtx.getServerSocketFactory().createServerSocket()) {
            ss.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
            ss.setSSLParameters(paramsFor(serverCtx, true));
            Thread acceptor = new Thread(() -> {
                for (int i = 0; i < count; i++) {
                    try (SSLSocket s = (SSLSocket) ss.accept()) {
                        s.setTcpNoDelay(true);
                        s.setSoTimeout(10_000);
                        s.startHandshake();
                        s.getOutputStream().write(1);
                        s.getOutputStream().flush();
                        s.getSession().invalidate();
                        s.getInputStream().read();
                    } catch (IOException e) {
                        // the client sees the failure too
                    }
                }
            }, "bench-server");
            acceptor.setDaemon(true);
            acceptor.start();
            for (int i = 0; i < count; i++) {
                long start = System.nanoTime();
                try (SSLSocket c = (SSLSocket) clientCtx.getSocketFactory().createSocket()) {
                    c.setTcpNoDelay(true);
                    c.connect(ss.getLocalSocketAddress(), 5000);
                    c.setSoTimeout(10_000);
                    c.setSSLParameters(paramsFor(clientCtx, false));
                    c.startHandshake();
                    InputStream in = c.getInputStream();
                    if (in.read() != 1) {
                        throw new IOException("server closed without answering");
                    }
                    long end = System.nanoTime();
                    c.getSession().invalidate();
                    if (out != null) {
                        out.add((end - start) / 1e6);
                    }
                }
            }
            acceptor.join(10_000);
        }
    }

    private static javax.net.ssl.SSLParameters paramsFor(SSLContext ctx, boolean server) {
        javax.net.ssl.SSLParameters p = ctx.getDefaultSSLParameters();
        p.setProtocols(new String[] {"TLSv1.3"});
        p.setNeedClientAuth(server);
        return p;
    }

    private static double mean(List<Double> xs) {
        return xs.stream().mapToDouble(Double::doubleValue).average().orElse(Double.NaN);
    }

    private static double pct(List<Double> xs, int p) {
        double[] s = xs.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(s);
        int i = (int) Math.ceil(p / 100.0 * s.length) - 1;
        return s[Math.max(0, Math.min(s.length - 1, i))];
    }
}
