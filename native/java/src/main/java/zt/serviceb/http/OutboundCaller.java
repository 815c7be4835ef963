package zt.serviceb.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.TextNode;
import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.NoRouteToHostException;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;

import zt.serviceb.identity.InvalidSpiffeIdException;
import zt.serviceb.identity.Serials;
import zt.serviceb.identity.SpiffeId;
import zt.serviceb.identity.SvidRuleException;
import zt.serviceb.identity.SvidRules;
import zt.serviceb.tls.SvidRejectedException;
import zt.serviceb.tls.TlsContext;

/**
 * Makes one outbound mTLS {@code GET} with the service's current identity (the same stable
 * SSLContext as the listener). The server's chain is checked by the same verifier (bundle, CRL,
 * SVID rules); the host name is not checked, the SPIFFE ID is, against the expected one.
 */
public final class OutboundCaller {
    private static final int MAX_RESPONSE_HEAD = 64 * 1024;
    private static final int MAX_RESPONSE_BODY = 1024 * 1024;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final TlsContext tls;
    private final ScheduledExecutorService timer;
    private final int handshakeTimeoutMs;
    private final int readTimeoutMs;

    public OutboundCaller(TlsContext tls, ScheduledExecutorService timer, int handshakeTimeoutMs, int readTimeoutMs) {
        this.tls = tls;
        this.timer = timer;
        this.handshakeTimeoutMs = handshakeTimeoutMs;
        this.readTimeoutMs = readTimeoutMs;
    }

    /** A checked {@code https://host[:port]/path[?query]} target. */
    public record Target(String host, int port, String pathAndQuery, String text) {
    }

    public static Target parseTarget(String text) throws IllegalArgumentException {
        URI uri;
        try {
            uri = new URI(text);
        } catch (URISyntaxException e) {
            throw new IllegalArgumentException("target is not a URL: " + e.getReason());
        }
        if (uri.getScheme() == null || !uri.getScheme().toLowerCase(Locale.ROOT).equals("https")) {
            throw new IllegalArgumentException("target must be an https:// URL");
        }
        String host = uri.getHost();
        if (host == null || host.isEmpty()) {
            throw new IllegalArgumentException("target has no host");
        }
        if (uri.getRawUserInfo() != null || uri.getRawFragment() != null) {
            throw new IllegalArgumentException("target must not have userinfo or a fragment");
        }
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port = uri.getPort() < 0 ? 443 : uri.getPort();
        String path = uri.getRawPath() == null || uri.getRawPath().isEmpty() ? "/" : uri.getRawPath();
        String pq = uri.getRawQuery() == null ? path : path + "?" + uri.getRawQuery();
        return new Target(host, port, pq, text);
    }

    public CallResult call(Target target, SpiffeId expected) {
        SSLSocket socket;
        try {
            socket = (SSLSocket) tls.context().getSocketFactory().createSocket();
        } catch (IOException e) {
            return new CallResult.Failed(502, "upstream_error", "cannot create socket: " + e.getMessage(), null, null);
        }
        try (socket) {
            try {
                socket.connect(new InetSocketAddress(target.host(), target.port()), handshakeTimeoutMs);
            } catch (SocketTimeoutException e) {
                return new CallResult.Failed(504, "upstream_timeout", "connect to " + target.host() + ":"
                        + target.port() + " timed out after " + handshakeTimeoutMs + " ms", null, null);
            } catch (ConnectException | NoRouteToHostException | UnknownHostException e) {
                return new CallResult.Failed(502, "upstream_error", "cannot connect to " + target.host() + ":"
                        + target.port() + ": " + e.getMessage(), null, null);
            }
            SSLParameters params = tls.parameters(false);
            if (!isIpLiteral(target.host())) {
                params.setServerNames(List.of(new SNIHostName(target.host())));
            }
            socket.setSSLParameters(params);
            CallResult.Failed handshakeFailure = handshake(socket);
            if (handshakeFailure != null) {
                return handshakeFailure;
            }
            Certificate[] peerCerts = socket.getSession().getPeerCertificates();
            X509Certificate leaf = (X509Certificate) peerCerts[0];
            String peerSerial = Serials.hex(leaf);
            String peer;
            try {
                peer = SvidRules.checkLeaf(leaf).toString();
            } catch (SvidRuleException e) {
                return new CallResult.Failed(502, "upstream_tls", "certificate verify failed: " + e.getMessage(),
                        null, peerSerial);
            }
            if (!peer.equals(expected.toString())) {
                return new CallResult.Failed(502, "peer_identity_mismatch", "expected " + expected + ", got " + peer,
                        peer, peerSerial);
            }
            return exchange(socket, target, peer, peerSerial);
        } catch (IOException e) {
            return new CallResult.Failed(502, "upstream_error", e.getClass().getSimpleName() + ": " + e.getMessage(),
                    null, null);
        }
    }

