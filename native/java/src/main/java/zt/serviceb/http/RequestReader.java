package zt.serviceb.http;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Reads HTTP/1.1 request heads (RFC 9112) from one connection, keeping any bytes past a head
 * for the next request (pipelining). Limits: the head (request line, headers, blank line) is at
 * most 16 KiB (else 431), and the whole head must arrive before a deadline (else the connection
 * is closed), so a client trickling bytes cannot hold a worker for long.
 */
public final class RequestReader {
    public static final int MAX_HEAD = 16 * 1024;

    private final InputStream in;
    private final Socket socket;
    private final byte[] buf = new byte[MAX_HEAD + 4096];
    private int start;
    private int end;

    /** {@code socket} may be null (tests): then reads block without a deadline. */
    public RequestReader(InputStream in, Socket socket) {
        this.in = in;
        this.socket = socket;
    }

    /**
     * The next request head, or null when the peer closed the connection cleanly between
     * requests. Throws {@link HttpProtocolException} (400 or 431) for a bad head and
     * {@link SocketTimeoutException} when the deadline passes.
     */
    public HttpRequest next(long timeoutMillis) throws IOException, HttpProtocolException {
        long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
        int headEnd;
        while (true) {
            skipLeadingEmptyLines();
            headEnd = findHeadEnd();
            if (headEnd >= 0) {
                break;
            }
            if (end - start >= MAX_HEAD) {
                throw new HttpProtocolException(431, "headers_too_large",
                        "request head exceeds " + MAX_HEAD + " bytes");
            }
            if (!fill(deadline)) {
                if (end == start) {
                    return null;
                }
                throw HttpProtocolException.badRequest("connection closed in the middle of a request head");
            }
        }
        if (headEnd - start > MAX_HEAD) {
            throw new HttpProtocolException(431, "headers_too_large", "request head exceeds " + MAX_HEAD + " bytes");
        }
        String head = new String(buf, start, headEnd - start, StandardCharsets.ISO_8859_1);
        start = headEnd;
        return parse(head);
    }

    /** RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line. */
    private void skipLeadingEmptyLines() {
        while (start < end && (buf[start] == '\r' || buf[start] == '\n')) {
            if (buf[start] == '\r' && (start + 1 >= end || buf[start + 1] != '\n')) {
                return;
            }
            start += buf[start] == '\r' ? 2 : 1;
        }
    }

    /** Index just past the blank line ending the head, or -1. Accepts CRLF and bare LF. */
    private int findHeadEnd() {
        for (int i = start; i < end; i++) {
            if (buf[i] != '\n') {
                continue;
            }
            if (i + 1 < end && buf[i + 1] == '\n') {
                return i + 2;
            }
            if (i + 2 < end && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
                return i + 3;
            }
        }
        return -1;
    }

    private boolean fill(long deadline) throws IOException {
        if (start > 0) {
            System.arraycopy(buf, start, buf, 0, end - start);
            end -= start;
            start = 0;
        }
        if (socket != null) {
            long remaining = (deadline - System.nanoTime()) / 1_000_000L;
            if (remaining <= 0) {
                throw new SocketTimeoutException("request head not complete before the deadline");
            }
            socket.setSoTimeout((int) Math.min(Integer.MAX_VALUE, remaining));
        }
        int n;
        try {
            n = in.read(buf, end, buf.length - end);
        } catch (EOFException e) {
            return false;
        }
        if (n < 0) {
            return false;
        }
        end += n;
        return true;
    }

