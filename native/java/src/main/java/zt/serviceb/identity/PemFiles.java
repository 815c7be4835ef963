package zt.serviceb.identity;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Reads PEM certificates and PKCS#8 private keys (the formats the agent writes). */
public final class PemFiles {
    private static final Pattern PKCS8 = Pattern.compile(
            "-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\\s]+)-----END PRIVATE KEY-----");
    /** Algorithms tried in turn for a PKCS#8 key (the encoding carries the OID, the JCA wants a name). */
    private static final List<String> KEY_ALGORITHMS = List.of("EC", "RSA", "Ed25519", "Ed448", "RSASSA-PSS");

    private PemFiles() {
    }

    public static List<X509Certificate> readCertificates(Path file) throws MaterialException {
        return parseCertificates(readAll(file), file);
    }

    /** The certificates in {@code bytes}, read from {@code file} (named in messages). */
    public static List<X509Certificate> parseCertificates(byte[] bytes, Path file) throws MaterialException {
        try {
            CertificateFactory cf = CertificateFactory.getInstance("X.509");
            List<X509Certificate> certs = new ArrayList<>();
            for (var c : cf.generateCertificates(new ByteArrayInputStream(bytes))) {
                certs.add((X509Certificate) c);
            }
            if (certs.isEmpty()) {
                throw new MaterialException(file + ": no certificate found");
            }
            return certs;
        } catch (CertificateException e) {
            throw new MaterialException(file + ": not a PEM certificate list: " + e.getMessage(), e);
        }
    }

    public static PrivateKey readPrivateKey(Path file) throws MaterialException {
        byte[] bytes = readAll(file);
        String text = new String(bytes, StandardCharsets.US_ASCII);
        Arrays.fill(bytes, (byte) 0);
        Matcher m = PKCS8.matcher(text);
        if (!m.find()) {
            throw new MaterialException(file + ": no PKCS#8 'BEGIN PRIVATE KEY' block (the contract's key format)");
        }
        byte[] der;
        try {
            der = Base64.getMimeDecoder().decode(m.group(1));
        } catch (IllegalArgumentException e) {
            throw new MaterialException(file + ": private key block is not valid base64", e);
        }
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(der);
        for (String alg : KEY_ALGORITHMS) {
            try {
                return KeyFactory.getInstance(alg).generatePrivate(spec);
            } catch (GeneralSecurityException e) {
                // not this algorithm; try the next one
            }
        }
        throw new MaterialException(file + ": unsupported or corrupt PKCS#8 private key");
    }

    private static byte[] readAll(Path file) throws MaterialException {
        try {
            return Files.readAllBytes(file);
        } catch (IOException e) {
            throw new MaterialException("cannot read " + file + ": " + e, e);
        }
    }
}
