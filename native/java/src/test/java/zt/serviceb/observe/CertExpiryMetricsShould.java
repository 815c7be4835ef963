package zt.serviceb.observe;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

import zt.serviceb.support.MovableClock;
import zt.serviceb.support.RunningService;
import zt.serviceb.support.TestPki;

/**
 * CONTRACT M: {@code mtls_cert_expiry_seconds} is the time LEFT until the served leaf's notAfter,
 * computed at each scrape (it counts down with no event in between, and goes negative once
 * expired); the absolute notAfter is {@code mtls_cert_not_after_timestamp_seconds}.
 */
class CertExpiryMetricsShould {
    private static double value(String page, String name) {
        Matcher m = Pattern.compile("(?m)^" + name + " (\\S+)$").matcher(page);
        assertTrue(m.find(), () -> name + " missing from\n" + page);
        return Double.parseDouble(m.group(1));
    }

    @Test
    void count_down_to_not_after_at_scrape_time() throws Exception {
        TestPki pki = TestPki.shared();
        MovableClock clock = new MovableClock();
        try (RunningService svc = RunningService.builder(pki.certDir("service-b")).clock(clock).noReload().start()) {
            Instant notAfter = svc.service.identity().notAfter();
            String page = svc.metricsGet("/metrics");
            assertTrue(page.contains("# TYPE mtls_cert_expiry_seconds gauge"), page);
            assertTrue(page.contains("# TYPE mtls_cert_not_after_timestamp_seconds gauge"), page);
            assertEquals((double) notAfter.getEpochSecond(), value(page, "mtls_cert_not_after_timestamp_seconds"));

            Instant before = clock.instant();
            double left = value(page, "mtls_cert_expiry_seconds");
            Instant after = clock.instant();
            // Scraped between before and after: notAfter - t for some t in that window.
            assertTrue(left <= (notAfter.toEpochMilli() - (before.toEpochMilli() - 5_000)) / 1000.0, page);
            assertTrue(left >= (notAfter.toEpochMilli() - after.toEpochMilli()) / 1000.0 - 1, page);
            assertTrue(left > 0 && left < notAfter.getEpochSecond(), "seconds left, not a Unix time: " + left);

            // One hour later by the clock, with nothing reloaded: one hour less, same notAfter.
            clock.advance(Duration.ofHours(1));
            String later = svc.metricsGet("/metrics");
            double leftLater = value(later, "mtls_cert_expiry_seconds");
            assertTrue(Math.abs((left - leftLater) - 3600) < 60, left + " -> " + leftLater);
            assertEquals((double) notAfter.getEpochSecond(), value(later, "mtls_cert_not_after_timestamp_seconds"));

            // Past notAfter: negative.
            clock.advance(Duration.ofMillis(notAfter.toEpochMilli() - clock.instant().toEpochMilli()).plusHours(1));
            double expired = value(svc.metricsGet("/metrics"), "mtls_cert_expiry_seconds");
            assertTrue(expired < -3500 && expired > -3700, "an hour past notAfter: " + expired);
        }
    }

    @Test
    void compute_seconds_until_with_millisecond_precision() {
        Instant t = Instant.parse("2030-01-01T00:00:00Z");
        assertEquals(1.5, Metrics.secondsUntil(t, t.minusMillis(1500)));
        assertEquals(-2.0, Metrics.secondsUntil(t, t.plusSeconds(2)));
    }
}
