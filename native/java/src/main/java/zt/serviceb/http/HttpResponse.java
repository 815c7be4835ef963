package zt.serviceb.http;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/** A JSON response; every body the service sends is JSON (contracts.md 5). */
public record HttpResponse(int status, String body) {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static HttpResponse json(int status, Object value) {
        try {
            return new HttpResponse(status, JSON.writeValueAsString(value));
        } catch (JsonProcessingException e) {
            return error(500, "internal", "cannot encode response");
        }
    }

    /** The error body shape everywhere: {@code {"error": code, "reason": text}}. */
    public static HttpResponse error(int status, String error, String reason) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("error", error);
        m.put("reason", reason);
        return json(status, m);
    }

    public void writeTo(OutputStream out, boolean close) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        String head = "HTTP/1.1 " + status + " " + reasonPhrase(status) + "\r\n"
                + "Content-Type: application/json\r\n"
                + "Content-Length: " + bytes.length + "\r\n"
                + "Connection: " + (close ? "close" : "keep-alive") + "\r\n"
                + "\r\n";
        out.write(head.getBytes(StandardCharsets.US_ASCII));
        out.write(bytes);
        out.flush();
    }

    static String reasonPhrase(int status) {
        return switch (status) {
            case 200 -> "OK";
            case 400 -> "Bad Request";
            case 401 -> "Unauthorized";
            case 403 -> "Forbidden";
            case 404 -> "Not Found";
            case 405 -> "Method Not Allowed";
            case 431 -> "Request Header Fields Too Large";
            case 500 -> "Internal Server Error";
            case 502 -> "Bad Gateway";
            case 504 -> "Gateway Timeout";
            default -> "Status";
        };
    }
}
