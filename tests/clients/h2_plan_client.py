#!/usr/bin/env python3
"""A browser-like HTTP/2 client (python-hyper/h2) that carries out the client plan
`misdirect run` puts in MISDIRECT_PLAN, with one connection pool, and coalesces the way
browsers do: a request reuses an open connection to the same address whose certificate
covers the request's host name.

    h2_plan_client.py [--on-421 retry-new|retry-same|give-up]

--on-421 retry-new   (correct) retry once on a NEW connection whose SNI is the request's
                     host, and stop coalescing that host;
--on-421 retry-same  (wrong) retry on the connection that answered 421;
--on-421 give-up     (wrong) report the 421 and move on.

Prints one JSON line per request it made. Exit status 0 when every planned request got a
final answer (a 421 counts as an answer for give-up).
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
        self.names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        self.closed = False

    def covers(self, host):
        for name in self.names:
            if name == host:
                return True
            if name.startswith("*.") and host.split(".", 1)[-1] == name[2:] and host.count(".") == name.count("."):
                return True
        return False

    def request(self, method, host, path, headers, body):
        stream_id = self.h2.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "https"), (":authority", host), (":path", path)]
        fields += [(k.lower(), v) for k, v in headers.items()]
        if body is not None:
            fields.append(("content-length", str(len(body.encode()))))
        self.h2.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            self.h2.send_data(stream_id, body.encode(), end_stream=True)
        self.sock.sendall(self.h2.data_to_send())
        status, data = None, b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                self.closed = True
                return status, "connection closed"
            for event in self.h2.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if event.stream_id == stream_id:
                        data += event.data
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    self.sock.sendall(self.h2.data_to_send())
                    return status, data.decode("utf-8", "replace")
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    return None, f"reset {event.error_code!r}"
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.closed = True
                    return status, f"GOAWAY {event.error_code!r}"
            self.sock.sendall(self.h2.data_to_send())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--on-421", choices=["retry-new", "retry-same", "give-up"], default="retry-new")
    on_421 = parser.parse_args().on_421
    plan = json.loads(os.environ["MISDIRECT_PLAN"])
    cafile = os.environ["MISDIRECT_CA"]
    pool = []
    no_coalescing = set()
    ok = True

    def connection_for(address, host):
        for conn in pool:
            if conn.closed or conn.address != address:
                continue
            if conn.sni == host or (host not in no_coalescing and conn.covers(host)):
                return conn
        conn = Connection(address, host, cafile)
        pool.append(conn)
        return conn

    for step in plan["steps"]:
        if "pause_ms" in step:
            time.sleep(step["pause_ms"] / 1000)
            continue
        r = step["request"]
        path = "/" + r["url_with_port"].split("/", 3)[3] if r["url_with_port"].count("/") >= 3 else "/"
        conn = connection_for(r["connect"], r["host"])
        status, body = conn.request(r["method"], r["host"], path, r["headers"], r["body"])
        print(json.dumps({"url": r["url"], "sni": conn.sni, "status": status}))
        if status == 421 and on_421 != "give-up":
            if on_421 == "retry-new":
                no_coalescing.add(r["host"])
                conn = Connection(r["connect"], r["host"], cafile)
                pool.append(conn)
            status, body = conn.request(r["method"], r["host"], path, r["headers"], r["body"])
            print(json.dumps({"url": r["url"], "sni": conn.sni, "status": status, "retry": True}))
        if status is None:
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
