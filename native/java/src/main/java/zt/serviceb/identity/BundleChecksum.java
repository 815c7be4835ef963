package zt.serviceb.identity;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.cert.CertificateEncodingException;
import java.security.cert.X509Certificate;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * CONTRACT B: the agent writes {@code gen-*&#47;bundle.pem.sha256} ({@code sha256sum} format,
 * {@code <64 hex>  bundle.pem}) beside the bundle. When a generation has that file, the bundle
 * this service trusts must be the one the agent checked: {@code bundle.pem}'s bytes must hash
 * to it, and the trusted certificates of {@code truststore.p12} (what JSSE is actually given)
 * must be exactly {@code bundle.pem}'s. Otherwise someone edited one file of the pair and the
 * generation is refused ({@link #CODE}). A generation without the file is not checked (older
 * agents, PEM directories from other tools).
 */
public final class BundleChecksum {
    public static final String CODE = "bundle_checksum_mismatch";
    public static final String FILE = "bundle.pem.sha256";
    /** {@code sha256sum} output: the digest, a space, a space or '*' (binary mode), the name. */
    private static final Pattern LINE = Pattern.compile("([0-9a-fA-F]{64}) [ *](\\S.*)\\n?");

    private BundleChecksum() {
    }

    /**
     * Checks the generation's bundle against its checksum file when there is one; returns the
     * certificates of {@code bundle.pem} (read once, from the bytes that were hashed), or null
     * when the generation has no checksum file.
     */
    public static List<X509Certificate> verify(Path gen) throws MaterialException {
        Path sumFile = gen.resolve(FILE);
        String text;
        try {
            text = Files.readString(sumFile, StandardCharsets.US_ASCII);
        } catch (NoSuchFileException e) {
            return null;
        } catch (IOException e) {
            throw new MaterialException(CODE, "cannot read " + sumFile + ": " + e);
        }
        Matcher m = LINE.matcher(text);
        if (!m.matches()) {
            throw new MaterialException(CODE, sumFile + " is not one sha256sum line ('<64 hex>  bundle.pem')");
        }
        if (!"bundle.pem".equals(m.group(2))) {
            throw new MaterialException(CODE, sumFile + " names " + m.group(2) + ", not bundle.pem");
        }
        Path bundleFile = gen.resolve("bundle.pem");
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(bundleFile);
        } catch (IOException e) {
            throw new MaterialException(CODE, "cannot read " + bundleFile + " to check it against " + FILE + ": " + e);
        }
        String want = m.group(1).toLowerCase(java.util.Locale.ROOT);
        String got = sha256(bytes);
        if (!MessageDigest.isEqual(want.getBytes(StandardCharsets.US_ASCII), got.getBytes(StandardCharsets.US_ASCII))) {
            throw new MaterialException(CODE, bundleFile + " has sha256 " + got + ", " + FILE + " says " + want);
        }
        return PemFiles.parseCertificates(bytes, bundleFile);
    }

    /**
     * The trust store's certificates must be exactly the checked bundle's (as sets of DER
     * encodings): a root added to or removed from {@code truststore.p12} alone is refused.
     */
    public static void requireSameCertificates(List<X509Certificate> truststore, Path truststoreFile,
                                               List<X509Certificate> bundle) throws MaterialException {
        Set<String> ts = encodings(truststore);
        Set<String> b = encodings(bundle);
        if (!ts.equals(b)) {
            Set<String> extra = new HashSet<>(ts);
            extra.removeAll(b);
            Set<String> missing = new HashSet<>(b);
            missing.removeAll(ts);
            throw new MaterialException(CODE, truststoreFile + " does not hold the certificates of the checked "
                    + "bundle.pem (" + extra.size() + " extra, " + missing.size() + " missing)");
        }
    }

    private static Set<String> encodings(List<X509Certificate> certs) throws MaterialException {
        Set<String> out = new HashSet<>();
        for (X509Certificate c : certs) {
            try {
                out.add(sha256(c.getEncoded()));
            } catch (CertificateEncodingException e) {
                throw new MaterialException(CODE, "cannot encode a bundle certificate: " + e.getMessage());
            }
        }
        return out;
    }

    static String sha256(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is mandatory in every JDK", e);
        }
    }
}
