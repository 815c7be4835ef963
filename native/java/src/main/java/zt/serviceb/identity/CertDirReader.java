package zt.serviceb.identity;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * The reader's side of the cert-dir contract (contracts.md section 2): resolve {@code DIR/current}
 * once, then read every file from that one resolved generation, so a new certificate can never be
 * paired with an old key. Prefers the PKCS#12 files; falls back to the PEM files when the
 * generation has no {@code keystore.p12} (the agent always writes both; PEM-only directories
 * come from other tools). Reads only: validation is {@link IdentityMaterial}'s job.
 */
public final class CertDirReader {
    public static final String CURRENT = "current";
    static final String KEYSTORE_ALIAS = "identity";

    private final Path certDir;

    public CertDirReader(Path certDir) {
        this.certDir = certDir;
    }

    public Path certDir() {
        return certDir;
    }

    /** {@code realpath(DIR/current)}: the generation a reload would read now. */
    public Path resolveCurrent() throws MaterialException {
        Path link = certDir.resolve(CURRENT);
        try {
            Path gen = link.toRealPath();
            if (!Files.isDirectory(gen)) {
                throw new MaterialException(link + " does not point to a directory");
            }
            return gen;
        } catch (IOException e) {
            throw new MaterialException("cannot resolve " + link + ": " + e, e);
        }
    }

    /** Reads the generation {@code current} points to now. */
    public RawMaterial read() throws MaterialException {
        return readGeneration(resolveCurrent());
    }

    /** Reads one already-resolved generation directory. */
    public RawMaterial readGeneration(Path gen) throws MaterialException {
        // CONTRACT B: with a bundle.pem.sha256, the bundle must be the one the agent checked.
        List<X509Certificate> checkedBundle = BundleChecksum.verify(gen);
        Path keystore = gen.resolve("keystore.p12");
        if (Files.exists(keystore)) {
            return readPkcs12(gen, keystore, checkedBundle);
        }
        if (Files.exists(gen.resolve("key.pem"))) {
            return readPem(gen, checkedBundle);
        }
        throw new MaterialException(gen + " has neither keystore.p12 nor key.pem");
    }

    private RawMaterial readPkcs12(Path gen, Path keystore, List<X509Certificate> checkedBundle)
            throws MaterialException {
        char[] password = readPassword(gen.resolve("keystore.pass"));
        try {
            KeyStore ks = load(keystore, password);
            if (!ks.isKeyEntry(KEYSTORE_ALIAS)) {
                throw new MaterialException(keystore + " has no key entry with alias \"" + KEYSTORE_ALIAS + "\"");
            }
            PrivateKey key = (PrivateKey) ks.getKey(KEYSTORE_ALIAS, password);
            Certificate[] chain = ks.getCertificateChain(KEYSTORE_ALIAS);
            if (chain == null || chain.length == 0) {
                throw new MaterialException(keystore + ": key entry has no certificate chain");
            }
            List<X509Certificate> x509Chain = new ArrayList<>();
            for (Certificate c : chain) {
                x509Chain.add((X509Certificate) c);
            }
            List<X509Certificate> bundle;
            Path truststore = gen.resolve("truststore.p12");
            if (Files.exists(truststore)) {
                bundle = trustedCertificates(load(truststore, password), truststore);
                if (checkedBundle != null) {
                    BundleChecksum.requireSameCertificates(bundle, truststore, checkedBundle);
                }
            } else {
                bundle = checkedBundle != null ? checkedBundle : PemFiles.readCertificates(gen.resolve("bundle.pem"));
            }
            return new RawMaterial(gen, key, x509Chain, bundle, "pkcs12");
        } catch (GeneralSecurityException e) {
            throw new MaterialException(keystore + ": cannot open PKCS#12 keystore: " + e.getMessage(), e);
        } finally {
            Arrays.fill(password, '\0');
        }
    }

    private RawMaterial readPem(Path gen, List<X509Certificate> checkedBundle) throws MaterialException {
        PrivateKey key = PemFiles.readPrivateKey(gen.resolve("key.pem"));
        Path chainFile = gen.resolve("chain.pem");
        List<X509Certificate> chain = PemFiles.readCertificates(
                Files.exists(chainFile) ? chainFile : gen.resolve("cert.pem"));
        List<X509Certificate> bundle = checkedBundle != null ? checkedBundle
                : PemFiles.readCertificates(gen.resolve("bundle.pem"));
        return new RawMaterial(gen, key, chain, bundle, "pem");
    }

    private static KeyStore load(Path file, char[] password) throws MaterialException, GeneralSecurityException {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(file)) {
            ks.load(in, password);
            return ks;
        } catch (IOException e) {
            // KeyStore.load reports a wrong password or a corrupt file as IOException.
            throw new MaterialException(file + ": cannot load PKCS#12 (corrupt file or wrong password): "
                    + e.getMessage(), e);
        }
    }

    private static List<X509Certificate> trustedCertificates(KeyStore ts, Path file)
            throws GeneralSecurityException, MaterialException {
        List<X509Certificate> certs = new ArrayList<>();
        for (String alias : Collections.list(ts.aliases())) {
            if (ts.isCertificateEntry(alias)) {
                certs.add((X509Certificate) ts.getCertificate(alias));
            }
        }
        if (certs.isEmpty()) {
            throw new MaterialException(file + " holds no trusted-certificate entries");
        }
        return certs;
    }

    private static char[] readPassword(Path file) throws MaterialException {
        try {
            String s = Files.readString(file, StandardCharsets.UTF_8);
            // The contract says "one line, no newline"; tolerate a trailing newline from other tools.
            return s.stripTrailing().toCharArray();
        } catch (IOException e) {
            throw new MaterialException("cannot read keystore password file " + file + ": " + e, e);
        }
    }

    /** What one generation holds, not yet validated. */
    public record RawMaterial(Path generation, PrivateKey key, List<X509Certificate> chain,
                              List<X509Certificate> bundle, String format) {
        public RawMaterial {
            chain = List.copyOf(chain);
            bundle = List.copyOf(bundle);
        }
    }
}
