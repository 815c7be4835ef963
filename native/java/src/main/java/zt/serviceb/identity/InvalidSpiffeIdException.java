package zt.serviceb.identity;

/** A string is not a syntactically valid SPIFFE ID; the message names the broken rule. */
public final class InvalidSpiffeIdException extends Exception {
    public InvalidSpiffeIdException(String message) {
        super(message);
    }
}
