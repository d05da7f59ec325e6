// misdirect adapter: Java's built-in java.net.http.HttpClient (Java 11+; tested with 17), run as a
// single-file source program.
//
//     misdirect run scenarios/X.json -- clients/java_httpclient.sh
//
// Carries out the client plan that `misdirect run` puts in MISDIRECT_PLAN, in order, with ONE
// HttpClient (version HTTP_2, so h2 via ALPN; its own connection pool, coalescing and retry
// rules, all defaults) configured only with
//   - names mapped by -Djdk.net.hosts.file: java_httpclient.sh first runs this program with
//     `--write-hosts FILE`, which writes each plan host name with its `connect` IP (and
//     localhost), then runs it again with the property set (the URL keeps the name, so SNI,
//     :authority and the certificate check use the name);
//   - an SSLContext whose trust manager trusts MISDIRECT_CA (only: the harness is all it talks to).
// HttpClient refuses some headers (Host, Connection, Content-Length, ...): they are skipped, and
// said so on stderr. Nothing is retried here. Prints one JSON line per request (status, version,
// or the exception) and exits 0 once the plan is carried out, whatever the answers.
//
// MISDIRECT_PLAN is parsed by the small JSON reader below (the JDK has none; it is the one in
// okhttp/Main.java).

import java.io.FileInputStream;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class Main {
    public static void main(String[] args) {
        int code;
        try {
            if (args.length == 2 && args[0].equals("--write-hosts")) {
                code = writeHosts(args[1]);
            } else {
                code = run();
            }
        } catch (Throwable t) {
            System.err.println("java_httpclient adapter broke: " + t);
            t.printStackTrace();
            code = 2;
        } finally {
            if (args.length == 2 && args[0].equals("--remove-hosts-file")) {
                try {
                    Files.deleteIfExists(Paths.get(args[1]));
                } catch (Exception e) {
                    System.err.println("java_httpclient: could not remove " + args[1] + ": " + e);
                }
            }
        }
        System.out.flush();
        System.exit(code);
    }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> steps() {
        Map<String, Object> plan = (Map<String, Object>) new Json(System.getenv("MISDIRECT_PLAN")).value();
        List<Map<String, Object>> steps = new ArrayList<>();
        for (Object s : (List<Object>) plan.get("steps")) {
            steps.add((Map<String, Object>) s);
        }
        return steps;
    }

    /** Writes the plan's names, each with its `connect` IP, as a hosts file (this JVM resolves nothing). */
    @SuppressWarnings("unchecked")
    static int writeHosts(String file) throws Exception {
        Map<String, String> names = new LinkedHashMap<>();
        names.put("localhost", "127.0.0.1");
        for (Map<String, Object> step : steps()) {
            if (step.containsKey("request")) {
                Map<String, Object> r = (Map<String, Object>) step.get("request");
                String connect = (String) r.get("connect");
                String ip = connect.substring(0, connect.lastIndexOf(':')).replaceAll("^\\[|\\]$", "");
                names.put(((String) r.get("host")).toLowerCase(), ip);
            }
        }
        StringBuilder out = new StringBuilder("# misdirect: the plan's names (java_httpclient.sh)\n");
        for (Map.Entry<String, String> e : names.entrySet()) {
            out.append(e.getValue()).append(' ').append(e.getKey()).append('\n');
        }
        Files.write(Paths.get(file), out.toString().getBytes(StandardCharsets.UTF_8));
        return 0;
    }

    @SuppressWarnings("unchecked")
    static int run() throws Exception {
        List<Map<String, Object>> steps = steps();
        if (System.getProperty("jdk.net.hosts.file") == null) {
            System.err.println("java_httpclient: jdk.net.hosts.file is not set; names use system DNS"
                    + " (run clients/java_httpclient.sh)");
        }

        KeyStore keyStore = KeyStore.getInstance(KeyStore.getDefaultType());
        keyStore.load(null, null);
        try (InputStream in = new FileInputStream(System.getenv("MISDIRECT_CA"))) {
            int i = 0;
            for (Certificate certificate : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                keyStore.setCertificateEntry("misdirect-ca-" + i++, certificate);
            }
        }
        TrustManagerFactory factory = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        factory.init(keyStore);
        SSLContext sslContext = SSLContext.getInstance("TLS");
        sslContext.init(null, factory.getTrustManagers(), null);

        HttpClient client = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_2)
                .sslContext(sslContext)
                .connectTimeout(Duration.ofSeconds(10))
                .build();

        for (Map<String, Object> step : steps) {
            if (step.containsKey("pause_ms")) {
                Thread.sleep(((Number) step.get("pause_ms")).longValue());
                continue;
            }
            Map<String, Object> r = (Map<String, Object>) step.get("request");
            String url = (String) r.get("url");
            Map<String, Object> headers = r.get("headers") == null
                    ? Collections.emptyMap() : (Map<String, Object>) r.get("headers");
            Object body = r.get("body");
            long started = System.nanoTime();
            try {
                HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create((String) r.get("url_with_port")))
                        .timeout(Duration.ofSeconds(30));
                for (Map.Entry<String, Object> h : headers.entrySet()) {
                    try {
                        builder.header(h.getKey(), String.valueOf(h.getValue()));
                    } catch (IllegalArgumentException e) {
                        System.err.println("java_httpclient: skipped header " + h.getKey() + " (" + e.getMessage() + ")");
                    }
                }
                builder.method((String) r.get("method"), body == null
                        ? HttpRequest.BodyPublishers.noBody()
                        : HttpRequest.BodyPublishers.ofString((String) body, StandardCharsets.UTF_8));
                HttpResponse<byte[]> response = client.send(builder.build(), HttpResponse.BodyHandlers.ofByteArray());
                System.out.println("{\"url\": " + Json.quote(url) + ", \"status\": " + response.statusCode()
                        + ", \"version\": " + Json.quote(response.version().toString())
                        + ", \"bytes\": " + response.body().length + ", \"ms\": " + ms(started) + "}");
            } catch (Exception e) {
                System.out.println("{\"url\": " + Json.quote(url) + ", \"error\": " + Json.quote(e.toString())
                        + ", \"ms\": " + ms(started) + "}");
            }
            System.out.flush();
        }
        return 0;
    }

    static long ms(long started) {
        return (System.nanoTime() - started) / 1_000_000;
    }

    /** A minimal JSON reader: objects, arrays, strings, numbers, true, false, null. */
    static final class Json {
        private final String s;
        private int i;

        Json(String s) {
            if (s == null) {
                throw new IllegalArgumentException("MISDIRECT_PLAN is not set");
            }
            this.s = s;
        }

        Object value() {
            skip();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> map = new LinkedHashMap<>();
                i++;
                skip();
                if (s.charAt(i) == '}') {
                    i++;
                    return map;
                }
                while (true) {
                    skip();
                    String key = string();
                    skip();
                    expect(':');
                    map.put(key, value());
                    skip();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect('}');
                        return map;
                    }
                }
            }
            if (c == '[') {
                List<Object> list = new ArrayList<>();
                i++;
                skip();
                if (s.charAt(i) == ']') {
                    i++;
                    return list;
                }
                while (true) {
                    list.add(value());
                    skip();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect(']');
                        return list;
                    }
                }
            }
            if (c == '"') {
                return string();
            }
            if (s.startsWith("true", i)) {
                i += 4;
                return Boolean.TRUE;
            }
            if (s.startsWith("false", i)) {
                i += 5;
                return Boolean.FALSE;
            }
            if (s.startsWith("null", i)) {
                i += 4;
                return null;
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
            if (start == i) {
                throw new IllegalArgumentException("bad JSON at " + i);
            }
            return Double.parseDouble(s.substring(start, i));
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') {
                    return out.toString();
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n': out.append('\n'); break;
                    case 't': out.append('\t'); break;
                    case 'r': out.append('\r'); break;
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'u': out.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                    default: out.append(e);
                }
            }
        }

        private void expect(char c) {
            if (s.charAt(i) != c) {
                throw new IllegalArgumentException("bad JSON at " + i + ": expected " + c);
            }
            i++;
        }

        private void skip() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        static String quote(String v) {
            StringBuilder out = new StringBuilder("\"");
            for (char c : v.toCharArray()) {
                if (c == '"' || c == '\\') {
                    out.append('\\').append(c);
                } else if (c < 0x20) {
                    out.append(String.format("\\u%04x", (int) c));
                } else {
                    out.append(c);
                }
            }
            return out.append('"').toString();
        }
    }
}
