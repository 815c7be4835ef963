package zt.serviceb.tls;

import java.security.cert.CertPathValidatorException;
import java.security.cert.CertPathValidatorException.BasicReason;
import java.security.cert.X509Certificate;
import java.time.Clock;
import java.time.Instant;
import java.util.Arrays;
import java.util.List;

import zt.serviceb.identity.Serials;
import zt.serviceb.identity.SpiffeId;
import zt.serviceb.identity.SvidRuleException;
import zt.serviceb.identity.SvidRules;
import zt.serviceb.identity.TrustBundle;
import zt.serviceb.revocation.CrlIndex;
import zt.serviceb.revocation.StaleCrlMonitor;
import zt.serviceb.revocation.StaleMode;

/**
 * Decides whether a peer's chain is an acceptable X509-SVID, in this order:
 * RFC 5280 path validation against the bundle (revocation off), the CRL index for every
 * certificate of the path except the anchor, the stale-CRL rule, then the SPIFFE leaf rules and
 * the trust domain. Each failure maps to one contract reason. Immutable: a reload builds a new one.
 */
public final class SvidVerifier {
    private final TrustBundle bundle;
    private final String trustDomain;
    private final CrlIndex crl;
    private final StaleCrlMonitor staleMonitor;
    private final Clock clock;

    public SvidVerifier(TrustBundle bundle, String trustDomain, CrlIndex crl, StaleCrlMonitor staleMonitor,
                        Clock clock) {
        this.bundle = bundle;
        this.trustDomain = trustDomain;
        this.crl = crl;
        this.staleMonitor = staleMonitor;
        this.clock = clock;
    }

    public TrustBundle bundle() {
        return bundle;
    }

    public CrlIndex crl() {
        return crl;
    }

    /** Returns the peer's SPIFFE ID, or throws with the contract reason. */
    public SpiffeId verify(X509Certificate[] chain) throws SvidRejectedException {
        if (chain == null || chain.length == 0) {
            throw new SvidRejectedException(RejectReason.NO_CLIENT_CERT, "peer sent no certificate", null, null,
                    null);
        }
        X509Certificate leaf = chain[0];
        String claimed = SvidRules.claimedId(leaf);
        String serial = Serials.hex(leaf);
        Instant now = clock.instant();
        List<X509Certificate> path;
        try {
            path = bundle.validate(Arrays.asList(chain), now);
        } catch (CertPathValidatorException e) {
            throw new SvidRejectedException(pathReason(e), "certificate verify failed: " + e.getMessage(), claimed,
                    serial, e);
        }
        for (X509Certificate c : path) {
            if (crl.isRevoked(c)) {
                String which = c == leaf ? "leaf" : "CA \"" + c.getSubjectX500Principal() + "\"";
                throw new SvidRejectedException(RejectReason.REVOKED, "certificate revoked (" + which + " serial "
                        + Serials.hex(c) + ")", claimed, serial,
                        new CertPathValidatorException("certificate revoked", null, null, -1, BasicReason.REVOKED));
            }
        }
        if (staleMonitor.check(crl, now) && staleMonitor.mode() == StaleMode.REFUSE) {
            throw new SvidRejectedException(RejectReason.CRL_STALE, "CRL is past its nextUpdate "
                    + crl.nextUpdate() + " (--crl-stale refuse)", claimed, serial,
                    new CertPathValidatorException("stale CRL", null, null, -1,
                            BasicReason.UNDETERMINED_REVOCATION_STATUS));
        }
        SpiffeId id;
        try {
            id = SvidRules.checkLeaf(leaf);
        } catch (SvidRuleException e) {
            throw new SvidRejectedException(RejectReason.BAD_SPIFFE_ID, e.getMessage(), claimed, serial, e);
        }
        if (!id.isMemberOf(trustDomain)) {
            throw new SvidRejectedException(RejectReason.BAD_SPIFFE_ID, "SPIFFE ID " + id
                    + " is not in trust domain " + trustDomain, claimed, serial, null);
        }
        return id;
    }

    private static RejectReason pathReason(CertPathValidatorException e) {
        if (e.getReason() == BasicReason.EXPIRED || e.getReason() == BasicReason.NOT_YET_VALID) {
            return RejectReason.EXPIRED;
        }
        return RejectReason.UNTRUSTED;
    }
}
