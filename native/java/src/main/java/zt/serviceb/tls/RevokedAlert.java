package zt.serviceb.tls;

import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.Socket;

/**
 * Sends the TLS alert {@code certificate_revoked} (44) to a client whose certificate is revoked.
 *
 * <p>Why this exists: the JDK's server answers every client-certificate refusal by its trust
 * manager with {@code certificate_unknown} ({@code CertificateMessage.checkClientCerts} does not
 * look at the reason; only the client side maps {@code CertPathValidatorException.BasicReason
 * .REVOKED} to {@code certificate_revoked}). The contract asks for the alert OpenSSL sends, so a
 * client of either service can tell "revoked" from "unknown". In TLS 1.3 that alert is
 * encrypted under keys only the JSSE connection holds, so it cannot be written from outside:
 * this class asks the connection's own {@code TransportContext.fatal(Alert, String, Throwable)}
 * to send it, from inside the trust manager, on the handshake's own thread, exactly where JSSE
 * would send its own alert. JSSE's following {@code fatal(certificate_unknown)} then finds the
 * connection closed and only rethrows (no second alert).
 *
 * <p>It needs {@code --add-opens java.base/sun.security.ssl=ALL-UNNAMED}: the jar's manifest
 * carries {@code Add-Opens: java.base/sun.security.ssl} (honoured by {@code java -jar}) and the
 * test JVMs get the flag. Without it (or on a JDK whose internals differ) nothing breaks: the
 * handshake is refused as before, with {@code certificate_unknown}, and {@link #available()} is
 * false (logged once at start).
 */
public final class RevokedAlert {
    private static final Field CON_CONTEXT;
    private static final Method FATAL;
    private static final Object CERTIFICATE_REVOKED;
    private static final String UNAVAILABLE;

    static {
        Field field = null;
        Method fatal = null;
        Object alert = null;
        String why = null;
        try {
            Class<?> socketImpl = Class.forName("sun.security.ssl.SSLSocketImpl");
            Class<?> alertClass = Class.forName("sun.security.ssl.Alert");
            field = socketImpl.getDeclaredField("conContext");
            field.setAccessible(true);
            fatal = field.getType().getDeclaredMethod("fatal", alertClass, String.class, Throwable.class);
            fatal.setAccessible(true);
            Field revoked = alertClass.getDeclaredField("CERTIFICATE_REVOKED");
            revoked.setAccessible(true);
            alert = revoked.get(null);
        } catch (ReflectiveOperationException | RuntimeException e) {
            // RuntimeException: InaccessibleObjectException without --add-opens.
            why = e.toString();
            field = null;
            fatal = null;
            alert = null;
        }
        CON_CONTEXT = field;
        FATAL = fatal;
        CERTIFICATE_REVOKED = alert;
        UNAVAILABLE = why;
    }

    private RevokedAlert() {
    }

    /** True when {@link #send} can send the specific alert. */
    public static boolean available() {
        return UNAVAILABLE == null;
    }

    /** Why {@link #available()} is false, or null. */
    public static String unavailableReason() {
        return UNAVAILABLE;
    }

    /**
     * Ends {@code socket}'s handshake with a fatal {@code certificate_revoked}; returns false when
     * it could not (then the caller's refusal goes on as usual and JSSE sends its own alert).
     */
    static boolean send(Socket socket, String detail, Throwable cause) {
        if (UNAVAILABLE != null || socket == null || !CON_CONTEXT.getDeclaringClass().isInstance(socket)) {
            return false;
        }
        try {
            FATAL.invoke(CON_CONTEXT.get(socket), CERTIFICATE_REVOKED, detail, cause);
            return true;
        } catch (InvocationTargetException e) {
            // fatal() always throws the exception it closed the connection with: the alert went out.
            return true;
        } catch (IllegalAccessException | RuntimeException e) {
            return false;
        }
    }
}
