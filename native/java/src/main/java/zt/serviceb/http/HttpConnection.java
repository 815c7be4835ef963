package zt.serviceb.http;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.net.Socket;
import java.util.concurrent.Semaphore;

/**
 * The request loop of one established connection: keep-alive until the client closes, asks to
 * close, sends a body, sends something malformed (400, then close), sends a head over 16 KiB
 * (431, then close) or stays idle past the idle timeout.
 *
 * <p>Reading a request head waits on the client and runs on the connection's own thread; only
 * routing a complete request (which may make an outbound call) takes one of {@code workers}
 * permits, so at most that many requests are handled at once however many connections are open,
 * and a client that is slow to send its request holds no worker.
 */
public final class HttpConnection {
    private final Router router;
    private final int idleTimeoutMs;
    private final Semaphore workers;

    public HttpConnection(Router router, int idleTimeoutMs, int workers) {
        this.router = router;
        this.idleTimeoutMs = idleTimeoutMs;
        this.workers = new Semaphore(workers, true);
    }

    /**
     * Serves {@code conn} until it closes. Before each request the peer is checked again
     * (issue 18): a connection ended meanwhile (its peer revoked) is closed without an answer;
     * a peer whose certificate has expired gets 401 {@code peer_certificate_expired} and the
     * connection is closed. A connection ended while a request was in flight is closed right
     * after that request's response.
     */
    public void serve(Socket socket, OpenConnection conn, OpenConnections all) throws IOException {
        Peer peer = conn.peer();
        RequestReader reader = new RequestReader(socket.getInputStream(), socket);
        OutputStream out = new BufferedOutputStream(socket.getOutputStream());
        while (true) {
            HttpRequest req;
            try {
                req = reader.next(idleTimeoutMs);
            } catch (HttpProtocolException e) {
                router.refused(e, peer).writeTo(out, true);
                return;
            }
            if (req == null) {
                return;
            }
            switch (conn.beginRequest(all.clock().instant())) {
                case ENDED -> {
                    return;
                }
                case EXPIRED -> {
                    all.expiredAtRequest(conn);
                    HttpResponse.error(401, "peer_certificate_expired", "the client certificate (serial "
                            + peer.serial() + ") expired at " + conn.notAfter() + "; reconnect with a valid one")
                            .writeTo(out, true);
                    return;
                }
                case SERVE -> {
                    // go on
                }
            }
            boolean ended;
            // A request body is never read (GET only), so the connection cannot be reused after one.
            boolean close = !req.keepAlive() || req.hasBody();
            try {
                HttpResponse resp = handle(req, peer);
                // Ended while this request was handled: say so in the response (Connection: close).
                resp.writeTo(out, close || conn.isEnding());
            } finally {
                ended = conn.endRequest() != null;
            }
            if (close || ended) {
                return;
            }
        }
    }

    private HttpResponse handle(HttpRequest req, Peer peer) throws InterruptedIOException {
        try {
            workers.acquire();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("shutting down");
        }
        try {
            return router.handle(req, peer);
        } finally {
            workers.release();
        }
    }
}
