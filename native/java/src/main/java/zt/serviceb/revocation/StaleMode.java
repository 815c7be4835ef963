package zt.serviceb.revocation;

import java.util.Locale;

/** {@code --crl-stale}: what a handshake does when a loaded CRL is past its nextUpdate. */
public enum StaleMode {
    /** Fail closed, as stock OpenSSL CRL checking does: refuse with reason {@code crl_stale}. */
    REFUSE,
    /** Fail open with an alarm: proceed, but set {@code mtls_crl_stale} and log {@code crl_stale}. */
    WARN;

    public static StaleMode parse(String s) {
        return switch (s) {
            case "refuse" -> REFUSE;
            case "warn" -> WARN;
            default -> throw new IllegalArgumentException("--crl-stale must be refuse or warn, not '" + s + "'");
        };
    }

    public String flag() {
        return name().toLowerCase(Locale.ROOT);
    }
}
