package zt.serviceb.http;

import java.util.List;
import java.util.Map;

/**
 * One parsed request head. {@code path} and {@code query} are the raw (undecoded) parts of an
 * origin-form target: routing and policy both see the same raw path, so no decoding step can
 * make them disagree.
 */
public record HttpRequest(String method, String target, String path, String query, String version,
                          Map<String, List<String>> headers, boolean keepAlive, boolean hasBody) {

    /** The first value of a header (name in any case), or null. */
    public String header(String name) {
        List<String> v = headers.get(name.toLowerCase(java.util.Locale.ROOT));
        return v == null || v.isEmpty() ? null : v.get(0);
    }
}
