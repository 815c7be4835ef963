package zt.serviceb.support;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedInputStream;
import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.net.Socket;
import java.security.Principal;
import javax.net.ssl.KeyManager;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedKeyManager;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

import zt.serviceb.identity.PemFiles;
import zt.serviceb.identity.Serials;

/**
 * A plain JSSE mTLS client for the tests, independent of the service's own TLS code: the JDK's
 * PKIX trust manager over a PEM bundle (no hostname check on a raw SSLSocket), and a key
 * manager over an identity's key.pem + chain.pem (or none, for "no client certificate").
 */
public final class TestClient {
    private TestClient() {
    }

    public static SSLContext context(Path certDir, Path bundlePem) throws IOException, GeneralSecurityException {
        return context(certDir, bundlePem, null);
    }

    /** {@code certDir} null: present no client certificate. {@code protocol} null: TLS 1.3 and 1.2. */
    public static SSLContext context(Path certDir, Path bundlePem, String protocol)
            throws IOException, GeneralSecurityException {
        try {
            KeyManager[] kms = null;
            if (certDir != null) {
                Path gen = certDir.resolve("current").toRealPath();
                PrivateKey key = PemFiles.readPrivateKey(gen.resolve("key.pem"));
                List<X509Certificate> chain = PemFiles.readCertificates(gen.resolve("chain.pem"));
                kms = new KeyManager[] {new AlwaysPresent(key, chain.toArray(new X509Certificate[0]))};
            }
            KeyStore ts = KeyStore.getInstance("PKCS12");
            ts.load(null, null);
            int i = 0;
            for (X509Certificate c : PemFiles.readCertificates(bundlePem)) {
                ts.setCertificateEntry("root-" + i++, c);
            }
            TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
            tmf.init(ts);
            SSLContext ctx = SSLContext.getInstance(protocol == null ? "TLS" : protocol);
            ctx.init(kms, tmf.getTrustManagers(), null);
            return ctx;
        } catch (zt.serviceb.identity.MaterialException e) {
            throw new IOException(e);
        }
    }

    public static Connection connect(SSLContext ctx, int port) throws IOException {
        return connect(ctx, port, null);
    }

    public static Connection connect(SSLContext ctx, int port, String[] protocols) throws IOException {
        return connect(ctx, port, protocols, null);
    }

    /** {@code suites} null: the JDK's defaults. */
    public static Connection connect(SSLContext ctx, int port, String[] protocols, String[] suites)
            throws IOException {
        SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket("127.0.0.1", port);
        try {
            s.setSoTimeout(10_000);
            if (protocols != null) {
                s.setEnabledProtocols(protocols);
            }
            if (suites != null) {
                s.setEnabledCipherSuites(suites);
            }
            s.startHandshake();
            return new Connection(s);
        } catch (IOException | RuntimeException e) {
            s.close();
            throw e;
        }
    }

    /**
     * Presents its certificate whatever CA names the server asks for, as curl and openssl do;
     * the JDK's own key manager would send no certificate at all for a foreign-CA identity.
     */
    private static final class AlwaysPresent extends X509ExtendedKeyManager {
        private final PrivateKey key;
        private final X509Certificate[] chain;

        AlwaysPresent(PrivateKey key, X509Certificate[] chain) {
            this.key = key;
            this.chain = chain;
        }

        @Override
        public String[] getClientAliases(String keyType, Principal[] issuers) {
            return new String[] {"client"};
        }

        @Override
        public String chooseClientAlias(String[] keyType, Principal[] issuers, Socket socket) {
            return "client";
        }

        @Override
        public String chooseEngineClientAlias(String[] keyType, Principal[] issuers, SSLEngine engine) {
            return "client";
        }

        @Override
        public String[] getServerAliases(String keyType, Principal[] issuers) {
            return null;
        }

        @Override
        public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) {
            return null;
        }

        @Override
        public X509Certificate[] getCertificateChain(String alias) {
            return chain.clone();
        }

        @Override
        public PrivateKey getPrivateKey(String alias) {
            return key;
        }
    }

    /** One keep-alive connection. */
    public static final class Connection implements Closeable {
        private final SSLSocket socket;
        private final InputStream in;
        private final OutputStream out;

        Connection(SSLSocket socket) throws IOException {
            this.socket = socket;
            this.in = new BufferedInputStream(socket.getInputStream());
            this.out = socket.getOutputStream();
        }

        public SSLSocket socket() {
            return socket;
        }

        public String serverSerial() throws IOException {
            return Serials.hex((X509Certificate) socket.getSession().getPeerCertificates()[0]);
        }

        public Response get(String target) throws IOException {
            return send("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        }

        public Response send(String raw) throws IOException {
            out.write(raw.getBytes(StandardCharsets.ISO_8859_1));
            out.flush();
            return Response.read(in);
        }

        public void write(byte[] raw) throws IOException {
            out.write(raw);
            out.flush();
        }

        public Response read() throws IOException {
            return Response.read(in);
        }

        /** -1 when the server closed the connection. */
        public int readByte() throws IOException {
            return in.read();
        }

        @Override
        public void close() throws IOException {
            socket.close();
        }
    }

    public record Response(int status, Map<String, String> headers, String body) {
        private static final ObjectMapper JSON = new ObjectMapper();

        public JsonNode json() throws IOException {
            return JSON.readTree(body);
        }

        static Response read(InputStream in) throws IOException {
            String status = line(in);
            String[] parts = status.split(" ", 3);
            if (parts.length < 2) {
                throw new IOException("bad status line '" + status + "'");
            }
            Map<String, String> headers = new LinkedHashMap<>();
            String l;
            while (!(l = line(in)).isEmpty()) {
                int c = l.indexOf(':');
                headers.put(l.substring(0, c).trim().toLowerCase(Locale.ROOT), l.substring(c + 1).trim());
            }
            int len = Integer.parseInt(headers.getOrDefault("content-length", "0"));
            byte[] body = in.readNBytes(len);
            return new Response(Integer.parseInt(parts[1]), headers, new String(body, StandardCharsets.UTF_8));
        }

        private static String line(InputStream in) throws IOException {
            StringBuilder b = new StringBuilder();
            int c;
            while ((c = in.read()) != '\n') {
                if (c < 0) {
                    throw new IOException("connection closed while reading a response");
                }
                if (c != '\r') {
                    b.append((char) c);
                }
            }
            return b.toString();
        }
    }

    public static String read(Path p) throws IOException {
        return Files.readString(p);
    }
}
