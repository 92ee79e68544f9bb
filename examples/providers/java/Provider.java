// An external provider for stepflow (and KubeVela) in plain Java 17: the JDK only, no build tool.
//
// stepflow POSTs an action's $params as JSON to <endpoint>/<#do> and takes the JSON answer as the
// action's $returns. A 4xx answer fails the step with its "message"; a 5xx is retried.
//
//     javac -d out Provider.java && java -cp out Provider [ADDRESS:]PORT   (default 127.0.0.1:8091)
//
// Actions (the JSON they take is small and flat, read by the few lines of Json below):
//     upper   {"text": string}  -> {"text": string in upper case}
//     count   {"text": string}  -> {"words": number, "chars": number}

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.function.Function;

public final class Provider {
    static final int MAX_REQUEST = 1 << 20; // bytes of a request's body read at most

    /** A request the action cannot take: answered 400, which fails the step. */
    static final class BadRequest extends Exception {
        BadRequest(String message) {
            super(message);
        }
    }

    interface Action {
        String run(String params) throws BadRequest;
    }

    static final Map<String, Action> ACTIONS = Map.of(
            "upper", params -> "{\"text\":" + Json.quote(Json.string(params, "text").toUpperCase(Locale.ROOT)) + "}",
            "count", params -> {
                String text = Json.string(params, "text");
                String trimmed = text.strip();
                int words = trimmed.isEmpty() ? 0 : trimmed.split("\\s+").length;
                return "{\"words\":" + words + ",\"chars\":" + text.codePointCount(0, text.length()) + "}";
            });

    public static void main(String[] args) throws IOException {
        String addr = args.length > 0 ? args[0] : "127.0.0.1:8091";
        int colon = addr.lastIndexOf(':');
        String host = colon > 0 ? addr.substring(0, colon) : "127.0.0.1";
        int port = Integer.parseInt(addr.substring(colon + 1));
        HttpServer server = HttpServer.create(new InetSocketAddress(host, port), 0);
        server.createContext("/", Provider::handle);
        server.setExecutor(Executors.newFixedThreadPool(4));
        server.start();
        System.out.println("serving on http://" + host + ":" + server.getAddress().getPort());
        System.out.flush();
    }

    static void handle(HttpExchange ex) throws IOException {
        try (ex) {
            String name = ex.getRequestURI().getPath().replaceAll("^/+|/+$", "");
            if (ex.getRequestMethod().equals("GET")) { // a health check: stepflow never GETs
                answer(ex, 200, "{\"actions\":[\"count\",\"upper\"]}");
                return;
            }
            Action action = ACTIONS.get(name);
            if (!ex.getRequestMethod().equals("POST") || action == null) {
                answer(ex, 404, "{\"message\":" + Json.quote("no action " + name + " here") + "}");
                return;
            }
            String body = read(ex.getRequestBody());
            if (body == null) {
                answer(ex, 413, "{\"message\":\"request over " + MAX_REQUEST + " bytes\"}");
                return;
            }
            try {
                answer(ex, 200, action.run(body));
            } catch (BadRequest e) {
                answer(ex, 400, "{\"message\":" + Json.quote(name + ": " + e.getMessage()) + "}");
            } catch (RuntimeException e) { // a bug here: stepflow retries a 5xx
                answer(ex, 500, "{\"message\":" + Json.quote("internal error: " + e) + "}");
            }
        }
    }

    static String read(InputStream in) throws IOException {
        byte[] b = in.readNBytes(MAX_REQUEST + 1);
        return b.length > MAX_REQUEST ? null : new String(b, StandardCharsets.UTF_8);
    }

    static void answer(HttpExchange ex, int status, String json) throws IOException {
        byte[] b = json.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, b.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(b);
        }
        // One line per request on stderr; never the body, which may hold secrets.
        System.err.println(ex.getRequestMethod() + " " + ex.getRequestURI().getPath() + " " + status);
    }

    /** Just enough JSON for flat objects of strings: the JDK has no JSON parser. */
    static final class Json {
        /** The string field name of a flat JSON object. */
        static String string(String json, String name) throws BadRequest {
            String key = quote(name);
            int i = json.indexOf(key);
            if (i < 0) {
                throw new BadRequest(name + " is required");
            }
            i = skipSpace(json, i + key.length());
            if (i >= json.length() || json.charAt(i) != ':') {
                throw new BadRequest("the parameters are not a JSON object");
            }
            i = skipSpace(json, i + 1);
            if (i >= json.length() || json.charAt(i) != '"') {
                throw new BadRequest(name + " must be a string");
            }
            StringBuilder s = new StringBuilder();
            for (i++; i < json.length(); i++) {
                char c = json.charAt(i);
                if (c == '"') {
                    return s.toString();
                }
                if (c != '\\') {
                    s.append(c);
                    continue;
                }
                if (++i >= json.length()) {
                    break;
                }
                char e = json.charAt(i);
                switch (e) {
                    case 'n' -> s.append('\n');
                    case 't' -> s.append('\t');
                    case 'r' -> s.append('\r');
                    case 'b' -> s.append('\b');
                    case 'f' -> s.append('\f');
                    case 'u' -> {
                        if (i + 4 >= json.length()) {
                            throw new BadRequest(name + ": a bad \\u escape");
                        }
                        s.append((char) Integer.parseInt(json.substring(i + 1, i + 5), 16));
                        i += 4;
                    }
                    default -> s.append(e);
                }
            }
            throw new BadRequest(name + ": an unterminated string");
        }

        static int skipSpace(String s, int i) {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
            return i;
        }

        static String quote(String s) {
            StringBuilder b = new StringBuilder("\"");
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"' -> b.append("\\\"");
                    case '\\' -> b.append("\\\\");
                    case '\n' -> b.append("\\n");
                    case '\r' -> b.append("\\r");
                    case '\t' -> b.append("\\t");
                    default -> {
                        if (c < 0x20) {
                            b.append(String.format("\\u%04x", (int) c));
                        } else {
                            b.append(c);
                        }
                    }
                }
            }
            return b.append('"').toString();
        }
    }
}
