package zt.serviceb.identity;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import zt.serviceb.support.TestPki;

/** The reader contract and the all-or-nothing validation of the service's own material. */
class IdentityMaterialShould {
    private static TestPki pki;

    @BeforeAll
    static void pki() throws Exception {
        pki = TestPki.shared();
    }

    private static IdentityMaterial load(Path certDir) throws MaterialException {
        return IdentityMaterial.validate(new CertDirReader(certDir).read(), Instant.now());
    }

    @Test
    void load_the_pkcs12_files_of_the_current_generation() throws Exception {
        IdentityMaterial m = load(pki.certDir("service-b"));
        assertEquals("spiffe://zt.lab/svc/service-b", m.spiffeId().toString());
        assertEquals(pki.serial("service-b"), m.serial());
        assertEquals("pkcs12", m.format());
        assertEquals(2, m.chain().size());
        assertEquals(pki.certDir("service-b").resolve("current").toRealPath(), m.generation());
    }

    @Test
    void fall_back_to_pem_when_the_generation_has_no_keystore(@TempDir Path tmp) throws Exception {
        Path dir = TestPki.copyCertDir(pki.certDir("service-b"), tmp);
        Files.delete(dir.resolve("current").toRealPath().resolve("keystore.p12"));
        IdentityMaterial m = load(dir);
        assertEquals("pem", m.format());
        assertEquals(pki.serial("service-b"), m.serial());
    }

    @Test
    void refuse_a_key_that_does_not_match_the_certificate() {
        // wrong-key has no keystore.p12 (PKCS#12 cannot hold the pair), so this is the PEM path.
        MaterialException e = assertThrows(MaterialException.class, () -> load(pki.certDir("wrong-key")));
        assertTrue(e.getMessage().contains("private key does not match"), e.getMessage());
    }

    @Test
    void refuse_a_generation_with_neither_keystore_nor_key(@TempDir Path tmp) throws Exception {
        Path dir = TestPki.copyCertDir(pki.certDir("service-b"), tmp);
        Path gen = dir.resolve("current").toRealPath();
        Files.delete(gen.resolve("keystore.p12"));
        Files.delete(gen.resolve("key.pem"));
        MaterialException e = assertThrows(MaterialException.class, () -> load(dir));
        assertTrue(e.getMessage().contains("neither keystore.p12 nor key.pem"), e.getMessage());
    }

    @Test
    void refuse_a_keystore_with_the_wrong_password(@TempDir Path tmp) throws Exception {
        Path dir = TestPki.copyCertDir(pki.certDir("service-b"), tmp);
        Files.writeString(dir.resolve("current").toRealPath().resolve("keystore.pass"), "not-the-password");
        MaterialException e = assertThrows(MaterialException.class, () -> load(dir));
        assertTrue(e.getMessage().contains("PKCS#12"), e.getMessage());
    }

    @Test
    void refuse_a_chain_that_does_not_verify_against_the_bundle(@TempDir Path tmp) throws Exception {
        Path dir = TestPki.copyCertDir(pki.certDir("service-b"), tmp);
        Path gen = dir.resolve("current").toRealPath();
        Files.delete(gen.resolve("keystore.p12"));
        Files.copy(pki.foreignBundle(), gen.resolve("bundle.pem"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        MaterialException e = assertThrows(MaterialException.class, () -> load(dir));
        assertTrue(e.getMessage().contains("does not verify against the bundle"), e.getMessage());
    }

    @Test
    void refuse_an_expired_own_certificate() {
        MaterialException e = assertThrows(MaterialException.class, () -> load(pki.certDir("expired")));
        assertTrue(e.getMessage().contains("does not verify"), e.getMessage());
    }

    @Test
    void refuse_an_own_certificate_that_is_not_a_valid_svid() {
        MaterialException e = assertThrows(MaterialException.class, () -> load(pki.certDir("two-uris")));
        assertTrue(e.getMessage().contains("exactly one URI SAN"), e.getMessage());
    }

    @Test
    void refuse_a_cert_dir_without_current(@TempDir Path tmp) {
        MaterialException e = assertThrows(MaterialException.class, () -> load(tmp));
        assertTrue(e.getMessage().contains("cannot resolve"), e.getMessage());
    }
}
