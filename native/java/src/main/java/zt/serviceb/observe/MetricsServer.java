package zt.serviceb.observe;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.ByteArrayOutputStream;
import java.io.Closeable;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Supplier;

/**
 * Plain HTTP on {@code --metrics-listen}: {@code GET /metrics} (Prometheus text) and
 * {@code GET /healthz} ({@code {"status":"ok","serial":...}} once serving). Kept apart from the
 * mTLS port so a scraper needs no client certificate.
 */
public final class MetricsServer implements Closeable {
    private final HttpServer server;
    private final ExecutorService executor;

    public MetricsServer(InetSocketAddress listen, Metrics metrics, Supplier<String> healthJson) throws IOException {
        server = HttpServer.create(listen, 16);
        executor = Executors.newFixedThreadPool(2, r -> {
            Thread t = new Thread(r, "metrics-http");
            t.setDaemon(true);
            return t;
        });
        server.setExecutor(executor);
        server.createContext("/", exchange -> {
            try (exchange) {
                String path = exchange.getRequestURI().getPath();
                if (!"GET".equals(exchange.getRequestMethod())) {
                    send(exchange, 405, "application/json",
                            "{\"error\":\"method_not_allowed\",\"reason\":\"only GET\"}");
                } else if ("/metrics".equals(path)) {
                    ByteArrayOutputStream buf = new ByteArrayOutputStream();
                    metrics.write(buf);
                    send(exchange, 200, Metrics.CONTENT_TYPE, buf.toString(StandardCharsets.UTF_8));
                } else if ("/healthz".equals(path)) {
                    send(exchange, 200, "application/json", healthJson.get());
                } else {
                    send(exchange, 404, "application/json",
                            "{\"error\":\"not_found\",\"reason\":\"try /metrics or /healthz\"}");
                }
            }
        });
    }

    private static void send(HttpExchange exchange, int code, String type, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", type);
        exchange.sendResponseHeaders(code, bytes.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }

    public void start() {
        server.start();
    }

    public int port() {
        return server.getAddress().getPort();
    }

    @Override
    public void close() {
        server.stop(0);
        executor.shutdownNow();
    }
}
