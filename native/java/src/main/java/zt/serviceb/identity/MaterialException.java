package zt.serviceb.identity;

/**
 * Identity material (key, certificates, trust bundle, CRL, policy) could not be read or did not
 * validate. The message says what and where; secrets never appear in it.
 */
public class MaterialException extends Exception {
    private static final long serialVersionUID = 1L;

    public MaterialException(String message) {
        super(message);
        this.code = null;
    }

    /** A machine-readable reason for the log, or null when the message is the whole story. */
    private final String code;

    public MaterialException(String message, Throwable cause) {
        super(message, cause);
        this.code = null;
    }

    /** {@code code} is a fixed reason word the logs carry (e.g. {@code bundle_checksum_mismatch}). */
    public MaterialException(String code, String message) {
        super(code + ": " + message);
        this.code = code;
    }

    public String code() {
        return code;
    }
}
