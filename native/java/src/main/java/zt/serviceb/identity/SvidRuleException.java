package zt.serviceb.identity;

/** A certificate breaks one of the X509-SVID leaf rules; the message cites the rule. */
public final class SvidRuleException extends Exception {
    private static final long serialVersionUID = 1L;

    public SvidRuleException(String message) {
        super(message);
    }
}
