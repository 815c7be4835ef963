package zt.serviceb.identity;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.fail;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Jazzer fuzz target for {@link SpiffeId#parse} (issue 19; docs/testing.md). Any bytes, read as
 * UTF-8, are accepted exactly when an independent reference (a regular expression written from
 * the SPIFFE-ID standard, section 2) accepts them; an accepted ID round-trips through
 * {@code toString}; a rejected one is an {@link InvalidSpiffeIdException} with a reason, never
 * another exception. Committed inputs: {@code SpiffeIdFuzzInputs/} beside this class's package
 * in src/test/resources.
 */
class SpiffeIdFuzz {
    /** Trust domain: lowercase a-z 0-9 . - _ (1..255); path: segments of A-Z a-z 0-9 . - _. */
    private static final Pattern REFERENCE =
            Pattern.compile("spiffe://([a-z0-9._-]{1,255})((?:/[A-Za-z0-9._-]+)*)");

    @FuzzTest(maxDuration = "30s")
    void accept_exactly_the_valid_ids_and_round_trip_them(byte[] data) {
        String text = new String(data, StandardCharsets.UTF_8);
        boolean valid = referenceAccepts(text);
        SpiffeId id;
        try {
            id = SpiffeId.parse(text);
        } catch (InvalidSpiffeIdException e) {
            assertNotNull(e.getMessage());
            assertFalse(e.getMessage().isEmpty());
            if (valid) {
                fail("rejected a valid SPIFFE ID " + text + ": " + e.getMessage());
            }
            return;
        }
        if (!valid) {
            fail("accepted an invalid SPIFFE ID " + text);
        }
        assertEquals(text, id.toString());
        Matcher m = REFERENCE.matcher(text);
        assertEquals(true, m.matches());
        assertEquals(m.group(1), id.trustDomain());
        assertEquals(m.group(2), id.path());
        assertEquals(!m.group(2).isEmpty(), id.hasWorkloadPath());
        try {
            assertEquals(id, SpiffeId.parse(id.toString()));
            assertEquals(id.hashCode(), SpiffeId.parse(id.toString()).hashCode());
            assertEquals(SpiffeId.ofTrustDomain(id.trustDomain()).toString(), "spiffe://" + id.trustDomain());
        } catch (InvalidSpiffeIdException e) {
            fail("an accepted ID did not parse again: " + e.getMessage());
        }
    }

    private static boolean referenceAccepts(String text) {
        if (text.getBytes(StandardCharsets.UTF_8).length > 2048) {
            return false;
        }
        Matcher m = REFERENCE.matcher(text);
        if (!m.matches()) {
            return false;
        }
        for (String seg : m.group(2).split("/")) {
            if (seg.equals(".") || seg.equals("..")) {
                return false;
            }
        }
        return true;
    }
}