    static HttpRequest parse(String head) throws HttpProtocolException {
        String[] lines = head.split("\n", -1);
        List<String> clean = new ArrayList<>();
        for (String l : lines) {
            String line = l.endsWith("\r") ? l.substring(0, l.length() - 1) : l;
            if (line.indexOf('\r') >= 0) {
                throw HttpProtocolException.badRequest("bare CR in request head");
            }
            clean.add(line);
        }
        // The head ends with a blank line, which split turns into trailing empty strings.
        while (!clean.isEmpty() && clean.get(clean.size() - 1).isEmpty()) {
            clean.remove(clean.size() - 1);
        }
        if (clean.isEmpty()) {
            throw HttpProtocolException.badRequest("empty request");
        }
        String[] parts = clean.get(0).split(" ", -1);
        if (parts.length != 3) {
            throw HttpProtocolException.badRequest("request line must be 'METHOD target HTTP/1.x'");
        }
        String method = parts[0];
        String target = parts[1];
        String version = parts[2];
        if (method.isEmpty() || !isToken(method)) {
            throw HttpProtocolException.badRequest("invalid method");
        }
        if (!version.equals("HTTP/1.1") && !version.equals("HTTP/1.0")) {
            throw HttpProtocolException.badRequest("unsupported HTTP version '" + printable(version) + "'");
        }
        if (target.isEmpty() || !target.startsWith("/")) {
            throw HttpProtocolException.badRequest("request target must be a path starting with '/'");
        }
        for (int i = 0; i < target.length(); i++) {
            char c = target.charAt(i);
            if (c <= 0x20 || c >= 0x7f || c == '#') {
                throw HttpProtocolException.badRequest("invalid character in request target");
            }
        }
        Map<String, List<String>> headers = new LinkedHashMap<>();
        for (String line : clean.subList(1, clean.size())) {
            if (line.startsWith(" ") || line.startsWith("\t")) {
                throw HttpProtocolException.badRequest("obsolete line folding in headers");
            }
            int colon = line.indexOf(':');
            if (colon <= 0) {
                throw HttpProtocolException.badRequest("header line without a name and ':'");
            }
            String name = line.substring(0, colon);
            if (!isToken(name)) {
                throw HttpProtocolException.badRequest("invalid header name");
            }
            String value = stripOws(line.substring(colon + 1));
            for (int i = 0; i < value.length(); i++) {
                char c = value.charAt(i);
                if ((c < 0x20 && c != '\t') || c == 0x7f) {
                    throw HttpProtocolException.badRequest("control character in header value");
                }
            }
            headers.computeIfAbsent(name.toLowerCase(Locale.ROOT), k -> new ArrayList<>()).add(value);
        }
        List<String> hosts = headers.get("host");
        if (version.equals("HTTP/1.1") && (hosts == null || hosts.size() != 1)) {
            // RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request without exactly one Host.
            throw HttpProtocolException.badRequest("HTTP/1.1 request needs exactly one Host header");
        }
        boolean hasBody = headers.containsKey("transfer-encoding");
        List<String> lengths = headers.get("content-length");
        if (lengths != null) {
            String first = lengths.get(0);
            for (String l : lengths) {
                if (!l.equals(first) || l.isEmpty() || !l.chars().allMatch(Character::isDigit) || l.length() > 18) {
                    throw HttpProtocolException.badRequest("invalid Content-Length");
                }
            }
            if (hasBody) {
                throw HttpProtocolException.badRequest("both Transfer-Encoding and Content-Length");
            }
            hasBody = Long.parseLong(first) > 0;
        }
        String connection = String.join(",", headers.getOrDefault("connection", List.of())).toLowerCase(Locale.ROOT);
        boolean keepAlive = version.equals("HTTP/1.1") ? !hasToken(connection, "close")
                : hasToken(connection, "keep-alive");
        int q = target.indexOf('?');
        String path = q < 0 ? target : target.substring(0, q);
        String query = q < 0 ? "" : target.substring(q + 1);
        return new HttpRequest(method, target, path, query, version, headers, keepAlive, hasBody);
    }

    /**
     * Drops optional whitespace (RFC 9110 5.6.3: SP and HTAB only) around a field value.
     * String.strip() would also drop control characters such as 0x1C-0x1F, 0x0B and 0x0C,
     * and a value made of one would pass as empty instead of being rejected (found by
     * RequestReaderFuzz: "Host: \x1d").
     */
    private static String stripOws(String s) {
        int from = 0;
        int to = s.length();
        while (from < to && (s.charAt(from) == ' ' || s.charAt(from) == '\t')) {
            from++;
        }
        while (to > from && (s.charAt(to - 1) == ' ' || s.charAt(to - 1) == '\t')) {
            to--;
        }
        return s.substring(from, to);
    }

    private static boolean hasToken(String list, String token) {
        for (String t : list.split(",")) {
            if (t.strip().equals(token)) {
                return true;
            }
        }
        return false;
    }

    /** RFC 9110 5.6.2 token characters. */
    private static boolean isToken(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            boolean ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                    || "!#$%&'*+-.^_`|~".indexOf(c) >= 0;
            if (!ok) {
                return false;
            }
        }
        return !s.isEmpty();
    }

    private static String printable(String s) {
        StringBuilder b = new StringBuilder();
        for (char c : s.toCharArray()) {
            b.append(c >= 0x20 && c < 0x7f ? c : '?');
            if (b.length() > 40) {
                break;
            }
        }
        return b.toString();
    }
}
