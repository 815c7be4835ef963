package zt.serviceb.identity;

import java.security.GeneralSecurityException;
import java.security.InvalidAlgorithmParameterException;
import java.security.cert.CertPath;
import java.security.cert.CertPathValidator;
import java.security.cert.CertPathValidatorException;
import java.security.cert.CertificateFactory;
import java.security.cert.PKIXParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Date;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * The trust domain's root certificates, and RFC 5280 path validation against them
 * (X509-SVID 5.1) with revocation checking switched off: revocation is the CRL index's job.
 */
public final class TrustBundle {
    private final List<X509Certificate> roots;
    private final Set<TrustAnchor> anchors;

    public TrustBundle(List<X509Certificate> roots) throws MaterialException {
        if (roots.isEmpty()) {
            throw new MaterialException("trust bundle is empty");
        }
        this.roots = List.copyOf(roots);
        Set<TrustAnchor> a = new HashSet<>();
        for (X509Certificate r : roots) {
            a.add(new TrustAnchor(r, null));
        }
        this.anchors = Set.copyOf(a);
    }

    public List<X509Certificate> roots() {
        return roots;
    }

    public boolean isRoot(X509Certificate cert) {
        return roots.contains(cert);
    }

    /**
     * Validates {@code presented} (leaf first, as a TLS peer sends it; order of the rest and an
     * included root are tolerated) and returns the certification path without the anchor.
     */
    public List<X509Certificate> validate(List<X509Certificate> presented, Instant at)
            throws CertPathValidatorException {
        List<X509Certificate> path = orderPath(presented);
        try {
            CertificateFactory cf = CertificateFactory.getInstance("X.509");
            CertPath certPath = cf.generateCertPath(path);
            PKIXParameters params = new PKIXParameters(anchors);
            params.setRevocationEnabled(false);
            params.setDate(Date.from(at));
            CertPathValidator.getInstance("PKIX").validate(certPath, params);
            return path;
        } catch (CertPathValidatorException e) {
            throw e;
        } catch (InvalidAlgorithmParameterException e) {
            throw new CertPathValidatorException("bad validation parameters: " + e.getMessage(), e);
        } catch (GeneralSecurityException e) {
            throw new CertPathValidatorException("path validation unavailable: " + e.getMessage(), e);
        }
    }

    /**
     * Leaf, then each next certificate whose subject is the previous one's issuer; drops
     * certificates that are themselves trust anchors, duplicates and unrelated extras.
     */
    private List<X509Certificate> orderPath(List<X509Certificate> presented) {
        List<X509Certificate> path = new ArrayList<>();
        if (presented.isEmpty()) {
            return path;
        }
        Set<X509Certificate> pool = new LinkedHashSet<>(presented.subList(1, presented.size()));
        X509Certificate current = presented.get(0);
        path.add(current);
        while (!current.getIssuerX500Principal().equals(current.getSubjectX500Principal())) {
            X509Certificate next = null;
            for (X509Certificate c : pool) {
                if (c.getSubjectX500Principal().equals(current.getIssuerX500Principal())) {
                    next = c;
                    break;
                }
            }
            if (next == null || isRoot(next)) {
                break;
            }
            pool.remove(next);
            path.add(next);
            current = next;
        }
        return path;
    }
}
