package zt.serviceb.revocation;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import zt.serviceb.identity.CertDirReader;
import zt.serviceb.identity.IdentityMaterial;
import zt.serviceb.identity.MaterialException;
import zt.serviceb.identity.PemFiles;
import zt.serviceb.support.TestPki;

class CrlIndexShould {
    private static TestPki pki;
    private static List<X509Certificate> cas;

    @BeforeAll
    static void pki() throws Exception {
        pki = TestPki.shared();
        cas = IdentityMaterial.validate(new CertDirReader(pki.certDir("service-b")).read(), Instant.now())
                .caCertificates();
    }

    private static X509Certificate leaf(String name) throws Exception {
        return PemFiles.readCertificates(pki.certDir(name).resolve("current/cert.pem")).get(0);
    }

    @Test
    void index_the_revoked_serials_of_a_verified_crl() throws Exception {
        CrlIndex crl = CrlIndex.load(pki.crl("crl.pem"), cas);
        assertEquals(1, crl.entries());
        assertTrue(crl.isRevoked(leaf("revoked")));
        assertFalse(crl.isRevoked(leaf("client")));
        assertEquals("2", crl.crlNumber().toString());
        assertFalse(crl.isStale(Instant.now()));
    }

    @Test
    void refuse_a_crl_not_signed_by_a_known_ca() {
        MaterialException e = assertThrows(MaterialException.class,
                () -> CrlIndex.load(pki.crl("crl-foreign.pem"), cas));
        assertTrue(e.getMessage().contains("not signed by a known CA"), e.getMessage());
    }

    @Test
    void refuse_a_crl_whose_issuer_is_not_among_the_known_cas() throws Exception {
        // Only the root is known: the intermediate's CRL has no known signer.
        MaterialException e = assertThrows(MaterialException.class,
                () -> CrlIndex.load(pki.crl("crl.pem"), List.of(cas.get(0))));
        assertTrue(e.getMessage().contains("not signed by a known CA"), e.getMessage());
    }

    @Test
    void see_staleness_by_next_update() throws Exception {
        CrlIndex stale = CrlIndex.load(pki.crl("crl-stale.pem"), cas);
        assertTrue(stale.isStale(Instant.now()));
        assertFalse(stale.isStale(stale.nextUpdate().minusSeconds(1)));
    }

    @Test
    void load_several_crls_from_one_file(@TempDir Path tmp) throws Exception {
        Path both = tmp.resolve("both.pem");
        Files.write(both, concat(Files.readAllBytes(pki.crl("crl.pem")), Files.readAllBytes(pki.crl("crl-stale.pem"))));
        CrlIndex crl = CrlIndex.load(both, cas);
        assertEquals(2, crl.crlCount());
        assertEquals(1, crl.entries(), "the same serial listed twice counts once");
        assertTrue(crl.isStale(Instant.now()), "the earliest nextUpdate decides");
    }

    @Test
    void refuse_a_file_without_a_crl(@TempDir Path tmp) throws Exception {
        Path empty = tmp.resolve("empty.pem");
        Files.writeString(empty, "");
        assertThrows(MaterialException.class, () -> CrlIndex.load(empty, cas));
        assertThrows(MaterialException.class, () -> CrlIndex.load(tmp.resolve("missing.pem"), cas));
    }

    @Test
    void revoke_nothing_when_none_is_configured() throws Exception {
        CrlIndex none = CrlIndex.none();
        assertFalse(none.isRevoked(leaf("revoked")));
        assertFalse(none.isStale(Instant.now()));
        assertEquals(0, none.entries());
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] r = new byte[a.length + b.length];
        System.arraycopy(a, 0, r, 0, a.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }
}
