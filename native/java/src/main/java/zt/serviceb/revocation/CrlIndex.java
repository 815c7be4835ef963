package zt.serviceb.revocation;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.cert.CRL;
import java.security.cert.CertificateFactory;
import java.security.cert.X509CRL;
import java.security.cert.X509CRLEntry;
import java.security.cert.X509Certificate;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import javax.security.auth.x500.X500Principal;

import zt.serviceb.identity.MaterialException;

/**
 * The revoked serials of the loaded CRL(s), indexed by (issuer, serial).
 *
 * <p>Why not the JDK's PKIXRevocationChecker: it re-verifies the CRL's signature (hashing the
 * whole CRL) on every path validation, 3.7 ms per handshake at 100k entries. Contract section 3
 * says "load once, then index": each CRL's signature is verified once here, against a CA
 * certificate the service knows, and a handshake then costs one hash lookup per certificate.
 */
public final class CrlIndex {
    private static final String OID_CRL_NUMBER = "2.5.29.20";
    private static final int KU_CRL_SIGN = 6;

    private final Path source;
    private final Map<X500Principal, Set<BigInteger>> revoked;
    private final int entries;
    private final Instant nextUpdate;
    private final BigInteger crlNumber;
    private final int crlCount;

    private CrlIndex(Path source, Map<X500Principal, Set<BigInteger>> revoked, int entries, Instant nextUpdate,
                     BigInteger crlNumber, int crlCount) {
        this.source = source;
        this.revoked = revoked;
        this.entries = entries;
        this.nextUpdate = nextUpdate;
        this.crlNumber = crlNumber;
        this.crlCount = crlCount;
    }

    /** No CRL configured: nothing is revoked, nothing is stale. */
    public static CrlIndex none() {
        return new CrlIndex(null, Map.of(), 0, null, null, 0);
    }

