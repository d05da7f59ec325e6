#!/usr/bin/env python3
"""misdirect adapter: a browser-like HTTP/2 client on python-hyper/h2.

Carries out the client plan that `misdirect run` puts in MISDIRECT_PLAN with one connection
pool, coalescing the way browsers do: a request reuses an open connection to the same
address whose certificate covers the request's host name (RFC 9113 §9.1.1).

    python_h2.py [--on-421 retry-new|retry-same|give-up] [--coalesce-any-address]

--on-421 retry-new      (correct) retry once on a NEW connection whose SNI is the request's
                        host, and stop coalescing that host;
--on-421 retry-same     (wrong) retry on the connection that answered 421;
--on-421 give-up        (wrong) report the 421 and move on;
--coalesce-any-address  (wrong) reuse a connection whose certificate covers the host even
                        when the host resolves to another address;
--system-dns            resolve host names with the system resolver (e.g. Docker's DNS)
                        instead of the plan's `connect` address; the port stays the plan's.

RST_STREAM REFUSED_STREAM is retried once on the same connection; a GOAWAY that excludes
the request is retried once on a new connection (RFC 9113 §8.7, §6.8).

Prints one JSON line per attempt. Exits 0 once the plan is carried out, whatever the
answers (a refused certificate is an answer too): judging them is the verdict's job.
"""
import argparse
import json
import os
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events


class Connection:
    def __init__(self, address, sni, cafile):
        host, _, port = address.rpartition(":")
        context = ssl.create_default_context(cafile=cafile)
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname=sni)
        self.address = address
        self.sni = sni
        cert = self.sock.getpeercert()
        self.names = [value for kind, value in cert.get("subjectAltName", ())]
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        self.closed = False

    def covers(self, host):
        for name in self.names:
            if name.lower() == host.lower():
                return True
            if name.startswith("*.") and "." in host:
                label, rest = host.split(".", 1)
                if label and rest.lower() == name[2:].lower():
                    return True
        return False

    def request(self, method, host, path, headers, body):
        """Returns (status, outcome): outcome is "answered", "refused" or "goaway"."""
        stream_id = self.h2.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "https"), (":authority", host), (":path", path)]
        fields += [(k.lower(), v) for k, v in headers.items()]
        payload = body.encode() if body is not None else None
        if payload is not None:
            fields.append(("content-length", str(len(payload))))
        self.h2.send_headers(stream_id, fields, end_stream=payload is None)
        if payload is not None:
            self.h2.send_data(stream_id, payload, end_stream=True)
        self.sock.sendall(self.h2.data_to_send())
        status = None
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                self.closed = True
                return status, "closed"
            for event in self.h2.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    self.sock.sendall(self.h2.data_to_send())
                    return status, "answered"
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                    return None, "refused" if refused else "reset"
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.closed = True
                    if event.last_stream_id is not None and event.last_stream_id < stream_id:
                        return None, "goaway"
                    return status, "closed"
            self.sock.sendall(self.h2.data_to_send())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--on-421", choices=["retry-new", "retry-same", "give-up"], default="retry-new")
    parser.add_argument("--coalesce-any-address", action="store_true")
    parser.add_argument("--system-dns", action="store_true")
    options = parser.parse_args()
    plan = json.loads(os.environ["MISDIRECT_PLAN"])
    cafile = os.environ["MISDIRECT_CA"]
    pool = []
    no_coalescing = set()

    def connection_for(address, host):
        for conn in pool:
            if conn.closed:
                continue
            if conn.address != address and not options.coalesce_any_address:
                continue
            if conn.sni == host and conn.address == address:
                return conn
            if host not in no_coalescing and conn.covers(host):
                return conn
        conn = Connection(address, host, cafile)
        pool.append(conn)
        return conn

    def attempt(conn, r, path, retry):
        status, outcome = conn.request(r["method"], r["host"], path, r["headers"], r["body"])
        print(json.dumps({"url": r["url"], "sni": conn.sni, "status": status, "outcome": outcome, "retry": retry}))
        return status, outcome

    for step in plan["steps"]:
        if "pause_ms" in step:
            time.sleep(step["pause_ms"] / 1000)
            continue
        r = step["request"]
        if options.system_dns:
            port = r["connect"].rsplit(":", 1)[1]
            r = dict(r, connect=f"{socket.gethostbyname(r['host'])}:{port}")
        rest = r["url_with_port"].split("/", 3)
        path = "/" + rest[3] if len(rest) > 3 else "/"
        try:
            conn = connection_for(r["connect"], r["host"])
            status, outcome = attempt(conn, r, path, False)
            if outcome == "refused":
                status, outcome = attempt(conn, r, path, True)
            elif outcome == "goaway":
                conn = Connection(r["connect"], r["host"], cafile)
                pool.append(conn)
                status, outcome = attempt(conn, r, path, True)
            elif status == 421 and options.on_421 != "give-up":
                if options.on_421 == "retry-new":
                    no_coalescing.add(r["host"])
                    conn = Connection(r["connect"], r["host"], cafile)
                    pool.append(conn)
                attempt(conn, r, path, True)
        except (ssl.SSLError, ssl.CertificateError, OSError) as error:
            print(json.dumps({"url": r["url"], "error": str(error)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
