package zt.serviceb.identity;

import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertPathValidatorException;
import java.security.cert.X509Certificate;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * The service's own identity, validated as a whole: the key matches the leaf, the chain
 * verifies to the bundle at the given time, and the leaf is a well-formed X509-SVID. Only a
 * fully validated value exists, so holding one means it is safe to swap in.
 */
public final class IdentityMaterial {
    private final Path generation;
    private final PrivateKey key;
    private final List<X509Certificate> chain;
    private final TrustBundle bundle;
    private final SpiffeId spiffeId;
    private final String format;

    private IdentityMaterial(Path generation, PrivateKey key, List<X509Certificate> chain, TrustBundle bundle,
                             SpiffeId spiffeId, String format) {
        this.generation = generation;
        this.key = key;
        this.chain = chain;
        this.bundle = bundle;
        this.spiffeId = spiffeId;
        this.format = format;
    }

    public static IdentityMaterial validate(CertDirReader.RawMaterial raw, Instant now) throws MaterialException {
        if (raw.chain().isEmpty()) {
            throw new MaterialException(raw.generation() + ": empty certificate chain");
        }
        X509Certificate leaf = raw.chain().get(0);
        if (!keyMatches(raw.key(), leaf.getPublicKey())) {
            throw new MaterialException(raw.generation() + ": private key does not match the certificate (serial "
                    + Serials.hex(leaf) + ")");
        }
        TrustBundle bundle = new TrustBundle(raw.bundle());
        List<X509Certificate> path;
        try {
            path = bundle.validate(raw.chain(), now);
        } catch (CertPathValidatorException e) {
            throw new MaterialException(raw.generation() + ": chain does not verify against the bundle: "
                    + e.getMessage(), e);
        }
        SpiffeId id;
        try {
            id = SvidRules.checkLeaf(leaf);
        } catch (SvidRuleException e) {
            throw new MaterialException(raw.generation() + ": own certificate is not a valid X509-SVID: "
                    + e.getMessage(), e);
        }
        return new IdentityMaterial(raw.generation(), raw.key(), List.copyOf(path), bundle, id, raw.format());
    }

    /** Proves possession: a signature made with the key verifies with the certificate's public key. */
    static boolean keyMatches(PrivateKey key, PublicKey pub) throws MaterialException {
        if (!key.getAlgorithm().equals(pub.getAlgorithm())) {
            return false;
        }
        String alg = switch (key.getAlgorithm()) {
            case "EC" -> "SHA256withECDSA";
            case "RSA" -> "SHA256withRSA";
            case "Ed25519", "Ed448", "EdDSA" -> key.getAlgorithm();
            default -> throw new MaterialException("unsupported key algorithm " + key.getAlgorithm());
        };
        try {
            byte[] probe = new byte[32];
            new SecureRandom().nextBytes(probe);
            Signature s = Signature.getInstance(alg);
            s.initSign(key);
            s.update(probe);
            byte[] sig = s.sign();
            Signature v = Signature.getInstance(alg);
            v.initVerify(pub);
            v.update(probe);
            return v.verify(sig);
        } catch (GeneralSecurityException e) {
            return false;
        }
    }

    public Path generation() {
        return generation;
    }

    public PrivateKey key() {
        return key;
    }

    /** Leaf first, then intermediates; the root is not included (peers have it). */
    public List<X509Certificate> chain() {
        return chain;
    }

    public X509Certificate leaf() {
        return chain.get(0);
    }

    public TrustBundle bundle() {
        return bundle;
    }

    public SpiffeId spiffeId() {
        return spiffeId;
    }

    public String serial() {
        return Serials.hex(leaf());
    }

    public Instant notAfter() {
        return leaf().getNotAfter().toInstant();
    }

    /** "pkcs12" or "pem": which files it came from. */
    public String format() {
        return format;
    }

    /** CA certificates the service knows: a CRL must be signed by one of them (contracts.md 3). */
    public List<X509Certificate> caCertificates() {
        List<X509Certificate> cas = new ArrayList<>(bundle.roots());
        for (X509Certificate c : chain.subList(1, chain.size())) {
            if (c.getBasicConstraints() >= 0) {
                cas.add(c);
            }
        }
        return cas;
    }
}