    /**
     * Reads {@code file} whole (it may hold several PEM CRLs), verifies each CRL's signature
     * against {@code cas} and indexes the entries. Any bad CRL fails the whole load.
     */
    public static CrlIndex load(Path file, Collection<X509Certificate> cas) throws MaterialException {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new MaterialException("cannot read CRL file " + file + ": " + e, e);
        }
        Collection<? extends CRL> crls;
        try {
            crls = CertificateFactory.getInstance("X.509").generateCRLs(new ByteArrayInputStream(bytes));
        } catch (GeneralSecurityException e) {
            throw new MaterialException(file + ": not a PEM/DER CRL: " + e.getMessage(), e);
        }
        if (crls.isEmpty()) {
            throw new MaterialException(file + ": no CRL found");
        }
        Map<X500Principal, Set<BigInteger>> revoked = new HashMap<>();
        int entries = 0;
        Instant earliestNext = null;
        BigInteger highestNumber = null;
        for (CRL c : crls) {
            X509CRL crl = (X509CRL) c;
            verifySignature(file, crl, cas);
            Set<String> critical = crl.getCriticalExtensionOIDs();
            if (critical != null && !critical.isEmpty()) {
                // A delta CRL or a partitioned (issuing distribution point) CRL is not a full
                // list of the issuer's revocations; indexing it as one would be wrong.
                throw new MaterialException(file + ": CRL from " + crl.getIssuerX500Principal()
                        + " has unsupported critical extensions " + critical);
            }
            if (crl.getNextUpdate() != null) {
                Instant n = crl.getNextUpdate().toInstant();
                earliestNext = earliestNext == null || n.isBefore(earliestNext) ? n : earliestNext;
            }
            BigInteger number = crlNumber(crl);
            if (number != null && (highestNumber == null || number.compareTo(highestNumber) > 0)) {
                highestNumber = number;
            }
            Set<? extends X509CRLEntry> list = crl.getRevokedCertificates();
            if (list == null) {
                continue;
            }
            for (X509CRLEntry e : list) {
                // RFC 5280 5.3.3: an entry of an indirect CRL may name another certificate issuer.
                X500Principal issuer = e.getCertificateIssuer() != null
                        ? e.getCertificateIssuer() : crl.getIssuerX500Principal();
                if (revoked.computeIfAbsent(issuer, k -> new HashSet<>()).add(e.getSerialNumber())) {
                    entries++;
                }
            }
        }
        Map<X500Principal, Set<BigInteger>> frozen = new HashMap<>();
        revoked.forEach((k, v) -> frozen.put(k, Set.copyOf(v)));
        return new CrlIndex(file, Map.copyOf(frozen), entries, earliestNext, highestNumber, crls.size());
    }

    private static void verifySignature(Path file, X509CRL crl, Collection<X509Certificate> cas)
            throws MaterialException {
        X500Principal issuer = crl.getIssuerX500Principal();
        List<String> tried = new ArrayList<>();
        for (X509Certificate ca : cas) {
            if (!ca.getSubjectX500Principal().equals(issuer)) {
                continue;
            }
            boolean[] ku = ca.getKeyUsage();
            if (ku != null && (ku.length <= KU_CRL_SIGN || !ku[KU_CRL_SIGN])) {
                tried.add("serial " + ca.getSerialNumber().toString(16) + " lacks cRLSign");
                continue;
            }
            try {
                crl.verify(ca.getPublicKey());
                return;
            } catch (GeneralSecurityException e) {
                tried.add("serial " + ca.getSerialNumber().toString(16) + ": " + e.getMessage());
            }
        }
        throw new MaterialException(file + ": CRL issued by \"" + issuer + "\" is not signed by a known CA"
                + (tried.isEmpty() ? " (no CA with that name)" : " " + tried));
    }

    /** The CRLNumber extension (RFC 5280 5.2.3): an OCTET STRING wrapping an INTEGER. */
    static BigInteger crlNumber(X509CRL crl) {
        byte[] ext = crl.getExtensionValue(OID_CRL_NUMBER);
        if (ext == null) {
            return null;
        }
        try {
            Der outer = new Der(ext, 0);
            if (outer.tag != 0x04) {
                return null;
            }
            Der inner = new Der(ext, outer.valueOffset);
            if (inner.tag != 0x02) {
                return null;
            }
            byte[] v = new byte[inner.length];
            System.arraycopy(ext, inner.valueOffset, v, 0, inner.length);
            return new BigInteger(v);
        } catch (IndexOutOfBoundsException | IllegalArgumentException e) {
            return null;
        }
    }

    /** One DER tag-length header. */
    private static final class Der {
        final int tag;
        final int length;
        final int valueOffset;

        Der(byte[] b, int at) {
            tag = b[at] & 0xff;
            int first = b[at + 1] & 0xff;
            if (first < 0x80) {
                length = first;
                valueOffset = at + 2;
            } else {
                int n = first & 0x7f;
                if (n == 0 || n > 3) {
                    throw new IllegalArgumentException("unsupported DER length");
                }
                int len = 0;
                for (int i = 0; i < n; i++) {
                    len = (len << 8) | (b[at + 2 + i] & 0xff);
                }
                length = len;
                valueOffset = at + 2 + n;
            }
            if (valueOffset + length > b.length) {
                throw new IllegalArgumentException("DER value overruns");
            }
        }
    }

    /** Is this certificate listed? One hash lookup. */
    public boolean isRevoked(X509Certificate cert) {
        return isRevoked(cert.getIssuerX500Principal(), cert.getSerialNumber());
    }

    /**
     * The same lookup for an issuer and serial taken from a certificate earlier. Hashing an
     * X500Principal canonicalises the name once per object (then cached in it), so a caller that
     * checks the same certificate again and again (an open connection, at every CRL reload)
     * keeps the principal rather than asking the certificate for a new one each time.
     */
    public boolean isRevoked(X500Principal issuer, BigInteger serial) {
        Set<BigInteger> serials = revoked.get(issuer);
        return serials != null && serials.contains(serial);
    }

    /** Contract section 3: stale when now is past the nextUpdate of a CRL in use. */
    public boolean isStale(Instant now) {
        return nextUpdate != null && now.isAfter(nextUpdate);
    }

    public boolean isConfigured() {
        return source != null;
    }

    public Path source() {
        return source;
    }

    public int entries() {
        return entries;
    }

    /** Earliest nextUpdate of the loaded CRLs, or null. */
    public Instant nextUpdate() {
        return nextUpdate;
    }

    /** Highest CRL number among the loaded CRLs, or null. */
    public BigInteger crlNumber() {
        return crlNumber;
    }

    public int crlCount() {
        return crlCount;
    }
}
