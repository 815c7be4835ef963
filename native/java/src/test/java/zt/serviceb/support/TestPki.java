package zt.serviceb.support;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The native test vectors: runs native/testpki/make_test_pki.py into a directory. One shared
 * PKI serves the read-only tests; tests that rotate or rewrite files make their own.
 */
public final class TestPki {
    private static TestPki shared;

    private final Path root;
    private final JsonNode serials;

    private TestPki(Path root) throws IOException {
        this.root = root;
        this.serials = new ObjectMapper().readTree(root.resolve("serials.json").toFile());
    }

    public static synchronized TestPki shared() throws IOException {
        if (shared == null) {
            Path dir = Files.createTempDirectory("zt-testpki-");
            Runtime.getRuntime().addShutdownHook(new Thread(() -> deleteTree(dir)));
            shared = create(dir);
        }
        return shared;
    }

    private static void deleteTree(Path dir) {
        try (var paths = Files.walk(dir)) {
            paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // best effort at exit
        }
    }

    public static TestPki create(Path dir) throws IOException {
        run("all", dir.toString());
        return new TestPki(dir);
    }

    /** Also writes crl/crl-large.pem: 100k random serials plus ids/revoked (slow: tens of seconds). */
    public static TestPki createWithLargeCrl(Path dir) throws IOException {
        run("all", dir.toString(), "--large-crl");
        return new TestPki(dir);
    }

    public static Path script() {
        String p = System.getProperty("testpki.script");
        Path s = p != null ? Path.of(p) : Path.of("..", "testpki", "make_test_pki.py");
        if (!Files.exists(s)) {
            throw new IllegalStateException("test PKI generator not found at " + s.toAbsolutePath());
        }
        return s;
    }

    static String run(String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(python(), script().toString()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        try {
            if (!p.waitFor(120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException("make_test_pki.py " + String.join(" ", args) + " did not finish in 120 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        if (p.exitValue() != 0) {
            throw new IOException("make_test_pki.py " + String.join(" ", args) + " failed (" + p.exitValue()
                    + "): " + out);
        }
        return out.strip();
    }

    /**
     * The interpreter: $ZT_PYTHON, else the repository's .venv (which has `cryptography` once
     * `make venv` ran), else python3 from PATH.
     */
    static String python() {
        String env = System.getenv("ZT_PYTHON");
        if (env != null && !env.isBlank()) {
            return env;
        }
        Path venv = script().toAbsolutePath().normalize().getParent().getParent().getParent()
                .resolve(".venv/bin/python");
        return Files.isExecutable(venv) ? venv.toString() : "python3";
    }

    public Path root() {
        return root;
    }

    /** The cert dir of identity {@code name} (ids/NAME). */
    public Path certDir(String name) {
        return root.resolve("ids").resolve(name);
    }

    public Path bundle() {
        return root.resolve("ca").resolve("bundle.pem");
    }

    public Path foreignBundle() {
        return root.resolve("foreign").resolve("bundle.pem");
    }

    public Path crl(String file) {
        return root.resolve("crl").resolve(file);
    }

    public String serial(String name) {
        return serials.get(name).asText();
    }

    /**
     * Issues a fresh leaf for ids/NAME, swaps it in as a new generation and then touches
     * ids/NAME/reload.stamp, as the agent run with {@code --touch DIR/reload.stamp} does; returns
     * the new serial.
     */
    public String rotate(String name) throws IOException {
        String serial = rotateWithoutTouch(name);
        touch(certDir(name).resolve("reload.stamp"));
        return serial;
    }

    /** Like {@link #rotate} but without the touch: only `current` moves. */
    public String rotateWithoutTouch(String name) throws IOException {
        return run("rotate", root.toString(), name);
    }

    /** A new generation whose leaf expires {@code lifetimeSeconds} from now; no touch. */
    public String rotateWithoutTouch(String name, int lifetimeSeconds) throws IOException {
        return run("rotate", root.toString(), name, "--lifetime", Integer.toString(lifetimeSeconds));
    }

    /** What {@code zt-agent --touch FILE} does: create the file, or set its mtime to now. */
    public static void touch(Path file) throws IOException {
        if (Files.exists(file)) {
            Files.setLastModifiedTime(file, java.nio.file.attribute.FileTime.from(java.time.Instant.now()));
        } else {
            Files.createFile(file);
        }
    }

    /** Writes a CRL signed by the intermediate to {@code dest} (atomic rename). */
    public void writeCrl(Path dest, boolean stale, String... revoke) throws IOException {
        List<String> args = new ArrayList<>(List.of("crl", root.toString(), dest.toString()));
        if (revoke.length > 0) {
            args.add("--revoke");
            args.addAll(List.of(revoke));
        }
        if (stale) {
            args.add("--stale");
        }
        run(args.toArray(new String[0]));
    }

    /** Copies ids/NAME's generation files into a new standalone cert dir (current -> gen-copy). */
    public static Path copyCertDir(Path from, Path to) throws IOException {
        Path gen = from.resolve("current").toRealPath();
        Path newGen = to.resolve(gen.getFileName());
        Files.createDirectories(newGen);
        try (var files = Files.list(gen)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                Files.copy(f, newGen.resolve(f.getFileName()));
            }
        }
        Files.createSymbolicLink(to.resolve("current"), gen.getFileName());
        return to;
    }
}
