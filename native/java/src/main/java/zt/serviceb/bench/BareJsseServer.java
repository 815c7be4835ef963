package zt.serviceb.bench;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.SecureRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

import zt.serviceb.tls.TlsContext;

/**
 * The baseline of the handshake bench (bench/handshakes.py, issue 15): a TLS server with nothing
 * but JSSE in it, so that service-b's handshakes per CPU-second can be read against what the
 * JDK itself costs on the same machine in the same run. It takes the same cert dir as service-b
 * and uses its keystore ({@code keystore.p12} with {@code keystore.pass}) and truststore
 * ({@code truststore.p12}) through the JDK's stock key and trust managers (PKIX path validation,
 * no CRL, no SPIFFE rules), with service-b's TLS settings: the same process-wide JSSE properties
 * ({@link TlsContext#configureJsse()}: no stateless tickets, no client renegotiation), the same
 * protocols and AEAD suites in the same order, a client certificate required.
 *
 * <p>One thread per connection (service-b's model, from a cached pool): handshake, read until the
 * client closes, close with close_notify. Nothing is logged or counted per connection.
 * Usage: {@code BareJsseServer CERT_DIR PORT}; prints {@code listening PORT} once bound and runs
 * until killed.
 */
public final class BareJsseServer {
    private static final int BACKLOG = 128;
    private static final int TIMEOUT_MS = 10_000;

    private BareJsseServer() {
    }

    public static void main(String[] args) throws Exception {
        TlsContext.configureJsse();
        if (args.length != 2) {
            System.err.println("usage: BareJsseServer CERT_DIR PORT  (service-b's cert dir: keystore.p12, "
                    + "keystore.pass, truststore.p12)");
            System.exit(2);
        }
        Path dir = Path.of(args[0]);
        SSLContext ctx = context(dir);
        SSLServerSocket server = (SSLServerSocket) ctx.getServerSocketFactory().createServerSocket();
        server.setReuseAddress(true);
        server.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), Integer.parseInt(args[1])), BACKLOG);
        server.setSSLParameters(parameters(ctx));
        AtomicInteger n = new AtomicInteger();
        ExecutorService pool = Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "bare-conn-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
        System.out.println("listening " + server.getLocalPort());
        System.out.flush();
        while (true) {
            Socket s = server.accept();
            pool.execute(() -> serve((SSLSocket) s));
        }
    }

    private static void serve(SSLSocket socket) {
        try (socket) {
            socket.setSoTimeout(TIMEOUT_MS);
            socket.startHandshake();
            InputStream in = socket.getInputStream();
            byte[] buf = new byte[1024];
            while (in.read(buf) >= 0) {
                // the client only handshakes and closes; anything it sends is dropped
            }
        } catch (IOException e) {
            // a refused or broken handshake: the client sees it
        }
    }

    /** The stock JSSE managers over service-b's PKCS#12 keystore and truststore. */
    private static SSLContext context(Path dir) throws Exception {
        char[] pass = Files.readString(dir.resolve("keystore.pass"), StandardCharsets.UTF_8).strip().toCharArray();
        KeyStore keys = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(dir.resolve("keystore.p12"))) {
            keys.load(in, pass);
        }
        KeyStore trust = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(dir.resolve("truststore.p12"))) {
            trust.load(in, pass);
        }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(keys, pass);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(trust);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), new SecureRandom());
        return ctx;
    }

    /** service-b's server parameters ({@link TlsContext#parameters}): protocols, suites, client auth. */
    private static SSLParameters parameters(SSLContext ctx) {
        SSLParameters p = ctx.getDefaultSSLParameters();
        p.setProtocols(TlsContext.PROTOCOLS);
        p.setCipherSuites(TlsContext.CIPHER_SUITES.toArray(new String[0]));
        p.setNeedClientAuth(true);
        return p;
    }
}