    /** Null on success, else the failure; bounded by the handshake timeout as a whole. */
    private CallResult.Failed handshake(SSLSocket socket) throws IOException {
        AtomicBoolean late = new AtomicBoolean();
        socket.setSoTimeout(handshakeTimeoutMs);
        ScheduledFuture<?> watchdog = timer.schedule(() -> {
            late.set(true);
            closeQuietly(socket);
        }, handshakeTimeoutMs, TimeUnit.MILLISECONDS);
        try {
            socket.startHandshake();
            return null;
        } catch (IOException e) {
            for (Throwable t = e; t != null; t = t.getCause()) {
                if (t instanceof SvidRejectedException r) {
                    return new CallResult.Failed(502, "upstream_tls", "certificate verify failed: "
                            + r.getMessage(), r.peerSpiffeId(), r.peerSerial());
                }
            }
            if (late.get() || e instanceof SocketTimeoutException) {
                return new CallResult.Failed(504, "upstream_timeout", "TLS handshake not finished within "
                        + handshakeTimeoutMs + " ms", null, null);
            }
            return new CallResult.Failed(502, "upstream_tls", "handshake failed: " + e.getMessage(), null, null);
        } finally {
            watchdog.cancel(false);
        }
    }

    private CallResult exchange(SSLSocket socket, Target target, String peer, String peerSerial) {
        AtomicBoolean late = new AtomicBoolean();
        ScheduledFuture<?> watchdog = timer.schedule(() -> {
            late.set(true);
            closeQuietly(socket);
        }, readTimeoutMs, TimeUnit.MILLISECONDS);
        try {
            socket.setSoTimeout(readTimeoutMs);
            String hostHeader = target.host().contains(":") ? "[" + target.host() + "]" : target.host();
            String request = "GET " + target.pathAndQuery() + " HTTP/1.1\r\n"
                    + "Host: " + hostHeader + ":" + target.port() + "\r\n"
                    + "Accept: application/json\r\n"
                    + "Connection: close\r\n\r\n";
            OutputStream out = socket.getOutputStream();
            out.write(request.getBytes(StandardCharsets.US_ASCII));
            out.flush();
            Upstream r = readResponse(new BufferedInputStream(socket.getInputStream()));
            JsonNode body;
            try {
                body = r.body.length == 0 ? TextNode.valueOf("") : JSON.readTree(r.body);
            } catch (IOException e) {
                body = TextNode.valueOf(new String(r.body, StandardCharsets.UTF_8));
            }
            return new CallResult.Answered(peer, peerSerial, r.status, body);
        } catch (SocketTimeoutException e) {
            return new CallResult.Failed(504, "upstream_timeout", "no complete response within " + readTimeoutMs
                    + " ms", peer, peerSerial);
        } catch (SSLException e) {
            // TLS 1.3: the server checks our certificate after our side of the handshake
            // finished, so its refusal arrives as an alert on the first read.
            return new CallResult.Failed(502, "upstream_tls", "peer refused the connection: " + e.getMessage(),
                    peer, peerSerial);
        } catch (IOException e) {
            if (late.get()) {
                return new CallResult.Failed(504, "upstream_timeout", "no complete response within "
                        + readTimeoutMs + " ms", peer, peerSerial);
            }
            return new CallResult.Failed(502, "upstream_error", "bad HTTP response: " + e.getMessage(), peer,
                    peerSerial);
        } finally {
            watchdog.cancel(false);
        }
    }

