package zt.serviceb;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import zt.serviceb.revocation.StaleMode;

class FlagsShould {
    @Test
    void apply_the_contract_defaults() throws Exception {
        Config c = Flags.parse(new String[] {"--cert-dir", "/d"});
        assertEquals(Path.of("/d"), c.certDir());
        assertEquals(new HostPort("0.0.0.0", 8081), c.listen());
        assertEquals(new HostPort("127.0.0.1", 9081), c.metricsListen());
        assertNull(c.policy());
        assertNull(c.crl());
        assertEquals(Path.of("/d/crl.pem"), c.crlPath());
        assertEquals(StaleMode.REFUSE, c.crlStale());
        assertNull(c.expectPeer());
        assertEquals("service-b", c.name());
        assertEquals(Duration.ofSeconds(5), c.reloadInterval());
        assertEquals(5000, c.handshakeTimeoutMs());
        assertEquals(30000, c.idleTimeoutMs());
        assertEquals(16, c.threads());
        assertEquals(Path.of("/d/reload.stamp"), c.reloadFilePath());
        assertTrue(!c.noReload());
    }

    @Test
    void parse_the_reload_switches() throws Exception {
        Config c = Flags.parse(new String[] {"--no-reload", "--cert-dir", "/d", "--reload-file", "/run/b.stamp"});
        assertTrue(c.noReload());
        assertEquals(Path.of("/run/b.stamp"), c.reloadFilePath());
    }

    @Test
    void parse_every_flag_in_both_spellings() throws Exception {
        Config c = Flags.parse(new String[] {"--cert-dir=/d", "--listen", "127.0.0.1:1", "--metrics-listen=[::1]:2",
            "--policy", "/p.json", "--crl", "/c.pem", "--crl-stale", "warn", "--expect-peer",
            "spiffe://zt.lab/svc/service-a", "--name", "b2", "--pid-file", "/run/b.pid", "--reload-interval", "0",
            "--handshake-timeout-ms", "100", "--idle-timeout-ms", "200", "--threads", "3"});
        assertEquals(new HostPort("::1", 2), c.metricsListen());
        assertEquals(Path.of("/c.pem"), c.crlPath());
        assertTrue(c.crlRequired());
        assertEquals(StaleMode.WARN, c.crlStale());
        assertEquals("spiffe://zt.lab/svc/service-a", c.expectPeer().toString());
        assertEquals(Duration.ZERO, c.reloadInterval());
        assertEquals(3, c.threads());
    }

    @ParameterizedTest
    @ValueSource(strings = {
        "",
        "--listen 1.2.3.4:5",
        "--cert-dir /d --bogus 1",
        "--cert-dir /d --listen nope",
        "--cert-dir /d --listen 1.2.3.4:70000",
        "--cert-dir /d --crl-stale maybe",
        "--cert-dir /d --expect-peer https://x/y",
        "--cert-dir /d --threads 0",
        "--cert-dir /d --reload-interval -1",
        "--cert-dir /d --handshake-timeout-ms x",
        "--cert-dir /d --cert-dir /e",
        "--cert-dir /d stray",
        "--cert-dir",
        "--cert-dir /d --no-reload --no-reload",
        "--cert-dir /d --no-reload=yes",
        "--cert-dir /d --reload-file=",
    })
    void reject_bad_command_lines(String line) {
        String[] args = line.isEmpty() ? new String[0] : line.split(" ");
        assertThrows(Flags.UsageException.class, () -> Flags.parse(args));
    }

    @Test
    void document_every_flag_in_help() {
        assertThrows(Flags.HelpRequested.class, () -> Flags.parse(new String[] {"--help"}));
        for (String f : new String[] {"--cert-dir", "--listen", "--metrics-listen", "--policy", "--crl",
            "--crl-stale", "--expect-peer", "--name", "--pid-file", "--reload-interval", "--handshake-timeout-ms",
            "--idle-timeout-ms", "--threads", "--reload-file", "--no-reload"}) {
            assertTrue(Flags.USAGE.contains(f + " "), f);
        }
    }
}
