package zt.serviceb.identity;

import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Set;

/**
 * The checks a validator makes on an X509-SVID leaf beyond RFC 5280 path validation
 * (SPIFFE X509-SVID section 5.2), each tied to its section.
 */
public final class SvidRules {
    private static final int SAN_URI = 6;
    private static final String OID_KEY_USAGE = "2.5.29.15";
    private static final String OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
    private static final String OID_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
    private static final int KU_DIGITAL_SIGNATURE = 0;
    private static final int KU_KEY_CERT_SIGN = 5;
    private static final int KU_CRL_SIGN = 6;

    private SvidRules() {
    }

    /** The URI SANs of {@code cert}, in order (possibly empty). */
    public static List<String> uriSans(X509Certificate cert) throws SvidRuleException {
        Collection<List<?>> sans;
        try {
            sans = cert.getSubjectAlternativeNames();
        } catch (CertificateParsingException e) {
            throw new SvidRuleException("unparsable subjectAltName: " + e.getMessage());
        }
        List<String> uris = new ArrayList<>();
        if (sans != null) {
            for (List<?> san : sans) {
                if (san.size() >= 2 && Integer.valueOf(SAN_URI).equals(san.get(0))) {
                    uris.add(String.valueOf(san.get(1)));
                }
            }
        }
        return uris;
    }

    /** Best effort for logs: the single URI SAN, or null when there is not exactly one. */
    public static String claimedId(X509Certificate cert) {
        try {
            List<String> uris = uriSans(cert);
            return uris.size() == 1 ? uris.get(0) : null;
        } catch (SvidRuleException e) {
            return null;
        }
    }

    /**
     * Checks the leaf rules and returns its SPIFFE ID: exactly one URI SAN (section 2), a valid
     * SPIFFE ID with a non-root path (3.1), cA=false (4.1), key usage present, critical, with
     * digitalSignature and without keyCertSign/cRLSign (4.3), and, when an EKU is present, both
     * serverAuth and clientAuth (4.4).
     */
    public static SpiffeId checkLeaf(X509Certificate leaf) throws SvidRuleException {
        List<String> uris = uriSans(leaf);
        if (uris.size() != 1) {
            throw new SvidRuleException("expected exactly one URI SAN, found " + uris.size());
        }
        SpiffeId id;
        try {
            id = SpiffeId.parse(uris.get(0));
        } catch (InvalidSpiffeIdException e) {
            throw new SvidRuleException("invalid SPIFFE ID: " + e.getMessage());
        }
        if (!id.hasWorkloadPath()) {
            throw new SvidRuleException("leaf SPIFFE ID " + id + " has no path (X509-SVID 3.1)");
        }
        if (leaf.getBasicConstraints() != -1) {
            throw new SvidRuleException("CA certificate used as a leaf (X509-SVID 4.1: cA must be false)");
        }
        boolean[] ku = leaf.getKeyUsage();
        if (ku == null) {
            throw new SvidRuleException("leaf has no key usage extension (X509-SVID 4.3)");
        }
        Set<String> critical = leaf.getCriticalExtensionOIDs();
        if (critical == null || !critical.contains(OID_KEY_USAGE)) {
            throw new SvidRuleException("leaf key usage is not critical (X509-SVID 4.3)");
        }
        if (ku.length > KU_KEY_CERT_SIGN && ku[KU_KEY_CERT_SIGN]) {
            throw new SvidRuleException("leaf has keyCertSign (X509-SVID 4.3)");
        }
        if (ku.length > KU_CRL_SIGN && ku[KU_CRL_SIGN]) {
            throw new SvidRuleException("leaf has cRLSign (X509-SVID 4.3)");
        }
        if (!ku[KU_DIGITAL_SIGNATURE]) {
            throw new SvidRuleException("leaf lacks digitalSignature (X509-SVID 4.3)");
        }
        List<String> eku;
        try {
            eku = leaf.getExtendedKeyUsage();
        } catch (CertificateParsingException e) {
            throw new SvidRuleException("unparsable extended key usage: " + e.getMessage());
        }
        if (eku != null && !(eku.contains(OID_SERVER_AUTH) && eku.contains(OID_CLIENT_AUTH))) {
            throw new SvidRuleException("leaf EKU lacks serverAuth or clientAuth (X509-SVID 4.4)");
        }
        return id;
    }
}
