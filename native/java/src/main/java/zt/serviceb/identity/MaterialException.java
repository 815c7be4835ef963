package zt.serviceb.identity;

/**
 * Identity material (key, certificates, trust bundle, CRL, policy) could not be read or did not
 * validate. The message says what and where; secrets never appear in it.
 */
public class MaterialException extends Exception {
    private static final long serialVersionUID = 1L;

    public MaterialException(String message) {
        super(message);
    }

    public MaterialException(String message, Throwable cause) {
        super(message, cause);
    }
}
