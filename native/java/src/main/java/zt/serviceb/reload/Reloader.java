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
 * <p>Two sources: a WatchService on the cert directory (and the CRL's and policy's directories),
 * where the agent's {@code rename(.current.tmp, current)} shows as ENTRY_CREATE of
 * {@code current} and a new {@code crl.pem} as ENTRY_CREATE of its name; events are debounced so
 * a burst gives one reload. And, as a fallback for file systems without reliable events, a
 * periodic call every {@code --reload-interval} that lets the caller compare
 * {@code realpath(current)} and the files' stamps. The caller ignores calls where nothing changed.
 */
public final class Reloader implements Closeable {
    public static final Duration DEFAULT_DEBOUNCE = Duration.ofMillis(200);

    private final Path certDir;
    private final Set<Path> watchedFiles;
    private final Duration interval;
    private final Duration debounce;
    private final Consumer<String> reload;
    private final JsonLog log;
    private final ScheduledExecutorService timer;
    private WatchService watcher;
    private Thread watchThread;
    private ScheduledFuture<?> poll;

    /** {@code files}: other files whose changes matter (CRL, policy); nulls are skipped. */
    public Reloader(Path certDir, Set<Path> files, Duration interval, Duration debounce, Consumer<String> reload,
                    JsonLog log, ScheduledExecutorService timer) {
        this.certDir = certDir.toAbsolutePath().normalize();
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
            dirs.add(certDir);
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
            log.warn("watch_unavailable", "path", certDir.toString(), "reason", e.toString());
        }
        if (!interval.isZero()) {
            poll = timer.scheduleWithFixedDelay(() -> safely("poll"), interval.toMillis(), interval.toMillis(),
                    TimeUnit.MILLISECONDS);
        }
    }

    private void watchLoop(Map<WatchKey, Path> keys) {
        try {
            while (true) {
                WatchKey key = watcher.take();
                boolean relevant = drain(key, keys);
                if (!relevant) {
                    continue;
                }
                // Debounce: keep collecting until the directory is quiet for `debounce`.
                while (true) {
                    WatchKey more = watcher.poll(debounce.toMillis(), TimeUnit.MILLISECONDS);
                    if (more == null) {
                        break;
                    }
                    drain(more, keys);
                }
                safely("watch");
            }
        } catch (InterruptedException | ClosedWatchServiceException e) {
            // closing
        }
    }

    /** Consumes a key's events; true when one of them concerns a file we care about. */
    private boolean drain(WatchKey key, Map<WatchKey, Path> keys) {
        Path dir = keys.get(key);
        boolean relevant = false;
        for (WatchEvent<?> ev : key.pollEvents()) {
            if (ev.kind() == StandardWatchEventKinds.OVERFLOW) {
                relevant = true;
                continue;
            }
            Path name = (Path) ev.context();
            if (dir == null || name == null) {
                continue;
            }
            Path full = dir.resolve(name);
            if ((dir.equals(certDir) && name.toString().equals("current")) || watchedFiles.contains(full)) {
                relevant = true;
            }
        }
        key.reset();
        return relevant;
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
