package zt.serviceb.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.util.List;
import java.util.Map;

/**
 * Jazzer fuzz target for {@link RequestReader} (issue 19; docs/testing.md): any bytes from a
 * connection give parsed requests, a clean end, or an {@link HttpProtocolException} with 400 or
 * 431, never another exception, a hang (the loop is bounded by the input's length) or more than
 * one head's worth of memory. Every parsed request keeps the reader's promises (a token method,
 * an origin-form target, exactly one Host on HTTP/1.1, header values without control
 * characters), and the first head of the input holds no control character other than HTAB, CR
 * before LF, and LF (RFC 9110 5.5, 5.6.2; RFC 9112 2.2, 3). Committed inputs:
 * {@code RequestReaderFuzzInputs/} in src/test/resources beside this class's package.
 */
class RequestReaderFuzz {
    @FuzzTest(maxDuration = "30s")
    void read_any_bytes_as_requests_or_a_clean_rejection(byte[] data) throws IOException {
        RequestReader reader = new RequestReader(new ByteArrayInputStream(data), null);
        // Each parsed head consumes at least one byte, so more requests than bytes is a loop.
        for (int n = 0; n <= data.length; n++) {
            HttpRequest request;
            try {
                request = reader.next(1_000);
            } catch (HttpProtocolException e) {
                assertTrue(e.status() == 400 || e.status() == 431, "status " + e.status());
                assertFalse(e.error().isEmpty());
                assertFalse(e.getMessage() == null || e.getMessage().isEmpty());
                return;
            }
            if (request == null) {
                return;
            }
            keepsItsPromises(request);
            if (n == 0) {
                firstHeadHasNoControlCharacters(data);
            }
        }
        fail("more requests than input bytes: the reader does not advance");
    }

    private static void keepsItsPromises(HttpRequest r) {
        assertTrue(isToken(r.method()), "method " + r.method());
        assertTrue(r.version().equals("HTTP/1.1") || r.version().equals("HTTP/1.0"));
        assertTrue(r.target().startsWith("/"));
        for (char c : r.target().toCharArray()) {
            assertTrue(c > 0x20 && c < 0x7f && c != '#', "target character " + (int) c);
        }
        assertEquals(r.target(), r.query().isEmpty() && !r.target().contains("?") ? r.path()
                : r.path() + "?" + r.query());
        assertFalse(r.path().contains("?"));
        for (Map.Entry<String, List<String>> h : r.headers().entrySet()) {
            assertTrue(isToken(h.getKey()), "header name " + h.getKey());
            assertEquals(h.getKey().toLowerCase(java.util.Locale.ROOT), h.getKey());
            for (String v : h.getValue()) {
                for (char c : v.toCharArray()) {
                    assertFalse((c < 0x20 && c != '\t') || c == 0x7f, "control character " + (int) c + " in a value");
                }
                assertFalse(v.startsWith(" ") || v.startsWith("\t") || v.endsWith(" ") || v.endsWith("\t"));
            }
        }
        if (r.version().equals("HTTP/1.1")) {
            assertEquals(1, r.headers().get("host").size());
        }
    }

    /** The first head (after the empty lines RFC 9112 2.2 lets a server skip) had no CTL but HTAB/CR/LF. */
    private static void firstHeadHasNoControlCharacters(byte[] data) {
        int start = 0;
        while (start < data.length && (data[start] == '\n'
                || (data[start] == '\r' && start + 1 < data.length && data[start + 1] == '\n'))) {
            start += data[start] == '\r' ? 2 : 1;
        }
        int end = start;
        while (end < data.length) {
            if (data[end] == '\n' && end + 1 < data.length && (data[end + 1] == '\n'
                    || (data[end + 1] == '\r' && end + 2 < data.length && data[end + 2] == '\n'))) {
                break;
            }
            end++;
        }
        for (int i = start; i < end; i++) {
            int b = data[i] & 0xff;
            boolean ctl = b < 0x20 || b == 0x7f;
            boolean allowed = b == '\t' || b == '\n' || (b == '\r' && i + 1 < data.length && data[i + 1] == '\n');
            assertFalse(ctl && !allowed, "accepted a head with control character " + b + " at offset " + i);
        }
    }

    private static boolean isToken(String s) {
        if (s.isEmpty()) {
            return false;
        }
        for (char c : s.toCharArray()) {
            boolean ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                    || "!#$%&'*+-.^_`|~".indexOf(c) >= 0;
            if (!ok) {
                return false;
            }
        }
        return true;
    }
}
