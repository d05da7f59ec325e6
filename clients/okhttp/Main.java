// misdirect adapter: OkHttp 3 (Debian's libokhttp-java), run as a single-file source program.
//
//     misdirect run scenarios/X.json -- clients/okhttp.sh
//     (= java -cp /usr/share/java/okhttp.jar:/usr/share/java/okio.jar clients/okhttp/Main.java)
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
// MISDIRECT_PLAN is parsed by the small JSON reader below: the JDK has none, and the only jars
// are OkHttp's and Okio's.

import java.io.FileInputStream;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
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
        Map<String, Object> plan = (Map<String, Object>) new Json(System.getenv("MISDIRECT_PLAN")).value();
        List<Object> steps = (List<Object>) plan.get("steps");

        Map<String, InetAddress> names = new HashMap<>();
        for (Object s : steps) {
            Map<String, Object> step = (Map<String, Object>) s;
            if (step.containsKey("request")) {
                Map<String, Object> r = (Map<String, Object>) step.get("request");
                String host = ((String) r.get("host")).toLowerCase();
                String connect = (String) r.get("connect");
                String ip = connect.substring(0, connect.lastIndexOf(':')).replaceAll("^\\[|\\]$", "");
                // An address literal needs no lookup; getByAddress keeps the host name.
                names.put(host, InetAddress.getByAddress(host, InetAddress.getByName(ip).getAddress()));
            }
        }
        Dns dns = hostname -> {
            InetAddress address = names.get(hostname.toLowerCase());
            if (address == null) {
                return Dns.SYSTEM.lookup(hostname);
            }
            return Collections.singletonList(address);
        };

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

        for (Object s : steps) {
            Map<String, Object> step = (Map<String, Object>) s;
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
                    System.out.println("{\"url\": " + Json.quote(url) + ", \"status\": " + response.code()
                            + ", \"protocol\": " + Json.quote(response.protocol().toString())
                            + ", \"bytes\": " + bytes + ", \"ms\": " + ms(started) + "}");
                }
            } catch (Exception e) {
                System.out.println("{\"url\": " + Json.quote(url) + ", \"error\": " + Json.quote(e.toString())
                        + ", \"ms\": " + ms(started) + "}");
            }
            System.out.flush();
        }

        client.dispatcher().executorService().shutdown();
        client.connectionPool().evictAll();
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
