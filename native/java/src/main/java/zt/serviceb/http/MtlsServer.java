package zt.serviceb.http;

import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;

import zt.serviceb.identity.Serials;
import zt.serviceb.identity.SvidRules;
import zt.serviceb.observe.JsonLog;
import zt.serviceb.observe.Metrics;
import zt.serviceb.tls.HandshakeFailure;
import zt.serviceb.tls.TlsContext;

/**
 * The mTLS listener: one accept thread that only accepts, and one thread per open connection
 * (up to a cap) that runs an explicit {@code startHandshake()} under a hard deadline (socket
 * timeout plus a watchdog that closes the socket, so a client trickling bytes cannot stretch
 * it), counts and logs the outcome, then reads request heads under the idle deadline and serves
 * them. Only the handling of a complete request takes one of the {@code --threads} worker
 * permits ({@link HttpConnection}), so clients that are slow to handshake or to send a request
 * hold nothing but their own thread until their deadline, and cannot starve the workers: the
 * fixed pool of 16 that used to run handshakes was exhausted by 16 slow clients (issue 9).
 *
 * <p>At most {@code maxConnections} connections are open at once; one more is refused at once
 * (closed before any TLS, logged as {@code overload}) rather than queued behind slow ones.
 */
public final class MtlsServer implements Closeable {
    private static final int BACKLOG = 128;
    /** How long to drain a refused client before closing (see linger). */
    private static final int LINGER_MS = 500;

    private final SSLSocketFactory factory;
    /** Built once: the context and its suites are fixed for the life of the process; setSSLParameters copies. */
    private final SSLParameters serverParameters;
    private final InetSocketAddress listen;
    private final int handshakeTimeoutMs;
    private final HttpConnection http;
    private final Metrics metrics;
    private final JsonLog log;
    private final ScheduledExecutorService timer;
    private final int maxConnections;
    private final ThreadPoolExecutor connections;
    private final Set<Socket> open = ConcurrentHashMap.newKeySet();
    private final OpenConnections established;
    private final AtomicBoolean running = new AtomicBoolean();
    private ServerSocket serverSocket;
    private Thread acceptThread;

    public MtlsServer(TlsContext tls, InetSocketAddress listen, int maxConnections, int handshakeTimeoutMs,
                      HttpConnection http, OpenConnections established, Metrics metrics, JsonLog log,
                      ScheduledExecutorService timer) {
        this.established = established;
        this.factory = tls.context().getSocketFactory();
        this.serverParameters = tls.parameters(true);
        this.listen = listen;
        this.handshakeTimeoutMs = handshakeTimeoutMs;
        this.http = http;
        this.metrics = metrics;
        this.log = log;
        this.timer = timer;
        this.maxConnections = maxConnections;
        AtomicInteger n = new AtomicInteger();
        // No queue: a connection gets a thread at once (an idle one is reused for 30 s) or, at
        // the cap, is refused; a queue would make new clients wait behind slow ones.
        this.connections = new ThreadPoolExecutor(0, maxConnections, 30, TimeUnit.SECONDS, new SynchronousQueue<>(),
                r -> {
                    Thread t = new Thread(r, "mtls-conn-" + n.incrementAndGet());
                    t.setDaemon(true);
                    return t;
                });
    }

    public void start() throws IOException {
        // Plain TCP accept, TLS layered on in the worker: the handshake watchdog can then close
        // the raw socket, which always unblocks a read at once (closing an SSLSocket mid-handshake
        // may itself wait on the handshake's locks).
        serverSocket = new ServerSocket();
        serverSocket.setReuseAddress(true);
        serverSocket.bind(listen, BACKLOG);
        running.set(true);
        acceptThread = new Thread(this::acceptLoop, "mtls-accept");
        acceptThread.setDaemon(true);
        acceptThread.start();
    }

    public int port() {
        return serverSocket.getLocalPort();
    }

    public String address() {
        return listen.getHostString() + ":" + port();
    }

    private void acceptLoop() {
        while (running.get()) {
            Socket s;
            try {
                s = serverSocket.accept();
            } catch (IOException e) {
                if (!running.get()) {
                    return;
                }
                log.warn("accept_failed", "reason", e.toString());
                continue;
            }
            open.add(s);
            try {
                connections.execute(() -> handle(s));
            } catch (RejectedExecutionException e) {
                log.warn("overload", "peer_addr", peerAddr(s), "reason", maxConnections
                        + " connections open (the cap); refused before the handshake");
                close(s);
            }
        }
    }

