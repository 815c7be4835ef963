package zt.serviceb.identity;

/** A certificate breaks one of the X509-SVID leaf rules; the message cites the rule. */
public final class SvidRuleException extends Exception {
    public SvidRuleException(String message) {
        super(message);
    }
}
