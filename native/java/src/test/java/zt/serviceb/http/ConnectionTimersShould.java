package zt.serviceb.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.Test;

import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestClient;
import zt.serviceb.support.TestPki;

/**
 * Every connection schedules a handshake watchdog and a timer at its peer's notAfter, and
 * cancels both when it no longer needs them. A cancelled task must leave the service's timer
 * queue then, not when its delay would have run out: the expiry timer's is the peer
 * certificate's remaining lifetime (a day in the test PKI), so the queue used to grow by one
 * task per connection for as long as the clients' certificates lived (issue 15, found by the
 * handshake bench's profile).
 */
class ConnectionTimersShould {
    private static final int CONNECTIONS = 40;
    private static final long SETTLE_MS = 10_000;

    @Test
    void leave_no_timer_queued_for_connections_that_are_closed() throws Exception {
        TestPki pki = TestPki.shared();
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).crl(pki.crl("crl.pem"))
                .threads(4).reloadInterval(Duration.ofSeconds(600)).start()) {
            SSLContext client = TestClient.context(pki.certDir("client"), pki.bundle());
            int before = svc.service.queuedTimers();
            for (int i = 0; i < CONNECTIONS; i++) {
                try (var c = TestClient.connect(client, svc.port())) {
                    assertEquals(200, c.get("/hello").status());
                    // While the connection is open its expiry timer is queued: the count below is not vacuous.
                    assertTrue(svc.service.queuedTimers() > before, "no timer queued for an open connection");
                }
            }
            // The server notices each close on its connection's thread; give the last ones a moment.
            long deadline = System.nanoTime() + SETTLE_MS * 1_000_000L;
            int queued = svc.service.queuedTimers();
            while (queued > before && System.nanoTime() < deadline) {
                Thread.sleep(50);
                queued = svc.service.queuedTimers();
            }
            assertTrue(queued <= before, "after " + CONNECTIONS + " closed connections " + queued
                    + " timers are queued, " + before + " before them");
        }
    }
}
