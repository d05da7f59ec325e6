#!/usr/bin/env node
// misdirect adapter: Node's built-in fetch (the undici bundled with Node 18+).
//
//     misdirect run scenarios/X.json -- node clients/node_fetch.mjs [--connections N]
//
// Carries out the client plan that `misdirect run` puts in MISDIRECT_PLAN, in order, with one
// fetch dispatcher (undici's Agent: its normal per-origin connection pool) for every request.
// Prints one JSON line per request: the status fetch returned, or the error it threw. Exits 0
// once the plan is carried out, whatever the answers: judging them is the verdict's job.
//
// No npm packages: Node does not export its bundled undici, so the adapter takes the Agent
// class from the global dispatcher (undici's documented cross-copy slot
// Symbol.for('undici.globalDispatcher.1')) and installs a new Agent whose only difference from
// Node's default `new Agent()` is its connect options:
//   - `lookup`: each plan host name resolves to its `connect` IP (the URL keeps the name, so
//     SNI, Host and the certificate check use the name; IP-literal hosts are not looked up);
//   - `ca`: Node's bundled roots plus MISDIRECT_CA (what NODE_EXTRA_CA_CERTS would give).
// Nothing else is changed and nothing is retried here: 421 handling (the fetch standard's
// one retry of a 421 whose body is not a stream) is fetch's own.

import dns from "node:dns";
import fs from "node:fs";
import tls from "node:tls";

const DISPATCHER = Symbol.for("undici.globalDispatcher.1");

function parseAddress(address) {
  const at = address.lastIndexOf(":");
  const host = address.slice(0, at).replace(/^\[|\]$/g, "");
  return { ip: host, port: Number(address.slice(at + 1)) };
}

async function main() {
  const plan = JSON.parse(process.env.MISDIRECT_PLAN);
  const ca = fs.readFileSync(process.env.MISDIRECT_CA, "utf8");

  const names = new Map();
  for (const step of plan.steps) {
    if (step.request) {
      names.set(step.request.host.toLowerCase(), parseAddress(step.request.connect).ip);
    }
  }

  // net.connect calls lookup(host, {family, hints, all?}, callback); with autoSelectFamily
  // (Node 20's default) `all` is true and an array is expected.
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

  // Loading fetch's undici creates Node's default global dispatcher; take its class.
  await fetch("data:,");
  const original = globalThis[DISPATCHER];
  if (!original || typeof original.constructor !== "function") {
    throw new Error("cannot find fetch's global dispatcher (not Node's bundled undici?)");
  }
  const Agent = original.constructor;
  // `--connections N` caps undici's pool per origin (its option `connections`; default: no cap).
  const at = process.argv.indexOf("--connections");
  const connections = at > 0 ? Number(process.argv[at + 1]) : undefined;
  const agent = new Agent({
    connect: { ca: [...tls.rootCertificates, ca], lookup },
    ...(connections ? { connections } : {}),
  });
  globalThis[DISPATCHER] = agent;

  for (const step of plan.steps) {
    if (step.pause_ms !== undefined) {
      await new Promise((resolve) => setTimeout(resolve, step.pause_ms));
      continue;
    }
    const r = step.request;
    const started = Date.now();
    try {
      const response = await fetch(r.url_with_port, {
        method: r.method,
        headers: r.headers || {},
        body: r.body === null || r.body === undefined ? undefined : r.body,
      });
      const body = await response.arrayBuffer();
      console.log(JSON.stringify({
        url: r.url, status: response.status, bytes: body.byteLength, ms: Date.now() - started,
      }));
    } catch (error) {
      const cause = error && error.cause;
      console.log(JSON.stringify({
        url: r.url,
        error: String(error && error.message),
        cause: cause ? `${cause.code || cause.name || ""}: ${cause.message}` : undefined,
        ms: Date.now() - started,
      }));
    }
  }

  // Close the pool (idle keep-alive sockets would otherwise hold the process open for a while).
  await Promise.race([agent.close(), new Promise((resolve) => setTimeout(resolve, 2000))]);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`node_fetch adapter broke: ${error && error.stack ? error.stack : error}`);
    process.exit(2);
  },
);
