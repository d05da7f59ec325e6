// misdirect adapter: OkHttp 3 (Debian's libokhttp-java).
//
//     misdirect run scenarios/X.json -- clients/okhttp.sh
//     (= javac with clients/java/Plan.java, then java -cp CLASSES:okhttp.jar:okio.jar Main)
//
// Carries out the client plan that `misdirect run` puts in MISDIRECT_PLAN, in order, with ONE
// OkHttpClient (its normal connection pool, HTTP/2 via ALPN, its own coalescing and retry
// rules, all defaults) configured only with
//   - a Dns that resolves each plan host name to its `connect` IP (the URL keeps the name, so
//     SNI, :authority and the certificate check use the name; other names use Dns.SYSTEM);
//   - an SSLContext whose trust manager trusts MISDIRECT_CA (only: the harness is all it talks to).
// Nothing is retried here. Prints one JSON line per request (status, protocol, or the
// exception) and exits 0 once the plan is carried out, whatever the answers.
//
// The plan, the CA and JSON come from clients/java/Plan.java, which okhttp.sh compiles with it.

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;
import okhttp3.Dns;
import okhttp3.MediaType;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.RequestBody;
import okhttp3.Response;

public class Main {
    public static void main(String[] args) {
        int code;
        try {
            code = run();
        } catch (Throwable t) {
            System.err.println("okhttp adapter broke: " + t);
            t.printStackTrace();
            code = 2;
        }
        System.out.flush();
        System.exit(code);
    }

    @SuppressWarnings("unchecked")
    static int run() throws Exception {
        List<Map<String, Object>> steps = Plan.steps();

        Map<String, InetAddress> names = new HashMap<>();
        for (Map<String, Object> step : steps) {
            if (step.containsKey("request")) {
                Map<String, Object> r = (Map<String, Object>) step.get("request");
                String host = ((String) r.get("host")).toLowerCase();
                // An address literal needs no lookup; getByAddress keeps the host name.
                names.put(host, InetAddress.getByAddress(host, InetAddress.getByName(Plan.ip(r)).getAddress()));
            }
        }
        Dns dns = hostname -> {
            InetAddress address = names.get(hostname.toLowerCase());
            if (address == null) {
                return Dns.SYSTEM.lookup(hostname);
            }
            return Collections.singletonList(address);
        };

        TrustManagerFactory factory = Plan.trustingTheCa();
        X509TrustManager trustManager = null;
        for (TrustManager tm : factory.getTrustManagers()) {
            if (tm instanceof X509TrustManager) {
                trustManager = (X509TrustManager) tm;
            }
        }
        SSLContext sslContext = SSLContext.getInstance("TLS");
        sslContext.init(null, new TrustManager[] {trustManager}, null);

        OkHttpClient client = new OkHttpClient.Builder()
                .dns(dns)
                .sslSocketFactory(sslContext.getSocketFactory(), trustManager)
                .build();

        for (Map<String, Object> step : steps) {
            if (step.containsKey("pause_ms")) {
                Thread.sleep(((Number) step.get("pause_ms")).longValue());
                continue;
            }
            Map<String, Object> r = (Map<String, Object>) step.get("request");
            String url = (String) r.get("url");
            String method = (String) r.get("method");
            Map<String, Object> headers = r.get("headers") == null
                    ? Collections.emptyMap() : (Map<String, Object>) r.get("headers");
            Object body = r.get("body");
            long started = System.nanoTime();
            try {
                Request.Builder builder = new Request.Builder().url((String) r.get("url_with_port"));
                String contentType = null;
                for (Map.Entry<String, Object> h : headers.entrySet()) {
                    builder.header(h.getKey(), String.valueOf(h.getValue()));
                    if (h.getKey().equalsIgnoreCase("content-type")) {
                        contentType = String.valueOf(h.getValue());
                    }
                }
                RequestBody requestBody = null;
                if (body != null) {
                    MediaType type = contentType == null ? null : MediaType.parse(contentType);
                    requestBody = RequestBody.create(type, ((String) body).getBytes("UTF-8"));
                }
                builder.method(method, requestBody);
                try (Response response = client.newCall(builder.build()).execute()) {
                    int bytes = response.body() == null ? 0 : response.body().bytes().length;
                    System.out.println("{\"url\": " + Plan.quote(url) + ", \"status\": " + response.code()
                            + ", \"protocol\": " + Plan.quote(response.protocol().toString())
                            + ", \"bytes\": " + bytes + ", \"ms\": " + Plan.ms(started) + "}");
                }
            } catch (Exception e) {
                System.out.println("{\"url\": " + Plan.quote(url) + ", \"error\": " + Plan.quote(e.toString())
                        + ", \"ms\": " + Plan.ms(started) + "}");
            }
            System.out.flush();
        }

        client.dispatcher().executorService().shutdown();
        client.connectionPool().evictAll();
        return 0;
    }
}
