package zt.serviceb.reload;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import zt.serviceb.support.CapturedLog;

/** When a reload is triggered: the rename of `current`, a renamed CRL, the periodic check. */
class ReloaderShould {
    @TempDir
    Path dir;
    private final BlockingQueue<String> triggers = new LinkedBlockingQueue<>();
    private ScheduledExecutorService timer;
    private Reloader reloader;

    @BeforeEach
    void timer() throws Exception {
        timer = Executors.newSingleThreadScheduledExecutor();
        Files.createDirectory(dir.resolve("gen-1"));
        Files.createSymbolicLink(dir.resolve("current"), Path.of("gen-1"));
    }

    @AfterEach
    void stop() {
        if (reloader != null) {
            reloader.close();
        }
        timer.shutdownNow();
    }

    private void start(Duration interval) {
        reloader = new Reloader(dir, Set.of(dir.resolve("crl.pem")), interval, Duration.ofMillis(100),
                triggers::add, new CapturedLog().log("test"), timer);
        reloader.start();
    }

    /** The agent's swap: a temporary symlink renamed over `current`. */
    private void swapCurrent(String gen) throws Exception {
        Files.createDirectory(dir.resolve(gen));
        Path tmp = dir.resolve(".current.tmp");
        Files.createSymbolicLink(tmp, Path.of(gen));
        Files.move(tmp, dir.resolve("current"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    @Test
    void fire_once_for_a_burst_of_swaps_of_current() throws Exception {
        start(Duration.ZERO);
        swapCurrent("gen-2");
        swapCurrent("gen-3");
        assertEquals("watch", triggers.poll(5, TimeUnit.SECONDS));
        assertNull(triggers.poll(500, TimeUnit.MILLISECONDS), "debounced into one reload");
    }

    @Test
    void fire_for_a_crl_renamed_into_place() throws Exception {
        start(Duration.ZERO);
        Path tmp = dir.resolve("crl.pem.tmp");
        Files.writeString(tmp, "x");
        Files.move(tmp, dir.resolve("crl.pem"), StandardCopyOption.ATOMIC_MOVE);
        assertEquals("watch", triggers.poll(5, TimeUnit.SECONDS));
    }

    @Test
    void ignore_changes_to_other_files() throws Exception {
        start(Duration.ZERO);
        Files.writeString(dir.resolve("unrelated.txt"), "x");
        Files.createDirectory(dir.resolve("gen-9"));
        assertNull(triggers.poll(700, TimeUnit.MILLISECONDS));
        swapCurrent("gen-10");
        assertEquals("watch", triggers.poll(5, TimeUnit.SECONDS), "and still sees the ones that matter");
    }

    @Test
    void poll_at_the_reload_interval() throws Exception {
        start(Duration.ofSeconds(1));
        assertEquals("poll", triggers.poll(5, TimeUnit.SECONDS));
        assertEquals("poll", triggers.poll(5, TimeUnit.SECONDS));
    }
}
