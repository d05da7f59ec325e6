// misdirect adapter: Java's built-in java.net.http.HttpClient (Java 11+; tested with 17).
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
// The plan, the CA and JSON come from clients/java/Plan.java, which java_httpclient.sh compiles
// with it.

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.SSLContext;

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
        }
        System.out.flush();
        System.exit(code);
    }

    /** Writes the plan's names, each with its `connect` IP, as a hosts file (this JVM resolves nothing). */
    @SuppressWarnings("unchecked")
    static int writeHosts(String file) throws Exception {
        Map<String, String> names = new LinkedHashMap<>();
        names.put("localhost", "127.0.0.1");
        for (Map<String, Object> step : Plan.steps()) {
            if (step.containsKey("request")) {
                Map<String, Object> r = (Map<String, Object>) step.get("request");
                names.put(((String) r.get("host")).toLowerCase(), Plan.ip(r));
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
        List<Map<String, Object>> steps = Plan.steps();
        if (System.getProperty("jdk.net.hosts.file") == null) {
            System.err.println("java_httpclient: jdk.net.hosts.file is not set; names use system DNS"
                    + " (run clients/java_httpclient.sh)");
        }

        SSLContext sslContext = SSLContext.getInstance("TLS");
        sslContext.init(null, Plan.trustingTheCa().getTrustManagers(), null);

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
                System.out.println("{\"url\": " + Plan.quote(url) + ", \"status\": " + response.statusCode()
                        + ", \"version\": " + Plan.quote(response.version().toString())
                        + ", \"bytes\": " + response.body().length + ", \"ms\": " + Plan.ms(started) + "}");
            } catch (Exception e) {
                System.out.println("{\"url\": " + Plan.quote(url) + ", \"error\": " + Plan.quote(e.toString())
                        + ", \"ms\": " + Plan.ms(started) + "}");
            }
            System.out.flush();
        }
        return 0;
    }
}
