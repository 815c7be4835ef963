package zt.serviceb.http;

/** A request the server answers with an error status and then closes the connection. */
public final class HttpProtocolException extends Exception {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String error;

    public HttpProtocolException(int status, String error, String reason) {
        super(reason);
        this.status = status;
        this.error = error;
    }

    public static HttpProtocolException badRequest(String reason) {
        return new HttpProtocolException(400, "bad_request", reason);
    }

    public int status() {
        return status;
    }

    public String error() {
        return error;
    }
}
