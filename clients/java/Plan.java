// The part of misdirect's Java adapters that is not the client: the plan, the CA, and JSON
// (the JDK has no JSON reader, and the adapters' only jars are their clients'). Compiled with
// each adapter by its script (okhttp.sh, java_httpclient.sh).

import java.io.FileInputStream;
import java.io.InputStream;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.TrustManagerFactory;

public final class Plan {
    private Plan() {}

    /** The steps of MISDIRECT_PLAN, each `{"request": {...}}` or `{"pause_ms": N}`. */
    @SuppressWarnings("unchecked")
    public static List<Map<String, Object>> steps() {
        Map<String, Object> plan = (Map<String, Object>) new Json(System.getenv("MISDIRECT_PLAN")).value();
        List<Map<String, Object>> steps = new ArrayList<>();
        for (Object s : (List<Object>) plan.get("steps")) {
            steps.add((Map<String, Object>) s);
        }
        return steps;
    }

    /** The IP a request's host name must resolve to (its `connect`, without the port). */
    public static String ip(Map<String, Object> request) {
        String connect = (String) request.get("connect");
        return connect.substring(0, connect.lastIndexOf(':')).replaceAll("^\\[|\\]$", "");
    }

    /** A trust manager factory that trusts MISDIRECT_CA, and nothing else. */
    public static TrustManagerFactory trustingTheCa() throws Exception {
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
        return factory;
    }

    /** Milliseconds since `started` (a System.nanoTime()). */
    public static long ms(long started) {
        return (System.nanoTime() - started) / 1_000_000;
    }

    /** `v` as a JSON string. */
    public static String quote(String v) {
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

    /** A minimal JSON reader: objects, arrays, strings, numbers, true, false, null. */
    private static final class Json {
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
    }
}