    private void handle(Socket raw) {
        try {
            // autoClose=false: after a refused handshake the raw socket stays ours to linger on.
            SSLSocket socket = (SSLSocket) factory.createSocket(raw, null, false);
            socket.setSSLParameters(serverParameters);
            Peer peer = handshake(raw, socket);
            if (peer == null) {
                linger(raw);
            } else {
                OpenConnection conn = established.register(raw, socket, peer, peerChain(socket));
                try {
                    http.serve(socket, conn, established);
                } finally {
                    established.remove(conn);
                    // After a completed handshake, close with close_notify (OpenSSL 3 clients
                    // report a bare TCP close as an unexpected EOF).
                    socket.close();
                }
            }
        } catch (IOException | RuntimeException e) {
            // A broken connection ends here; the accept loop and other connections go on.
            if (running.get() && !(e instanceof SocketTimeoutException) && !(e instanceof SocketException)) {
                log.debug("connection_error", "peer_addr", peerAddr(raw), "reason", e.toString());
            }
        } finally {
            close(raw);
        }
    }

    /** The verified peer, or null after counting and logging the failure. */
    private Peer handshake(Socket raw, SSLSocket socket) throws IOException {
        AtomicBoolean late = new AtomicBoolean();
        ScheduledFuture<?> watchdog = timer.schedule(() -> {
            late.set(true);
            close(raw);
        }, handshakeTimeoutMs, TimeUnit.MILLISECONDS);
        try {
            raw.setSoTimeout(handshakeTimeoutMs);
            socket.startHandshake();
        } catch (IOException | RuntimeException e) {
            watchdog.cancel(false);
            HandshakeFailure f = HandshakeFailure.classify(e, late.get());
            metrics.handshakeFailed(f.reason().label());
            // The log schema types peer_spiffe_id as a spiffe:// URI or null: a claimed URI SAN of
            // another scheme (a bad_spiffe_id peer) goes under peer_uri instead.
            String claimed = f.peerSpiffeId();
            boolean spiffe = claimed != null && claimed.startsWith("spiffe://");
            if (claimed == null || spiffe) {
                log.warn("handshake_rejected", "reason", f.reason().label(), "detail", f.detail(),
                        "peer_addr", peerAddr(raw), "peer_spiffe_id", claimed, "peer_serial", f.peerSerial());
            } else {
                log.warn("handshake_rejected", "reason", f.reason().label(), "detail", f.detail(),
                        "peer_addr", peerAddr(raw), "peer_spiffe_id", null, "peer_serial", f.peerSerial(),
                        "peer_uri", claimed);
            }
            return null;
        }
        watchdog.cancel(false);
        SSLSession session = socket.getSession();
        Certificate[] peerCerts = session.getPeerCertificates();
        X509Certificate leaf = (X509Certificate) peerCerts[0];
        Certificate[] local = session.getLocalCertificates();
        String localSerial = local == null || local.length == 0 ? null : Serials.hex((X509Certificate) local[0]);
        metrics.handshakeSucceeded();
        return new Peer(SvidRules.claimedId(leaf), Serials.hex(leaf), localSerial, session.getProtocol(),
                peerAddr(raw));
    }

    private static List<X509Certificate> peerChain(SSLSocket socket) throws IOException {
        List<X509Certificate> chain = new ArrayList<>();
        for (Certificate c : socket.getSession().getPeerCertificates()) {
            chain.add((X509Certificate) c);
        }
        return chain;
    }

    /** The established connections, for ending those whose peer is revoked (issue 18). */
    public OpenConnections established() {
        return established;
    }

    /**
     * After refusing a handshake: half-close, drain what the client still sends for a moment,
     * then let the caller close. In TLS 1.3 the client finishes its side of the handshake before
     * we have judged its certificate and usually sends its request at once; closing with that
     * request unread makes the kernel send a TCP RST, which can destroy our alert before the
     * client reads it (it then sees "broken pipe" or a bare EOF instead of the alert).
     */
    private static void linger(Socket raw) {
        try {
            raw.shutdownOutput();
            raw.setSoTimeout(LINGER_MS);
            long deadline = System.nanoTime() + LINGER_MS * 1_000_000L;
            InputStream in = raw.getInputStream();
            byte[] buf = new byte[4096];
            while (System.nanoTime() < deadline && in.read(buf) >= 0) {
                // discard: the client's request to a connection we refused
            }
        } catch (IOException e) {
            // the client closed or reset first, or the drain timed out: nothing more to wait for
        }
    }

    private static String peerAddr(Socket s) {
        var a = s.getRemoteSocketAddress();
        if (a instanceof InetSocketAddress i) {
            return i.getAddress().getHostAddress() + ":" + i.getPort();
        }
        return String.valueOf(a);
    }

    private void close(Socket s) {
        open.remove(s);
        try {
            s.close();
        } catch (IOException e) {
            // already broken; nothing to release
        }
    }

    @Override
    public void close() {
        running.set(false);
        if (serverSocket != null) {
            try {
                serverSocket.close();
            } catch (IOException e) {
                // closing anyway
            }
        }
        connections.shutdownNow();
        for (Socket s : open) {
            close(s);
        }
        try {
            connections.awaitTermination(2, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
