package zt.serviceb.http;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Map;
import org.junit.jupiter.api.Test;

class RouterShould {
    @Test
    void label_routes_for_metrics_with_bounded_cardinality() {
        assertEquals("/hello", Router.routeLabel("/hello"));
        assertEquals("/call", Router.routeLabel("/call"));
        assertEquals("other", Router.routeLabel("/x/y"));
        assertEquals("other", Router.routeLabel(null));
    }

    @Test
    void decode_query_values_and_keep_the_first_of_repeated_names() {
        Map<String, String> q = Router.parseQuery("target=https%3A%2F%2F127.0.0.1%3A8081%2Fhello&expect=a&expect=b&x");
        assertEquals("https://127.0.0.1:8081/hello", q.get("target"));
        assertEquals("a", q.get("expect"));
        assertEquals("", q.get("x"));
    }
}
