package zt.serviceb;

import java.io.PrintStream;
import java.time.Clock;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;

import zt.serviceb.observe.JsonLog;
import zt.serviceb.tls.TlsContext;

/**
 * The process: flags, start, signals. SIGTERM/SIGINT stop cleanly with exit code 0 (the JVM's
 * default would exit 143/130); SIGHUP reloads, or with {@code --no-reload} is ignored and logged
 * (the JVM's default would terminate the process, which an agent run with {@code --signal} must
 * never do).
 */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        // Before any TLS is done: no stateless session tickets, no client renegotiation (see TlsContext).
        TlsContext.configureJsse();
        System.exit(run(args, System.out, System.err));
    }

    static int run(String[] args, PrintStream out, PrintStream err) {
        Config config;
        try {
            config = Flags.parse(args);
        } catch (Flags.HelpRequested e) {
            out.print(Flags.USAGE);
            return 0;
        } catch (Flags.UsageException e) {
            err.println("service-b: " + e.getMessage());
            err.println("run 'service-b --help' for the flags");
            return 2;
        }
        JsonLog log = new JsonLog(config.name(), Clock.systemUTC(), JsonLog.stream(err));
        ServiceB service;
        try {
            service = ServiceB.start(config, log, Clock.systemUTC());
        } catch (ServiceB.StartupException e) {
            log.error("start_failed", "reason", e.getMessage());
            return 1;
        }
        CountDownLatch stopped = new CountDownLatch(1);
        AtomicReference<String> why = new AtomicReference<>("signal");
        handleSignals(service, stopped, why);
        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        service.close(why.get());
        return 0;
    }

    /** SIGTERM/SIGINT count {@code stopped} down (exit 0); SIGHUP reloads (on its own thread). */
    private static void handleSignals(ServiceB service, CountDownLatch stopped, AtomicReference<String> why) {
        for (String name : new String[] {"TERM", "INT"}) {
            Signals.handle(name, () -> {
                why.compareAndSet("signal", "SIG" + name);
                stopped.countDown();
            });
        }
        Signals.handle("HUP", () -> new Thread(service::onSighup, "sighup").start());
    }
}
