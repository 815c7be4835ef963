package zt.serviceb.identity;

import java.math.BigInteger;
import java.security.cert.X509Certificate;

/** Contract section 1: serials are lowercase hex without leading zeros or separators. */
public final class Serials {
    private Serials() {
    }

    public static String hex(BigInteger serial) {
        return serial.toString(16);
    }

    public static String hex(X509Certificate cert) {
        return hex(cert.getSerialNumber());
    }
}
