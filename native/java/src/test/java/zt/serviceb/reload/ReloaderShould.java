package zt.serviceb.reload;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.time.Instant;
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
import zt.serviceb.support.TestPki;

/**
 * When a reload is triggered: a touch of the reload file (the agent's {@code --touch}), a renamed
 * CRL, the periodic check; not by the rename of `current` alone.
 */
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
        start(interval, dir.resolve("reload.stamp"));
    }

    private void start(Duration interval, Path reloadFile) {
        reloader = new Reloader(reloadFile, Set.of(dir.resolve("crl.pem")), interval, Duration.ofMillis(100),
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
    void fire_once_when_the_reload_file_is_created_and_touched_in_a_burst() throws Exception {
        start(Duration.ZERO);
        swapCurrent("gen-2");
        TestPki.touch(dir.resolve("reload.stamp"));
        Files.setLastModifiedTime(dir.resolve("reload.stamp"), FileTime.fromMillis(1_000));
        assertEquals("touch", triggers.poll(5, TimeUnit.SECONDS));
        assertNull(triggers.poll(500, TimeUnit.MILLISECONDS), "debounced into one reload");
    }

    @Test
    void fire_when_an_existing_reload_file_only_gets_a_new_mtime() throws Exception {
        Files.createFile(dir.resolve("reload.stamp"));
        start(Duration.ZERO);
        assertNull(triggers.poll(300, TimeUnit.MILLISECONDS), "nothing before the touch");
        // What the agent's Path.touch() does to an existing file: utime(2) only (inotify IN_ATTRIB).
        Files.setLastModifiedTime(dir.resolve("reload.stamp"), FileTime.from(Instant.now().plusSeconds(1)));
        assertEquals("touch", triggers.poll(5, TimeUnit.SECONDS));
    }

    @Test
    void not_fire_for_a_swap_of_current_without_the_touch() throws Exception {
        start(Duration.ZERO);
        swapCurrent("gen-2");
        assertNull(triggers.poll(700, TimeUnit.MILLISECONDS), "the rename of current alone is not a trigger");
        TestPki.touch(dir.resolve("reload.stamp"));
        assertEquals("touch", triggers.poll(5, TimeUnit.SECONDS), "the touch that follows it is");
    }

    @Test
    void watch_a_reload_file_outside_the_cert_dir() throws Exception {
        Path elsewhere = Files.createDirectory(dir.resolve("run"));
        start(Duration.ZERO, elsewhere.resolve("b.stamp"));
        TestPki.touch(dir.resolve("reload.stamp"));
        assertNull(triggers.poll(500, TimeUnit.MILLISECONDS), "not the configured file");
        TestPki.touch(elsewhere.resolve("b.stamp"));
        assertEquals("touch", triggers.poll(5, TimeUnit.SECONDS));
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
        TestPki.touch(dir.resolve("reload.stamp"));
        assertEquals("touch", triggers.poll(5, TimeUnit.SECONDS), "and still sees the ones that matter");
    }

    @Test
    void poll_at_the_reload_interval() throws Exception {
        start(Duration.ofSeconds(1));
        assertEquals("poll", triggers.poll(5, TimeUnit.SECONDS));
        assertEquals("poll", triggers.poll(5, TimeUnit.SECONDS));
    }
}
