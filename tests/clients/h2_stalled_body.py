#!/usr/bin/env python3
"""Opens a request with a body and never sends the body; prints the status the server
answers with (or "none").

    h2_stalled_body.py HOST PORT SNI CAFILE
"""
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events

host, port, sni, cafile = sys.argv[1:]
context = ssl.create_default_context(cafile=cafile)
context.set_alpn_protocols(["h2"])
sock = context.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=sni)
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
conn.send_headers(1, [(":method", "PUT"), (":scheme", "https"), (":authority", sni), (":path", "/upload")])
sock.sendall(conn.data_to_send())
status = "none"
while status == "none":
    data = sock.recv(65536)
    if not data:
        break
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.ResponseReceived):
            status = dict(event.headers)[b":status"].decode()
    sock.sendall(conn.data_to_send())
print(status)
