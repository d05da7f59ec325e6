#!/usr/bin/env python3
"""A frame-level HTTP/2 client (python-hyper/h2) that sends every request on ONE connection,
the way a browser that coalesces does, and prints what it saw as JSON.

    h2_requests.py HOST PORT SNI CAFILE AUTHORITY[/PATH] [AUTHORITY[/PATH] ...]

Output: {"alpn": "h2", "responses": [{"authority", "path", "stream_id", "status", "body"}],
"goaway": null | {"last_stream_id", "error_code"}, "resets": [{"stream_id", "error_code"}]}
"""
import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def main() -> int:
    host, port, sni, cafile, *targets = sys.argv[1:]
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection((host, int(port)), timeout=10)
    sock = context.wrap_socket(raw, server_hostname=sni)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    result = {"alpn": sock.selected_alpn_protocol(), "responses": [], "goaway": None, "resets": []}
    for target in targets:
        authority, _, path = target.partition("/")
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(
            stream_id,
            [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", "/" + path)],
            end_stream=True,
        )
        sock.sendall(conn.data_to_send())
        response = {"authority": authority, "path": "/" + path, "stream_id": stream_id, "status": None, "body": ""}
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    response["status"] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if event.stream_id == stream_id:
                        response["body"] += event.data.decode("utf-8", "replace")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    done = True
                elif isinstance(event, h2.events.StreamReset):
                    result["resets"].append({"stream_id": event.stream_id, "error_code": int(event.error_code)})
                    done = done or event.stream_id == stream_id
                elif isinstance(event, h2.events.ConnectionTerminated):
                    result["goaway"] = {"last_stream_id": event.last_stream_id, "error_code": int(event.error_code)}
                    done = True
            sock.sendall(conn.data_to_send())
        result["responses"].append(response)
        if result["goaway"] is not None:
            break
    print(json.dumps(result))
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
