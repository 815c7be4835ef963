package zt.serviceb;

import java.nio.file.Path;

import zt.serviceb.identity.IdentityMaterial;
import zt.serviceb.policy.Policy;
import zt.serviceb.reload.FileStamp;
import zt.serviceb.revocation.CrlIndex;
import zt.serviceb.tls.SvidVerifier;

/**
 * One immutable snapshot of everything a connection is served and judged by: the identity the
 * key manager presents, the verifier (bundle, trust domain, CRL index) the trust manager asks,
 * the policy the router applies, and the files it was built from. {@link ServiceB} holds exactly
 * one reference to the current snapshot; a reload builds and validates a whole new one and
 * publishes it with a single reference swap, or changes nothing (the C++ service's
 * {@code ServiceState} works the same way).
 */
public record ServiceState(IdentityMaterial identity, SvidVerifier verifier, Policy policy, Sources sources) {

    public CrlIndex crl() {
        return verifier.crl();
    }

    /**
     * What a snapshot was built from: the generation {@code current} pointed to and the stamps
     * of the CRL and policy files. A reload compares the files on disk with these.
     */
    public record Sources(Path generation, FileStamp crl, FileStamp policy) {
    }
}
