package zt.serviceb.identity;

/** A string is not a syntactically valid SPIFFE ID; the message names the broken rule. */
public final class InvalidSpiffeIdException extends Exception {
    private static final long serialVersionUID = 1L;

    public InvalidSpiffeIdException(String message) {
        super(message);
    }
}
