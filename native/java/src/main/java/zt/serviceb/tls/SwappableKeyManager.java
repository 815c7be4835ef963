package zt.serviceb.tls;

import java.net.Socket;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedKeyManager;

import zt.serviceb.identity.IdentityMaterial;

/**
 * The key manager of the one, stable SSLContext: it presents the identity of the service's
 * current snapshot (read through {@code current} on every handshake; a reload swaps the snapshot,
 * never this object).
 *
 * <p>JSSE asks for an alias first and then, in separate calls, for that alias's key and chain.
 * A swap between those calls must not pair a new certificate with an old key, so every identity
 * gets its own alias (generation + serial) and the last few identities stay resolvable by alias:
 * a handshake finishes with the identity it started with; the next handshake gets the new one.
 */
public final class SwappableKeyManager extends X509ExtendedKeyManager {
    /** Identities kept resolvable after being replaced (in-flight handshakes). */
    private static final int RETAINED = 4;

    private final Supplier<IdentityMaterial> current;
    private final Map<String, Entry> byAlias = new ConcurrentHashMap<>();
    private final Deque<String> order = new ArrayDeque<>();

    public SwappableKeyManager(Supplier<IdentityMaterial> current) {
        this.current = current;
    }

    /** The current identity's entry, made resolvable by its alias on first use. */
    private Entry entry() {
        IdentityMaterial material = current.get();
        String alias = "identity-" + material.generation().getFileName() + "-" + material.serial();
        Entry known = byAlias.get(alias);
        if (known != null) {
            return known;
        }
        Entry e = new Entry(alias, material.key(), material.chain().toArray(new X509Certificate[0]));
        synchronized (order) {
            if (byAlias.putIfAbsent(alias, e) == null) {
                order.addLast(alias);
                while (order.size() > RETAINED) {
                    byAlias.remove(order.removeFirst());
                }
            }
        }
        return e;
    }

    private String aliasFor(String keyType) {
        Entry e = entry();
        return e.key.getAlgorithm().equals(keyType) ? e.alias : null;
    }

    private String aliasFor(String[] keyTypes) {
        if (keyTypes == null) {
            return null;
        }
        for (String t : keyTypes) {
            String a = aliasFor(t);
            if (a != null) {
                return a;
            }
        }
        return null;
    }

    private String[] aliases(String keyType) {
        String a = aliasFor(keyType);
        return a == null ? null : new String[] {a};
    }

    @Override
    public String[] getClientAliases(String keyType, Principal[] issuers) {
        return aliases(keyType);
    }

    @Override
    public String chooseClientAlias(String[] keyTypes, Principal[] issuers, Socket socket) {
        return aliasFor(keyTypes);
    }

    @Override
    public String chooseEngineClientAlias(String[] keyTypes, Principal[] issuers, SSLEngine engine) {
        return aliasFor(keyTypes);
    }

    @Override
    public String[] getServerAliases(String keyType, Principal[] issuers) {
        return aliases(keyType);
    }

    @Override
    public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) {
        return aliasFor(keyType);
    }

    @Override
    public String chooseEngineServerAlias(String keyType, Principal[] issuers, SSLEngine engine) {
        return aliasFor(keyType);
    }

    @Override
    public X509Certificate[] getCertificateChain(String alias) {
        Entry e = alias == null ? null : byAlias.get(alias);
        return e == null ? null : e.chain.clone();
    }

    @Override
    public PrivateKey getPrivateKey(String alias) {
        Entry e = alias == null ? null : byAlias.get(alias);
        return e == null ? null : e.key;
    }

    private record Entry(String alias, PrivateKey key, X509Certificate[] chain) {
    }
}
