package zt.serviceb.revocation;

import java.time.Instant;
import java.util.function.BiConsumer;

/**
 * Notices the fresh-to-stale transition of the loaded CRL and reports it once per transition
 * (contracts.md 3: "a log line crl_stale is written (once per transition)"). Called on every
 * handshake and on each periodic check, so the transition is seen even when no CRL reload happens.
 */
public final class StaleCrlMonitor {
    private final BiConsumer<Instant, StaleMode> onStale;
    private final StaleMode mode;
    private CrlIndex seen;
    private boolean stale;

    public StaleCrlMonitor(StaleMode mode, BiConsumer<Instant, StaleMode> onStale) {
        this.mode = mode;
        this.onStale = onStale;
    }

    public StaleMode mode() {
        return mode;
    }

    /** Returns whether {@code crl} is stale at {@code now}, reporting a new transition. */
    public boolean check(CrlIndex crl, Instant now) {
        boolean isStale = crl.isStale(now);
        boolean report;
        synchronized (this) {
            // A different CRL starts a fresh history: a new, already stale CRL reports again.
            report = isStale && (!stale || seen != crl);
            seen = crl;
            stale = isStale;
        }
        if (report) {
            onStale.accept(crl.nextUpdate(), mode);
        }
        return isStale;
    }
}
