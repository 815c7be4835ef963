package zt.serviceb.tls;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.time.Clock;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import zt.serviceb.identity.CertDirReader;
import zt.serviceb.identity.IdentityMaterial;
import zt.serviceb.identity.PemFiles;
import zt.serviceb.revocation.CrlIndex;
import zt.serviceb.revocation.StaleCrlMonitor;
import zt.serviceb.revocation.StaleMode;
import zt.serviceb.support.TestPki;

/** One case per rule: each bad identity maps to its contract reason. */
class SvidVerifierShould {
    private static TestPki pki;
    private static IdentityMaterial own;

    @BeforeAll
    static void pki() throws Exception {
        pki = TestPki.shared();
        own = IdentityMaterial.validate(new CertDirReader(pki.certDir("service-b")).read(), Instant.now());
    }

    private static SvidVerifier verifier(String crlFile, StaleMode mode, List<Instant> staleReports)
            throws Exception {
        CrlIndex crl = crlFile == null ? CrlIndex.none() : CrlIndex.load(pki.crl(crlFile), own.caCertificates());
        return new SvidVerifier(own.bundle(), "zt.lab", crl,
                new StaleCrlMonitor(mode, (next, m) -> staleReports.add(next)), Clock.systemUTC());
    }

    private static X509Certificate[] chain(String name) throws Exception {
        Path p = pki.certDir(name).resolve("current/chain.pem");
        return PemFiles.readCertificates(p).toArray(new X509Certificate[0]);
    }

    @Test
    void accept_a_good_svid_and_return_its_spiffe_id() throws Exception {
        assertEquals("spiffe://zt.lab/svc/client",
                verifier("crl.pem", StaleMode.REFUSE, new ArrayList<>()).verify(chain("client")).toString());
    }

    @ParameterizedTest(name = "{0} -> {1}")
    @CsvSource({
        "foreign, UNTRUSTED",
        "expired, EXPIRED",
        "not-yet-valid, EXPIRED",
        "revoked, REVOKED",
        "two-uris, BAD_SPIFFE_ID",
        "not-spiffe, BAD_SPIFFE_ID",
        "no-uri, BAD_SPIFFE_ID",
        "ku-not-critical, BAD_SPIFFE_ID",
        "ku-key-agreement, BAD_SPIFFE_ID",
        "eku-client-only, BAD_SPIFFE_ID",
    })
    void reject_each_bad_identity_with_its_reason(String name, RejectReason reason) throws Exception {
        SvidRejectedException e = assertThrows(SvidRejectedException.class,
                () -> verifier("crl.pem", StaleMode.REFUSE, new ArrayList<>()).verify(chain(name)));
        assertEquals(reason, e.reason(), e.getMessage());
    }

    @Test
    void accept_a_revoked_leaf_when_no_crl_is_loaded() throws Exception {
        assertEquals("spiffe://zt.lab/svc/revoked",
                verifier(null, StaleMode.REFUSE, new ArrayList<>()).verify(chain("revoked")).toString());
    }

    @Test
    void reject_a_ca_certificate_presented_as_a_leaf() throws Exception {
        X509Certificate[] full = chain("client");
        SvidRejectedException e = assertThrows(SvidRejectedException.class,
                () -> verifier(null, StaleMode.REFUSE, new ArrayList<>()).verify(new X509Certificate[] {full[1]}));
        assertEquals(RejectReason.BAD_SPIFFE_ID, e.reason(), e.getMessage());
    }

    @Test
    void reject_an_empty_chain_as_no_client_cert() throws Exception {
        SvidRejectedException e = assertThrows(SvidRejectedException.class,
                () -> verifier(null, StaleMode.REFUSE, new ArrayList<>()).verify(new X509Certificate[0]));
        assertEquals(RejectReason.NO_CLIENT_CERT, e.reason());
    }

    @Test
    void refuse_on_a_stale_crl_in_refuse_mode_and_report_the_transition_once() throws Exception {
        List<Instant> reports = new ArrayList<>();
        SvidVerifier v = verifier("crl-stale.pem", StaleMode.REFUSE, reports);
        for (int i = 0; i < 3; i++) {
            SvidRejectedException e = assertThrows(SvidRejectedException.class, () -> v.verify(chain("client")));
            assertEquals(RejectReason.CRL_STALE, e.reason());
        }
        assertEquals(1, reports.size());
    }

    @Test
    void proceed_on_a_stale_crl_in_warn_mode_but_still_report_it() throws Exception {
        List<Instant> reports = new ArrayList<>();
        SvidVerifier v = verifier("crl-stale.pem", StaleMode.WARN, reports);
        assertEquals("spiffe://zt.lab/svc/client", v.verify(chain("client")).toString());
        assertEquals(1, reports.size());
        SvidRejectedException e = assertThrows(SvidRejectedException.class, () -> v.verify(chain("revoked")));
        assertEquals(RejectReason.REVOKED, e.reason(), "a stale CRL still revokes what it lists");
    }

    @Test
    void keep_the_claimed_id_and_serial_for_the_log() throws Exception {
        SvidRejectedException e = assertThrows(SvidRejectedException.class,
                () -> verifier("crl.pem", StaleMode.REFUSE, new ArrayList<>()).verify(chain("revoked")));
        assertEquals("spiffe://zt.lab/svc/revoked", e.peerSpiffeId());
        assertEquals(pki.serial("revoked"), e.peerSerial());
        assertTrue(e.detail().contains("revoked"));
    }
}
