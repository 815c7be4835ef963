package zt.serviceb;

import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;

import zt.serviceb.identity.InvalidSpiffeIdException;
import zt.serviceb.identity.SpiffeId;
import zt.serviceb.revocation.StaleMode;

/** Parses the command line (contracts.md 8) into a {@link Config}; {@code --flag value} or {@code --flag=value}. */
public final class Flags {
    public static final String USAGE = String.join("\n",
            "usage: service-b --cert-dir DIR [flags]",
            "",
            "service-b: the Java workload of zt. Serves mTLS (client certificate required; the caller's",
            "SPIFFE ID comes from its single URI SAN) and reloads its identity, CRL and policy without restart.",
            "",
            "flags:",
            "  --cert-dir DIR               the agent's output directory (required); reads DIR/current/*",
            "  --listen HOST:PORT           mTLS listener (default 0.0.0.0:8081)",
            "  --metrics-listen HOST:PORT   plain-HTTP /metrics and /healthz (default 127.0.0.1:9081)",
            "  --policy FILE                JSON policy (deny by default); none: every authenticated caller",
            "                               may call every path",
            "  --crl FILE                   CRL file, PEM, may hold several CRLs (default DIR/crl.pem when present)",
            "  --crl-stale refuse|warn      past nextUpdate: refuse handshakes (crl_stale) or warn (default refuse)",
            "  --expect-peer SPIFFE_ID      expected SPIFFE ID of /call targets when the request has no expect=",
            "  --name NAME                  name in logs and /hello (default service-b)",
            "  --pid-file FILE              write the PID here at start",
            "  --reload-file FILE           reload when this file is touched (created or its mtime changes);",
            "                               the agent's --touch file (default DIR/reload.stamp)",
            "  --reload-interval SECONDS    fallback polling for changed files (default 5; 0 disables);",
            "                               SIGHUP and a replaced CRL or policy file also reload at once",
            "  --no-reload                  never reload: no watch, no poll, SIGHUP ignored (logged)",
            "  --handshake-timeout-ms N     inbound and outbound TLS handshake timeout (default 5000)",
            "  --idle-timeout-ms N          keep-alive idle / request-read timeout (default 30000)",
            "  --threads N                  request worker threads (default 16); each open connection also has",
            "                               its own thread for handshake and request reads, at most 32*N",
            "                               connections at once (more are refused before the handshake)",
            "  --help                       print this help",
            "",
            "exit codes: 0 after SIGTERM/SIGINT, 2 for bad flags, 1 when the material cannot be loaded at start.",
            "");

    private static final Set<String> KNOWN = Set.of("cert-dir", "listen", "metrics-listen", "policy", "crl",
            "crl-stale", "expect-peer", "name", "pid-file", "reload-interval", "handshake-timeout-ms",
            "idle-timeout-ms", "threads", "reload-file");
    /** Flags that take no value. */
    private static final Set<String> SWITCHES = Set.of("no-reload");

    private Flags() {
    }

    /** Thrown for {@code --help}. */
    public static final class HelpRequested extends Exception {
        private static final long serialVersionUID = 1L;
    }

    /** A bad command line; the message says what is wrong (exit code 2). */
    public static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        public UsageException(String message) {
            super(message);
        }
    }

    public static Config parse(String[] args) throws UsageException, HelpRequested {
        Map<String, String> v = new HashMap<>();
        Map<String, Boolean> switches = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--help") || a.equals("-h")) {
                throw new HelpRequested();
            }
            if (!a.startsWith("--")) {
                throw new UsageException("unexpected argument '" + a + "'");
            }
            String name = a.substring(2);
            String value;
            int eq = name.indexOf('=');
            if (SWITCHES.contains(name)) {
                if (switches.put(name, Boolean.TRUE) != null) {
                    throw new UsageException("--" + name + " given twice");
                }
                continue;
            }
            if (eq >= 0 && SWITCHES.contains(name.substring(0, eq))) {
                throw new UsageException("--" + name.substring(0, eq) + " takes no value");
            }
            if (eq >= 0) {
                value = name.substring(eq + 1);
                name = name.substring(0, eq);
            } else {
                if (i + 1 >= args.length) {
                    throw new UsageException("--" + name + " needs a value");
                }
                value = args[++i];
            }
            if (!KNOWN.contains(name)) {
                throw new UsageException("unknown flag --" + name);
            }
            if (v.put(name, value) != null) {
                throw new UsageException("--" + name + " given twice");
            }
        }
        String certDir = v.get("cert-dir");
        if (certDir == null || certDir.isEmpty()) {
            throw new UsageException("--cert-dir is required");
        }
        try {
            SpiffeId expect = null;
            if (v.containsKey("expect-peer")) {
                try {
                    expect = SpiffeId.parse(v.get("expect-peer"));
                } catch (InvalidSpiffeIdException e) {
                    throw new UsageException("--expect-peer: " + e.getMessage());
                }
            }
            if (v.containsKey("reload-file") && v.get("reload-file").isBlank()) {
                throw new UsageException("--reload-file must not be empty");
            }
            String name = v.getOrDefault("name", Config.DEFAULT_NAME);
            if (name.isBlank()) {
                throw new UsageException("--name must not be empty");
            }
            return new Config(
                    Path.of(certDir),
                    HostPort.parse(v.getOrDefault("listen", "0.0.0.0:8081")),
                    HostPort.parse(v.getOrDefault("metrics-listen", "127.0.0.1:9081")),
                    v.containsKey("policy") ? Path.of(v.get("policy")) : null,
                    v.containsKey("crl") ? Path.of(v.get("crl")) : null,
                    StaleMode.parse(v.getOrDefault("crl-stale", "refuse")),
                    expect,
                    name,
                    v.containsKey("pid-file") ? Path.of(v.get("pid-file")) : null,
                    Duration.ofSeconds(integer(v, "reload-interval", 5, 0)),
                    integer(v, "handshake-timeout-ms", 5000, 1),
                    integer(v, "idle-timeout-ms", 30000, 1),
                    integer(v, "threads", 16, 1),
                    v.containsKey("reload-file") ? Path.of(v.get("reload-file")) : null,
                    switches.containsKey("no-reload"));
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage());
        }
    }

    private static int integer(Map<String, String> v, String name, int dflt, int min) throws UsageException {
        String s = v.get(name);
        if (s == null) {
            return dflt;
        }
        try {
            int n = Integer.parseInt(s);
            if (n < min) {
                throw new UsageException("--" + name + " must be at least " + min + ", got " + n);
            }
            return n;
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " must be an integer, got '" + s + "'");
        }
    }
}