    private record Upstream(int status, byte[] body) {
    }

    private static Upstream readResponse(InputStream in) throws IOException {
        String statusLine = readLine(in, MAX_RESPONSE_HEAD);
        String[] parts = statusLine.split(" ", 3);
        if (parts.length < 2 || !parts[0].startsWith("HTTP/1.") || parts[1].length() != 3) {
            throw new IOException("bad status line");
        }
        int status;
        try {
            status = Integer.parseInt(parts[1]);
        } catch (NumberFormatException e) {
            throw new IOException("bad status code");
        }
        long length = -1;
        boolean chunked = false;
        int headBytes = statusLine.length();
        while (true) {
            String line = readLine(in, MAX_RESPONSE_HEAD - headBytes);
            headBytes += line.length() + 2;
            if (line.isEmpty()) {
                break;
            }
            int colon = line.indexOf(':');
            if (colon <= 0) {
                throw new IOException("bad header line");
            }
            String name = line.substring(0, colon).strip().toLowerCase(Locale.ROOT);
            String value = line.substring(colon + 1).strip();
            if (name.equals("content-length")) {
                try {
                    length = Long.parseLong(value);
                } catch (NumberFormatException e) {
                    throw new IOException("bad Content-Length");
                }
            } else if (name.equals("transfer-encoding") && value.toLowerCase(Locale.ROOT).contains("chunked")) {
                chunked = true;
            }
        }
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        if (chunked) {
            while (true) {
                String sizeLine = readLine(in, 1024);
                int semi = sizeLine.indexOf(';');
                int size;
                try {
                    size = Integer.parseInt((semi < 0 ? sizeLine : sizeLine.substring(0, semi)).strip(), 16);
                } catch (NumberFormatException e) {
                    throw new IOException("bad chunk size");
                }
                if (size == 0) {
                    break;
                }
                copy(in, body, size);
                readLine(in, 2);
            }
        } else if (length >= 0) {
            if (length > MAX_RESPONSE_BODY) {
                throw new IOException("response body over " + MAX_RESPONSE_BODY + " bytes");
            }
            copy(in, body, (int) length);
        } else {
            byte[] b = new byte[8192];
            int n;
            while ((n = in.read(b)) >= 0) {
                body.write(b, 0, n);
                if (body.size() > MAX_RESPONSE_BODY) {
                    throw new IOException("response body over " + MAX_RESPONSE_BODY + " bytes");
                }
            }
        }
        return new Upstream(status, body.toByteArray());
    }

    private static void copy(InputStream in, ByteArrayOutputStream out, int n) throws IOException {
        if (out.size() + n > MAX_RESPONSE_BODY) {
            throw new IOException("response body over " + MAX_RESPONSE_BODY + " bytes");
        }
        byte[] b = in.readNBytes(n);
        if (b.length != n) {
            throw new IOException("response ended early");
        }
        out.write(b);
    }

    private static String readLine(InputStream in, int max) throws IOException {
        StringBuilder b = new StringBuilder();
        while (true) {
            int c = in.read();
            if (c < 0) {
                throw new IOException("response ended early");
            }
            if (c == '\n') {
                int len = b.length();
                if (len > 0 && b.charAt(len - 1) == '\r') {
                    b.setLength(len - 1);
                }
                return b.toString();
            }
            b.append((char) c);
            if (b.length() > max) {
                throw new IOException("response head too large");
            }
        }
    }

    private static boolean isIpLiteral(String host) {
        return host.contains(":") || host.chars().allMatch(c -> c == '.' || Character.isDigit(c));
    }

    private static void closeQuietly(SSLSocket s) {
        try {
            s.close();
        } catch (IOException e) {
            // closing to enforce a deadline; nothing more to do
        }
    }

    /** For the router: parse an {@code expect} value, naming the failure. */
    public static SpiffeId parseExpected(String text) throws InvalidSpiffeIdException {
        return SpiffeId.parse(text);
    }
}
