package zt.serviceb.identity;

import java.util.Objects;

/**
 * A SPIFFE ID ({@code spiffe://<trust-domain>/<path>}), parsed strictly.
 *
 * <p>Rules from the SPIFFE-ID standard (section 2): scheme {@code spiffe}; no query, fragment,
 * userinfo or port; the trust domain is non-empty lowercase {@code a-z 0-9 . - _} without
 * percent-encoding; path segments are non-empty, not {@code .} or {@code ..}, and use only
 * {@code A-Z a-z 0-9 . - _}. A leaf's ID must have a non-root path (X509-SVID 3.1).
 */
public final class SpiffeId {
    private static final String SCHEME = "spiffe://";
    /** SPIFFE-ID 2.3: maximum length of a SPIFFE ID in bytes. */
    private static final int MAX_LENGTH = 2048;
    /** SPIFFE-ID 2.1: maximum trust domain length. */
    private static final int MAX_TRUST_DOMAIN = 255;

    private final String trustDomain;
    private final String path;

    private SpiffeId(String trustDomain, String path) {
        this.trustDomain = trustDomain;
        this.path = path;
    }

    /** Parses {@code text}; throws {@link InvalidSpiffeIdException} saying which rule failed. */
    public static SpiffeId parse(String text) throws InvalidSpiffeIdException {
        if (text == null || text.isEmpty()) {
            throw new InvalidSpiffeIdException("empty SPIFFE ID");
        }
        if (text.length() > MAX_LENGTH) {
            throw new InvalidSpiffeIdException("SPIFFE ID longer than " + MAX_LENGTH + " bytes");
        }
        if (!text.startsWith(SCHEME)) {
            throw new InvalidSpiffeIdException("scheme is not spiffe:// in " + quote(text));
        }
        String rest = text.substring(SCHEME.length());
        int slash = rest.indexOf('/');
        String td = slash < 0 ? rest : rest.substring(0, slash);
        String path = slash < 0 ? "" : rest.substring(slash);
        checkTrustDomain(td, text);
        checkPath(path, text);
        return new SpiffeId(td, path);
    }

    /** Builds the trust-domain ID {@code spiffe://td} after checking the name. */
    public static SpiffeId ofTrustDomain(String trustDomain) throws InvalidSpiffeIdException {
        return parse(SCHEME + trustDomain);
    }

    private static void checkTrustDomain(String td, String whole) throws InvalidSpiffeIdException {
        if (td.isEmpty()) {
            throw new InvalidSpiffeIdException("empty trust domain in " + quote(whole));
        }
        if (td.length() > MAX_TRUST_DOMAIN) {
            throw new InvalidSpiffeIdException("trust domain longer than " + MAX_TRUST_DOMAIN + " characters");
        }
        for (int i = 0; i < td.length(); i++) {
            char c = td.charAt(i);
            boolean ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
            if (!ok) {
                throw new InvalidSpiffeIdException("trust domain has invalid character " + describe(c)
                        + " (only lowercase a-z 0-9 . - _; no port, userinfo or percent-encoding) in "
                        + quote(whole));
            }
        }
    }

    private static void checkPath(String path, String whole) throws InvalidSpiffeIdException {
        if (path.isEmpty()) {
            return;
        }
        // path starts with '/': split keeps trailing empty segments with limit -1.
        String[] segments = path.substring(1).split("/", -1);
        for (String seg : segments) {
            if (seg.isEmpty()) {
                throw new InvalidSpiffeIdException("empty path segment in " + quote(whole));
            }
            if (seg.equals(".") || seg.equals("..")) {
                throw new InvalidSpiffeIdException("path segment '" + seg + "' in " + quote(whole));
            }
            for (int i = 0; i < seg.length(); i++) {
                char c = seg.charAt(i);
                boolean ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                        || c == '.' || c == '-' || c == '_';
                if (!ok) {
                    throw new InvalidSpiffeIdException("path has invalid character " + describe(c)
                            + " (only A-Z a-z 0-9 . - _; no query or fragment) in " + quote(whole));
                }
            }
        }
    }

    private static String describe(char c) {
        return c < 0x20 || c > 0x7e ? String.format("U+%04X", (int) c) : "'" + c + "'";
    }

    private static String quote(String s) {
        String cut = s.length() > 200 ? s.substring(0, 200) + "..." : s;
        return "\"" + cut + "\"";
    }

    public String trustDomain() {
        return trustDomain;
    }

    /** The path, {@code ""} for a trust-domain ID, otherwise starting with {@code /}. */
    public String path() {
        return path;
    }

    /** X509-SVID 3.1: a leaf's SPIFFE ID must name a workload, not the trust domain itself. */
    public boolean hasWorkloadPath() {
        return !path.isEmpty();
    }

    public boolean isMemberOf(String otherTrustDomain) {
        return trustDomain.equals(otherTrustDomain);
    }

    @Override
    public String toString() {
        return SCHEME + trustDomain + path;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SpiffeId other && trustDomain.equals(other.trustDomain) && path.equals(other.path);
    }

    @Override
    public int hashCode() {
        return Objects.hash(trustDomain, path);
    }
}
