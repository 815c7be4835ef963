package zt.serviceb.reload;

import java.io.Closeable;
import java.io.IOException;
import java.nio.file.ClosedWatchServiceException;
import java.nio.file.FileSystems;
import java.nio.file.Path;
import java.nio.file.StandardWatchEventKinds;
import java.nio.file.WatchEvent;
import java.nio.file.WatchKey;
import java.nio.file.WatchService;
import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

import zt.serviceb.observe.JsonLog;

/**
 * Decides when to reload; what a reload does is the caller's {@code reload(trigger)}.
 *
 * <p>Three sources. (1) The touched file (contracts.md 2): the agent runs with
 * {@code --touch DIR/reload.stamp} and touches it after it has written a new generation or a new
 * CRL, so its change (create, or a new mtime: inotify IN_ATTRIB, which the JDK reports as
 * ENTRY_MODIFY) is the signal that everything is in place; trigger {@code touch}. A WatchService
 * on the file's directory sees it. The rename of {@code current} alone is deliberately not a
 * trigger: the touch is the agent's "done" and one trigger per write keeps reloads countable.
 * (2) The same watch on the CRL's and policy's directories: a replaced CRL or policy file (which
 * someone other than the agent may write) reloads at once; trigger {@code watch}. Events are
 * debounced so a burst gives one reload. (3) As a fallback for file systems without reliable
 * events (or a missed touch), a periodic call every {@code --reload-interval}; trigger
 * {@code poll}. The caller compares {@code realpath(current)} and the files' stamps and ignores
 * calls where nothing changed.
 */
public final class Reloader implements Closeable {
    public static final Duration DEFAULT_DEBOUNCE = Duration.ofMillis(200);
    public static final String TRIGGER_TOUCH = "touch";
    public static final String TRIGGER_WATCH = "watch";
    public static final String TRIGGER_POLL = "poll";

    private final Path reloadFile;
    private final Set<Path> watchedFiles;
    private final Duration interval;
    private final Duration debounce;
    private final Consumer<String> reload;
    private final JsonLog log;
    private final ScheduledExecutorService timer;
    private WatchService watcher;
    private Thread watchThread;
    private ScheduledFuture<?> poll;

    /**
     * {@code reloadFile}: the touched file; {@code files}: other files whose replacement matters
     * (CRL, policy); nulls are skipped.
     */
    public Reloader(Path reloadFile, Set<Path> files, Duration interval, Duration debounce, Consumer<String> reload,
                    JsonLog log, ScheduledExecutorService timer) {
        this.reloadFile = reloadFile.toAbsolutePath().normalize();
        Set<Path> abs = new LinkedHashSet<>();
        for (Path f : files) {
            if (f != null) {
                abs.add(f.toAbsolutePath().normalize());
            }
        }
        this.watchedFiles = Set.copyOf(abs);
        this.interval = interval;
        this.debounce = debounce;
        this.reload = reload;
        this.log = log;
        this.timer = timer;
    }

    public void start() {
        try {
            watcher = FileSystems.getDefault().newWatchService();
            Map<WatchKey, Path> keys = new HashMap<>();
            Set<Path> dirs = new LinkedHashSet<>();
            dirs.add(reloadFile.getParent());
            for (Path f : watchedFiles) {
                if (f.getParent() != null) {
                    dirs.add(f.getParent());
                }
            }
            for (Path d : dirs) {
                try {
                    keys.put(d.register(watcher, StandardWatchEventKinds.ENTRY_CREATE,
                            StandardWatchEventKinds.ENTRY_MODIFY, StandardWatchEventKinds.ENTRY_DELETE), d);
                } catch (IOException e) {
                    log.warn("watch_unavailable", "path", d.toString(), "reason", e.toString());
                }
            }
            watchThread = new Thread(() -> watchLoop(keys), "reload-watch");
            watchThread.setDaemon(true);
            watchThread.start();
        } catch (IOException e) {
            log.warn("watch_unavailable", "path", reloadFile.toString(), "reason", e.toString());
        }
        if (!interval.isZero()) {
            poll = timer.scheduleWithFixedDelay(() -> safely(TRIGGER_POLL), interval.toMillis(), interval.toMillis(),
                    TimeUnit.MILLISECONDS);
        }
    }

    private void watchLoop(Map<WatchKey, Path> keys) {
        try {
            while (true) {
                WatchKey key = watcher.take();
                String trigger = drain(key, keys, null);
                if (trigger == null) {
                    continue;
                }
                // Debounce: keep collecting until the directories are quiet for `debounce`.
                while (true) {
                    WatchKey more = watcher.poll(debounce.toMillis(), TimeUnit.MILLISECONDS);
                    if (more == null) {
                        break;
                    }
                    trigger = drain(more, keys, trigger);
                }
                safely(trigger);
            }
        } catch (InterruptedException | ClosedWatchServiceException e) {
            // closing
        }
    }

    /**
     * Consumes a key's events; returns the trigger they amount to ({@code touch} wins over
     * {@code watch}), or {@code sofar} when none concerns a file we care about.
     */
    private String drain(WatchKey key, Map<WatchKey, Path> keys, String sofar) {
        Path dir = keys.get(key);
        String trigger = sofar;
        for (WatchEvent<?> ev : key.pollEvents()) {
            if (ev.kind() == StandardWatchEventKinds.OVERFLOW) {
                // Events were lost: the touch may be among them.
                trigger = TRIGGER_TOUCH;
                continue;
            }
            Path name = (Path) ev.context();
            if (dir == null || name == null || ev.kind() == StandardWatchEventKinds.ENTRY_DELETE
                    && dir.resolve(name).equals(reloadFile)) {
                continue;
            }
            Path full = dir.resolve(name);
            if (full.equals(reloadFile)) {
                trigger = TRIGGER_TOUCH;
            } else if (watchedFiles.contains(full) && trigger == null) {
                trigger = TRIGGER_WATCH;
            }
        }
        key.reset();
        return trigger;
    }

    private void safely(String trigger) {
        try {
            reload.accept(trigger);
        } catch (RuntimeException e) {
            // A reload never kills its loop: log and go on (the next event or poll retries).
            log.error("reload", "result", "failure", "trigger", trigger, "reason", "unexpected: " + e);
        }
    }

    @Override
    public void close() {
        if (poll != null) {
            poll.cancel(false);
        }
        if (watcher != null) {
            try {
                watcher.close();
            } catch (IOException e) {
                // closing anyway
            }
        }
        if (watchThread != null) {
            watchThread.interrupt();
        }
    }
}
