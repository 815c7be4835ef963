package zt.serviceb.tls;

/** Handshake failure reasons, as named in contracts.md section 6 (metrics label and log field). */
public enum RejectReason {
    NO_CLIENT_CERT("no_client_cert"),
    UNTRUSTED("untrusted"),
    EXPIRED("expired"),
    REVOKED("revoked"),
    BAD_SPIFFE_ID("bad_spiffe_id"),
    CRL_STALE("crl_stale"),
    TIMEOUT("timeout"),
    PROTOCOL("protocol");

    private final String label;

    RejectReason(String label) {
        this.label = label;
    }

    public String label() {
        return label;
    }
}
