#!/usr/bin/env node
// misdirect adapter: Node's built-in HTTP/2 client (node:http2).
//
//     misdirect run scenarios/X.json -- node clients/node_http2.mjs
//
// Carries out the client plan that `misdirect run` puts in MISDIRECT_PLAN, in order, the way a
// typical node:http2 client does: one ClientHttp2Session per origin (scheme, host, port), made
// with http2.connect(origin, {ca, lookup}) and reused for every request to that origin while it
// is open; a closed or destroyed session is replaced by a new one on the next request.
//   - `lookup` resolves each plan host name to its `connect` IP (the origin keeps the name, so
//     SNI, :authority and the certificate check use the name);
//   - `ca` is Node's bundled roots plus MISDIRECT_CA.
// node:http2 never coalesces origins and never retries; neither does this adapter (a 421, a
// refused stream or a GOAWAY is reported as it is).
//
// Prints one JSON line per request: the status, or the error. Exits 0 once the plan is carried
// out, whatever the answers: judging them is the verdict's job.

import dns from "node:dns";
import fs from "node:fs";
import http2 from "node:http2";
import tls from "node:tls";

function parseAddress(address) {
  const at = address.lastIndexOf(":");
  const host = address.slice(0, at).replace(/^\[|\]$/g, "");
  return { ip: host, port: Number(address.slice(at + 1)) };
}

async function main() {
  const plan = JSON.parse(process.env.MISDIRECT_PLAN);
  const ca = [...tls.rootCertificates, fs.readFileSync(process.env.MISDIRECT_CA, "utf8")];

  const names = new Map();
  for (const step of plan.steps) {
    if (step.request) {
      names.set(step.request.host.toLowerCase(), parseAddress(step.request.connect).ip);
    }
  }

  function lookup(hostname, options, callback) {
    if (typeof options === "function") {
      callback = options;
      options = {};
    }
    const ip = names.get(String(hostname).toLowerCase());
    if (ip === undefined) {
      return dns.lookup(hostname, options, callback);
    }
    const family = ip.includes(":") ? 6 : 4;
    if (options && options.all) {
      callback(null, [{ address: ip, family }]);
    } else {
      callback(null, ip, family);
    }
  }

  const sessions = new Map(); // origin -> ClientHttp2Session
  let sessionCount = 0;

  function sessionFor(origin) {
    const existing = sessions.get(origin);
    if (existing && !existing.closed && !existing.destroyed) {
      return existing;
    }
    const session = http2.connect(origin, { ca, lookup });
    session.misdirectId = ++sessionCount;
    // Without a listener a session error (a refused certificate, a reset) would crash Node;
    // the request that meets it reports it.
    session.on("error", () => {});
    session.on("goaway", (code, lastStreamID) => {
      console.log(JSON.stringify({ origin, session: session.misdirectId, goaway: code, last_stream_id: lastStreamID }));
    });
    sessions.set(origin, session);
    return session;
  }

  function request(r) {
    return new Promise((resolve) => {
      const url = new URL(r.url_with_port);
      const started = Date.now();
      let session;
      let status = null;
      let bytes = 0;
      let done = false;
      const finish = (line) => {
        if (!done) {
          done = true;
          console.log(JSON.stringify({ url: r.url, session: session && session.misdirectId, ...line, ms: Date.now() - started }));
          resolve();
        }
      };
      try {
        session = sessionFor(url.origin);
        const headers = { ":method": r.method, ":path": url.pathname + url.search };
        for (const [name, value] of Object.entries(r.headers || {})) {
          headers[name.toLowerCase()] = value;
        }
        const hasBody = r.body !== null && r.body !== undefined;
        const stream = session.request(headers, { endStream: !hasBody });
        stream.on("response", (responseHeaders) => {
          status = responseHeaders[":status"];
        });
        stream.on("data", (chunk) => {
          bytes += chunk.length;
        });
        stream.on("end", () => finish({ status, bytes }));
        stream.on("error", (error) => finish({ status, error: `${error.code || error.name}: ${error.message}` }));
        stream.on("close", () => {
          if (status === null) {
            finish({ status, error: `stream closed, rstCode ${stream.rstCode}` });
          } else {
            finish({ status, bytes });
          }
        });
        if (hasBody) {
          stream.end(r.body);
        }
      } catch (error) {
        finish({ error: `${error.code || error.name}: ${error.message}` });
      }
    });
  }

  for (const step of plan.steps) {
    if (step.pause_ms !== undefined) {
      await new Promise((resolve) => setTimeout(resolve, step.pause_ms));
      continue;
    }
    await request(step.request);
  }

  // Close the sessions gracefully (GOAWAY), waiting at most a second.
  const closing = [];
  for (const session of sessions.values()) {
    if (!session.destroyed) {
      closing.push(new Promise((resolve) => session.close(resolve)));
    }
  }
  await Promise.race([Promise.all(closing), new Promise((resolve) => setTimeout(resolve, 1000))]);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`node_http2 adapter broke: ${error && error.stack ? error.stack : error}`);
    process.exit(2);
  },
);
