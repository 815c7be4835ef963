package zt.serviceb.http;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.Socket;

/**
 * The request loop of one established connection: keep-alive until the client closes, asks to
 * close, sends a body, sends something malformed (400, then close), sends a head over 16 KiB
 * (431, then close) or stays idle past the idle timeout.
 */
public final class HttpConnection {
    private final Router router;
    private final int idleTimeoutMs;

    public HttpConnection(Router router, int idleTimeoutMs) {
        this.router = router;
        this.idleTimeoutMs = idleTimeoutMs;
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
            HttpResponse resp = router.handle(req, peer);
            // A request body is never read (GET only), so the connection cannot be reused after one.
            boolean close = !req.keepAlive() || req.hasBody();
            resp.writeTo(out, close);
            if (close) {
                return;
            }
        }
    }
}
