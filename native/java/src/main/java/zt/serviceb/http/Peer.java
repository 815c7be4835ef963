package zt.serviceb.http;

/**
 * Who is on the other end of an established mTLS connection, and what this side presented.
 *
 * @param spiffeId     the caller's verified SPIFFE ID
 * @param serial       the caller's leaf serial (hex)
 * @param localSerial  the serial of the certificate this connection's handshake presented
 * @param tlsVersion   e.g. {@code TLSv1.3}
 * @param address      the caller's address, for logs
 */
public record Peer(String spiffeId, String serial, String localSerial, String tlsVersion, String address) {
}
