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

    public void serve(Socket socket, Peer peer) throws IOException {
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
            HttpResponse resp = handle(req, peer);
            // A request body is never read (GET only), so the connection cannot be reused after one.
            boolean close = !req.keepAlive() || req.hasBody();
            resp.writeTo(out, close);
            if (close) {
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
