#!/usr/bin/env python3
"""Hostile clients for `tests/hostile.rs`: each attack speaks raw bytes, raw TLS records or
raw HTTP/2 frames (hyperframe + hpack, which h2 brings) to a misdirect listener on loopback,
and prints ONE JSON line saying what the server did (GOAWAY code, resets, statuses, whether
and when it closed the connection).

    attack.py ATTACK --port P [--tls --sni a.test --ca CA.pem] [--authority a.test]
              [--count N] [--seconds S] [--conns N] [--hold S] [--path /big]

Every loop is bounded in count AND in time (--seconds, default 10); only 127.0.0.1 is ever
contacted. The attacks never raise on a closed or reset connection: that is an outcome.
"""
import argparse
import json
import os
import random
import resource
import select
import socket
import ssl
import sys
import time
from collections import Counter

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HOST = "127.0.0.1"  # loopback only, always

SOCKET_ERRORS = (OSError, ssl.SSLError, socket.timeout)


# --------------------------------------------------------------------------------------------
# connections


def tls_context(args, alpn=("h2",)):
    context = ssl.create_default_context(cafile=args.ca)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def connect(args, alpn=("h2",), timeout=5.0):
    """A TCP (or, with --tls, TLS with the given ALPN) connection to the listener."""
    raw = socket.create_connection((HOST, args.port), timeout=timeout)
    if not args.tls:
        return raw
    sock = tls_context(args, alpn).wrap_socket(raw, server_hostname=args.sni)
    if alpn and "h2" in alpn and sock.selected_alpn_protocol() != "h2":
        raise RuntimeError(f"ALPN {sock.selected_alpn_protocol()!r}, not h2")
    return sock


def read_until_close(sock, seconds):
    """Reads (and keeps the first 4 KiB of) everything until EOF, an error or `seconds`."""
    started = time.monotonic()
    deadline = started + seconds
    got = b""
    closed = False
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except SOCKET_ERRORS:
            closed = True
            break
        if not data:
            closed = True
            break
        if len(got) < 4096:
            got += data[: 4096 - len(got)]
    return got, closed, round(time.monotonic() - started, 3)


class RawH2:
    """The client side of an HTTP/2 connection, frame by frame: sends whatever it is told
    (valid or not) and tallies every frame the server sends back."""

    def __init__(self, sock, name="conn"):
        self.sock = sock
        self.name = name
        self.buf = b""
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 20)
        self.goaway = None
        self.eof = False
        self.eof_after_s = None
        self.send_error = None
        self.started = time.monotonic()
        self.frames = Counter()
        self.resets = Counter()
        self.statuses = Counter()
        self.data_bytes = 0
        self.streams_with_headers = set()
        self.stream_status = {}
        self.ended_streams = set()
        self.ack_settings = True
        self.sent_frames = 0
        self.sent_bytes = 0

    # -- sending
    def send(self, data, timeout=5.0):
        """Sends; a send the server does not take within `timeout` (it stopped reading) or a
        closed connection ends the sending and is noted, never raised."""
        if self.eof or self.send_error:
            return False
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
            self.sent_bytes += len(data)
            return True
        except socket.timeout:
            self.send_error = f"send blocked for {timeout}s (server stopped reading)"
        except SOCKET_ERRORS as err:
            self.send_error = f"{type(err).__name__}: {err}"
        return False

    def frame(self, frame, timeout=5.0):
        self.sent_frames += 1
        return self.send(frame.serialize(), timeout)

    def preface(self, settings=None):
        return self.send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def request_block(self, path="/", authority="a.test", scheme="https", method="GET", extra=()):
        headers = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)]
        headers.extend(extra)
        return self.encoder.encode(headers)

    def request(self, stream_id, path="/", end_stream=True, **kw):
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        return self.frame(HeadersFrame(stream_id, self.request_block(path, **kw), flags=flags))

    # -- receiving
    def pump(self, timeout=0.0, max_reads=64):
        """Reads what is there (waiting at most `timeout` for the first bytes) and handles
        every whole frame. Bounded: at most `max_reads` reads."""
        if self.eof:
            return
        deadline = time.monotonic() + timeout
        for _ in range(max_reads):
            wait = max(0.0, deadline - time.monotonic())
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
            if not pending:
                try:
                    ready, _, _ = select.select([self.sock], [], [], wait)
                except (OSError, ValueError):
                    self._closed()
                    return
                if not ready:
                    return
            try:
                self.sock.settimeout(1.0)
                data = self.sock.recv(262144)
            except (ssl.SSLWantReadError, BlockingIOError, socket.timeout):
                return
            except SOCKET_ERRORS:
                self._closed()
                return
            if not data:
                self._closed()
                return
            self.buf += data
            self._parse()
            deadline = time.monotonic()  # after the first read, take only what is there

    def pump_until(self, done, seconds):
        """Pumps until `done()` or EOF or `seconds` have passed."""
        deadline = time.monotonic() + seconds
        while not self.eof and not done() and time.monotonic() < deadline:
            self.pump(min(0.05, max(0.0, deadline - time.monotonic())))

    def _closed(self):
        if not self.eof:
            self.eof = True
            self.eof_after_s = round(time.monotonic() - self.started, 3)

    def _parse(self):
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            body, self.buf = self.buf[9 : 9 + length], self.buf[9 + length :]
            frame.parse_body(memoryview(body))
            self.frames[type(frame).__name__] += 1
            self._handle(frame)

    def _handle(self, frame):
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags and self.ack_settings:
            self.send(SettingsFrame(0, flags=["ACK"]).serialize())
        elif isinstance(frame, GoAwayFrame):
            self.goaway = {
                "error_code": frame.error_code,
                "last_stream_id": frame.last_stream_id,
                "debug": frame.additional_data.decode("utf-8", "replace")[:200],
            }
        elif isinstance(frame, RstStreamFrame):
            self.resets[str(frame.error_code)] += 1
            self.ended_streams.add(frame.stream_id)
        elif isinstance(frame, HeadersFrame):
            try:
                headers = dict(self.decoder.decode(frame.data))
            except Exception as err:  # noqa: BLE001 - a bad block is an outcome
                headers = {":status": f"undecodable: {err}"}
            if ":status" in headers:
                self.statuses[str(headers[":status"])] += 1
                self.streams_with_headers.add(frame.stream_id)
                self.stream_status.setdefault(str(frame.stream_id), str(headers[":status"]))
            if "END_STREAM" in frame.flags:
                self.ended_streams.add(frame.stream_id)
        elif isinstance(frame, DataFrame):
            self.data_bytes += len(frame.data)
            if "END_STREAM" in frame.flags:
                self.ended_streams.add(frame.stream_id)

    def summary(self):
        return {
            "goaway": self.goaway,
            "resets": dict(self.resets),
            "statuses": dict(self.statuses),
            "stream_status": dict(list(self.stream_status.items())[:20]),
            "data_bytes": self.data_bytes,
            "frames_received": dict(self.frames),
            "server_closed": self.eof,
            "server_closed_after_s": self.eof_after_s,
            "send_error": self.send_error,
            "sent_frames": self.sent_frames,
            "sent_bytes": self.sent_bytes,
        }

    def close(self):
        try:
            self.sock.close()
        except SOCKET_ERRORS:
            pass


def h2_connection(args, settings=None, name="conn"):
    conn = RawH2(connect(args), name)
    conn.preface(settings)
    conn.pump(0.5)
    return conn


def scheme(args):
    return "https" if args.tls else "http"


# --------------------------------------------------------------------------------------------
# HTTP/2 attacks


def rapid_reset(args):
    """HEADERS then RST_STREAM(CANCEL), over and over (CVE-2023-44487)."""
    conn = h2_connection(args)
    deadline = time.monotonic() + args.seconds
    sent = 0
    stream_id = 1
    batch = b""
    while sent < args.count and time.monotonic() < deadline and not conn.eof and not conn.send_error:
        block = conn.request_block("/", args.authority, scheme(args))
        batch += HeadersFrame(stream_id, block, flags=["END_HEADERS", "END_STREAM"]).serialize()
        batch += RstStreamFrame(stream_id, error_code=8).serialize()
        sent += 1
        stream_id += 2
        if sent % 100 == 0:
            conn.send(batch)
            batch = b""
            conn.pump(0.0)
    if batch:
        conn.send(batch)
    conn.pump_until(lambda: conn.goaway is not None, 2.0)
    out = conn.summary()
    out["streams_opened_and_reset"] = sent
    return out


def continuation_flood(args):
    """One HEADERS without END_HEADERS, then CONTINUATION frames that never end: large ones
    (16 KiB of a header value that never finishes) or empty ones."""
    empty = args.variant == "empty"
    conn = h2_connection(args)
    block = conn.request_block("/", args.authority, scheme(args))
    if not empty:
        # A literal header whose value claims 100 MiB; the CONTINUATIONs carry its bytes.
        name = b"x-flood"
        block += b"\x40" + bytes([len(name)]) + name + hpack_int(100 << 20, 7, 0)
    conn.frame(HeadersFrame(1, block, flags=[]))
    payload = b"" if empty else b"a" * 16384
    frame = ContinuationFrame(1, payload).serialize()
    deadline = time.monotonic() + args.seconds
    sent = 0
    per_batch = 1000 if empty else 16
    while sent < args.count and time.monotonic() < deadline and not conn.eof and not conn.send_error:
        n = min(per_batch, args.count - sent)
        conn.send(frame * n)
        sent += n
        conn.pump(0.0)
    conn.pump_until(lambda: conn.goaway is not None, 2.0)
    out = conn.summary()
    out["continuation_frames_sent"] = sent
    out["continuation_bytes_sent"] = sent * len(payload)
    return out


def hpack_int(value, prefix_bits, first_byte_flags):
    """HPACK integer (RFC 7541 §5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = [first_byte_flags | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def control_flood(args):
    """SETTINGS, PING or WINDOW_UPDATE frames, as fast as the server takes them, reading
    nothing back until the end (so every ACK the server owes piles up on its side)."""
    kind = args.variant
    conn = h2_connection(args)
    conn.ack_settings = True
    if kind == "settings":
        frames = [
            SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535 + (i % 2)}).serialize()
            for i in range(2)
        ]
    elif kind == "ping":
        frames = [PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize() for i in range(2)]
    elif kind == "window_update":
        frames = [WindowUpdateFrame(0, window_increment=1).serialize() for _ in range(2)]
    else:
        raise SystemExit(f"unknown flood {kind}")
    deadline = time.monotonic() + args.seconds
    sent = 0
    batch = (frames * 250)[:500]
    while sent < args.count and time.monotonic() < deadline and not conn.eof and not conn.send_error:
        # A short send timeout: a server that stops reading is pushing back, not failing.
        conn.send(b"".join(batch), timeout=2.0)
        sent += len(batch)
        if args.read_during:
            conn.pump(0.0)
    flood_s = round(time.monotonic() - conn.started, 3)
    conn.pump(0.2)
    # Is the connection still usable afterwards? (It may well have been closed: also fine.)
    stream_id = 1
    if not conn.eof and not conn.send_error:
        conn.request(stream_id, "/", authority=args.authority, scheme=scheme(args))
    conn.pump_until(lambda: stream_id in conn.ended_streams or conn.goaway is not None, 3.0)
    out = conn.summary()
    out["flood_frames_sent"] = sent
    out["flood_seconds"] = flood_s
    out["request_after_flood_answered"] = stream_id in conn.streams_with_headers
    return out


def bad_preface(args):
    """Over h2 (TLS with ALPN h2, or cleartext): garbage where the preface belongs, or part
    of the preface and then silence."""
    sock = connect(args)
    started = time.monotonic()
    if args.variant == "garbage":
        rng = random.Random(7)
        junk = b"GET / HTTP/1.1\r\n" + bytes(rng.randrange(256) for _ in range(4096))
        try:
            sock.sendall(junk)
        except SOCKET_ERRORS:
            pass
    elif args.variant == "partial":
        sock.sendall(PREFACE[:10])
    elif args.variant == "garbage_after_preface":
        sock.sendall(PREFACE + b"\x00\x00\x04\x09\x00\x00\x00\x00\x00garbage-after-the-preface" * 10)
    else:
        raise SystemExit(f"unknown variant {args.variant}")
    got, closed, after = read_until_close(sock, args.seconds)
    sock.close()
    return describe_reply(got) | {
        "server_closed": closed,
        "server_closed_after_s": after if closed else None,
        "elapsed_s": round(time.monotonic() - started, 3),
    }


def describe_reply(got):
    """What the first bytes the server sent were: HTTP/2 frames (with a GOAWAY's code), a TLS
    alert, HTTP/1.1 text, or nothing."""
    out = {"reply_bytes": len(got), "reply_start": got[:60].decode("latin-1")}
    if got.startswith(b"HTTP/"):
        out["http1_status_line"] = got.split(b"\r\n", 1)[0].decode("latin-1")
    elif got[:1] in (b"\x15", b"\x16") and got[1:2] == b"\x03":
        out["tls_record"] = tls_reply(got)
    elif len(got) >= 9:
        frames = []
        buf = got
        while len(buf) >= 9 and len(frames) < 10:
            try:
                frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
                if len(buf) < 9 + length:
                    break
                frame.parse_body(memoryview(buf[9 : 9 + length]))
            except Exception:  # noqa: BLE001 - not frames after all
                break
            entry = {"type": type(frame).__name__}
            if isinstance(frame, GoAwayFrame):
                entry["error_code"] = frame.error_code
                entry["debug"] = frame.additional_data.decode("utf-8", "replace")[:200]
            frames.append(entry)
            buf = buf[9 + length :]
        out["h2_frames"] = frames
        goaways = [f for f in frames if f["type"] == "GoAwayFrame"]
        if goaways:
            out["goaway"] = {"error_code": goaways[0]["error_code"], "debug": goaways[0]["debug"]}
    return out


def oversized_headers(args):
    """A request whose header list is far over the server's limit (SETTINGS_MAX_HEADER_LIST_SIZE),
    split over HEADERS + CONTINUATION; then an ordinary request on the same connection."""
    conn = h2_connection(args)
    extra = [(f"x-big-{i}", "v" * 4000) for i in range(args.count)]
    block = conn.request_block("/", args.authority, scheme(args), extra=extra)
    chunks = [block[i : i + 16000] for i in range(0, len(block), 16000)]
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        flags = (["END_HEADERS"] if last else []) + (["END_STREAM"] if i == 0 else [])
        cls = HeadersFrame if i == 0 else ContinuationFrame
        if i == 0:
            conn.frame(HeadersFrame(1, chunk, flags=flags))
        else:
            conn.frame(cls(1, chunk, flags=["END_HEADERS"] if last else []))
    conn.pump_until(lambda: 1 in conn.ended_streams or conn.goaway is not None, 3.0)
    if not conn.eof and conn.goaway is None:
        conn.request(3, "/", authority=args.authority, scheme=scheme(args))
        conn.pump_until(lambda: 3 in conn.ended_streams or conn.goaway is not None, 3.0)
    out = conn.summary()
    out["header_list_bytes"] = sum(len(k) + len(v) + 32 for k, v in extra)
    out["oversized_stream_answered"] = 1 in conn.streams_with_headers
    out["next_request_answered"] = 3 in conn.streams_with_headers
    return out


def hpack_bomb(args):
    """A ~4 KB header inserted into the HPACK dynamic table once, then referenced by index
    (one byte each) thousands of times per request: tiny on the wire, gigabytes decoded."""
    conn = h2_connection(args)
    name, value = b"x-bomb", b"B" * 4000
    base = conn.request_block("/", args.authority, scheme(args))
    # Stream 1 inserts the entry (literal with incremental indexing) and is an ordinary,
    # small request.
    insert = b"\x40" + hpack_int(len(name), 7, 0) + name + hpack_int(len(value), 7, 0) + value
    conn.frame(HeadersFrame(1, base + insert, flags=["END_HEADERS", "END_STREAM"]))
    conn.pump_until(lambda: 1 in conn.ended_streams or conn.eof, 2.0)
    # The entry is now index 62 (the first dynamic one), unless the server... it cannot
    # change our encoder table. Each later request: the pseudo-headers (indexed or literal
    # without indexing, so the table is untouched) and 16,000 references to it.
    pseudo = (
        b"\x82"  # :method GET
        + (b"\x87" if args.tls else b"\x86")  # :scheme
        + b"\x84"  # :path /
        + b"\x01" + hpack_int(len(args.authority), 7, 0) + args.authority.encode()  # :authority
    )
    refs = b"\xbe" * (16000 - len(pseudo))
    deadline = time.monotonic() + args.seconds
    stream_id = 3
    sent = 0
    while sent < args.count and time.monotonic() < deadline and not conn.eof and not conn.send_error:
        conn.frame(HeadersFrame(stream_id, pseudo + refs, flags=["END_HEADERS", "END_STREAM"]))
        sent += 1
        stream_id += 2
        conn.pump(0.0)
    conn.pump_until(lambda: conn.goaway is not None or len(conn.ended_streams) > sent, 3.0)
    out = conn.summary()
    out["bomb_requests"] = sent
    out["decoded_bytes_per_request"] = len(refs) * (len(name) + len(value))
    out["first_request_answered"] = 1 in conn.streams_with_headers
    return out


def zero_window(args):
    """--conns connections, each with SETTINGS_INITIAL_WINDOW_SIZE = 0 and --count streams
    asking for --path; the window is never opened. Holds them --hold seconds (reading and
    discarding what comes: HEADERS, RST_STREAM), then closes them all."""
    conns = []
    deadline = time.monotonic() + args.seconds
    for c in range(args.conns):
        if time.monotonic() > deadline:
            break
        conn = h2_connection(args, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}, name=f"c{c}")
        batch = b""
        for i in range(args.count):
            block = conn.request_block(args.path, args.authority, scheme(args))
            batch += HeadersFrame(1 + 2 * i, block, flags=["END_HEADERS", "END_STREAM"]).serialize()
        conn.send(batch)
        conns.append(conn)
    print(json.dumps({"holding": len(conns)}), file=sys.stderr, flush=True)
    hold_until = time.monotonic() + args.hold
    while time.monotonic() < hold_until:
        for conn in conns:
            conn.pump(0.0)
        time.sleep(0.05)
    for conn in conns:
        conn.pump(0.0)
        conn.close()
    return {
        "connections": len(conns),
        "streams": sum(args.count for _ in conns),
        "headers_received": sum(len(c.streams_with_headers) for c in conns),
        "data_bytes": sum(c.data_bytes for c in conns),
        "resets": dict(sum((c.resets for c in conns), Counter())),
        "goaways": [c.goaway for c in conns if c.goaway],
        "server_closed": sum(1 for c in conns if c.eof),
    }


def never_read(args):
    """Asks for --path on --count streams with every window wide open, then never reads the
    socket for --hold seconds; HTTP/1.1 variant: --count pipelined requests, never read."""
    started = time.monotonic()
    if args.variant == "http1":
        sock = connect(args, alpn=("http/1.1",))
        request = f"GET {args.path} HTTP/1.1\r\nHost: {args.authority}\r\n\r\n".encode()
        sent_error = None
        try:
            sock.settimeout(3.0)
            sock.sendall(request * args.count)
        except SOCKET_ERRORS as err:
            sent_error = f"{type(err).__name__}: {err}"
        time.sleep(args.hold)
        sock.close()
        return {"pipelined_requests": args.count, "send_error": sent_error, "held_s": args.hold}
    conn = h2_connection(args, settings={SettingsFrame.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
    conn.frame(WindowUpdateFrame(0, window_increment=(1 << 31) - 1 - 65535))
    batch = b""
    for i in range(args.count):
        block = conn.request_block(args.path, args.authority, scheme(args))
        batch += HeadersFrame(1 + 2 * i, block, flags=["END_HEADERS", "END_STREAM"]).serialize()
    conn.send(batch)
    time.sleep(args.hold)  # never read
    # Then read for a moment: what the server managed to queue for us.
    conn.pump_until(lambda: False, 0.3)
    out = conn.summary()
    conn.close()
    out["streams"] = args.count
    out["held_s"] = round(time.monotonic() - started, 3)
    return out


def drops(args):
    """Connections dropped at awkward moments: after HEADERS without END_STREAM, in the
    middle of a request body, in the middle of a response body (HTTP/2 and HTTP/1.1)."""
    out = {}
    # 1. HTTP/2 HEADERS without END_STREAM, then close.
    conn = h2_connection(args)
    conn.request(1, "/upload", end_stream=False, authority=args.authority, scheme=scheme(args), method="POST")
    conn.pump(0.1)
    conn.close()
    out["h2_after_headers"] = "dropped"
    # 2. HTTP/2 mid-body: content-length 100000, 1000 bytes sent.
    conn = h2_connection(args)
    conn.request(
        1, "/upload", end_stream=False, authority=args.authority, scheme=scheme(args), method="POST",
        extra=[("content-length", "100000")],
    )
    conn.frame(DataFrame(1, b"x" * 1000))
    conn.pump(0.1)
    conn.close()
    out["h2_mid_body"] = "dropped"
    # 3. HTTP/2 mid-response: ask for the big body on 5 streams, close after the first DATA.
    conn = h2_connection(args)
    for i in range(5):
        conn.request(1 + 2 * i, args.path, authority=args.authority, scheme=scheme(args))
    conn.pump_until(lambda: conn.data_bytes > 0, 3.0)
    out["h2_mid_response_data_seen"] = conn.data_bytes
    conn.close()
    # 4. HTTP/1.1 mid-request (headers, no end), mid-body, mid-response.
    for what in ("headers", "body", "response"):
        sock = connect(args, alpn=("http/1.1",))
        try:
            if what == "headers":
                sock.sendall(f"POST /upload HTTP/1.1\r\nHost: {args.authority}\r\n".encode())
            elif what == "body":
                sock.sendall(
                    f"POST /upload HTTP/1.1\r\nHost: {args.authority}\r\nContent-Length: 100000\r\n\r\n".encode()
                    + b"y" * 1000
                )
            else:
                sock.sendall(f"GET {args.path} HTTP/1.1\r\nHost: {args.authority}\r\n\r\n".encode())
                sock.settimeout(3)
                out["http1_mid_response_first_bytes"] = len(sock.recv(1000))
        except SOCKET_ERRORS as err:
            out[f"http1_{what}_error"] = str(err)
        time.sleep(0.05)
        sock.close()
    return out


# --------------------------------------------------------------------------------------------
# TLS-level attacks


def u8(n):
    return n.to_bytes(1, "big")


def u16(n):
    return n.to_bytes(2, "big")


def u24(n):
    return n.to_bytes(3, "big")


def client_hello(sni, alpn):
    """A TLS 1.3 (and 1.2) ClientHello built by hand, so that the SNI can be anything at all
    (`sni` bytes, or None for no extension)."""
    ext = b""
    if sni is not None:
        entry = b"\x00" + u16(len(sni)) + sni
        names = u16(len(entry)) + entry
        ext += u16(0) + u16(len(names)) + names
    groups = u16(4) + b"\x00\x1d\x00\x17"
    ext += u16(10) + u16(len(groups)) + groups
    ext += u16(11) + u16(2) + b"\x01\x00"
    sigs = b"".join(u16(s) for s in (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0807))
    sigs = u16(len(sigs)) + sigs
    ext += u16(13) + u16(len(sigs)) + sigs
    if alpn:
        protocols = b"".join(u8(len(p)) + p for p in alpn)
        protocols = u16(len(protocols)) + protocols
        ext += u16(16) + u16(len(protocols)) + protocols
    versions = b"\x04\x03\x04\x03\x03"
    ext += u16(43) + u16(len(versions)) + versions
    ext += u16(45) + u16(2) + b"\x01\x01"
    share = b"\x00\x1d" + u16(32) + os.urandom(32)
    shares = u16(len(share)) + share
    ext += u16(51) + u16(len(shares)) + shares
    suites = b"".join(u16(c) for c in (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8))
    body = b"\x03\x03" + os.urandom(32) + u8(32) + os.urandom(32) + u16(len(suites)) + suites + b"\x01\x00"
    body += u16(len(ext)) + ext
    handshake = b"\x01" + u24(len(body)) + body
    records = b""
    for i in range(0, len(handshake), 16384):
        chunk = handshake[i : i + 16384]
        records += b"\x16\x03\x01" + u16(len(chunk)) + chunk
    return records


ALERTS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 47: "illegal_parameter", 49: "access_denied",
    50: "decode_error", 51: "decrypt_error", 70: "protocol_version", 80: "internal_error",
    86: "inappropriate_fallback", 109: "missing_extension", 110: "unsupported_extension",
    112: "unrecognized_name", 116: "certificate_required", 120: "no_application_protocol",
}


def tls_reply(got):
    if len(got) < 5:
        return "eof" if not got else f"short: {got.hex()}"
    if got[0] == 0x16 and len(got) >= 6 and got[5] == 0x02:
        return "server_hello"
    if got[0] == 0x15 and len(got) >= 7:
        return "alert:" + ALERTS.get(got[6], str(got[6]))
    return f"other: {got[:8].hex()}"


def hello_exchange(args, sni, alpn=(b"h2", b"http/1.1")):
    sock = socket.create_connection((HOST, args.port), timeout=5)
    try:
        sock.sendall(client_hello(sni, alpn))
        got, closed, _ = read_until_close(sock, 0.5)
    except SOCKET_ERRORS as err:
        return f"error: {err}"
    finally:
        sock.close()
    return tls_reply(got)


def http1_over_tls(args, server_hostname, alpn):
    """A full handshake (certificate not verified: only the server's conduct is under test)
    and one HTTP/1.1 request; returns the status line or what went wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    try:
        raw = socket.create_connection((HOST, args.port), timeout=5)
        sock = context.wrap_socket(raw, server_hostname=server_hostname)
    except SOCKET_ERRORS as err:
        return {"handshake": f"failed: {err}"}
    out = {"handshake": "ok", "alpn": sock.selected_alpn_protocol()}
    try:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {args.authority}\r\nConnection: close\r\n\r\n".encode())
        got, closed, _ = read_until_close(sock, 3.0)
        out["status_line"] = got.split(b"\r\n", 1)[0].decode("latin-1") if got else None
        out["server_closed"] = closed
    except SOCKET_ERRORS as err:
        out["error"] = str(err)
    sock.close()
    return out


def odd_sni(args):
    variants = {
        "ip_literal": b"127.0.0.1",
        "trailing_dot": b"a.test.",
        "uppercase": b"A.TEST",
        "non_ascii": b"a\xff\xfe\x00.test",
        "too_long_label": b"a" * 64 + b".test",
        "over_long_300": b".".join([b"a" * 63] * 4) + b".abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmno",
        "huge_8k": b"b" * 8000,
        "empty": b"",
    }
    out = {name: {"hello": hello_exchange(args, sni)} for name, sni in variants.items()}
    # The ones a real client could send: complete the handshake and ask for /.
    for name in ("trailing_dot", "uppercase"):
        out[name]["full"] = http1_over_tls(args, variants[name].decode(), ["http/1.1"])
    return out


def alpn(args):
    out = {}
    out["none"] = http1_over_tls(args, args.sni, None)
    out["unknown"] = {"hello": hello_exchange(args, args.sni.encode(), (b"foo/9", b"spdy/1"))}
    out["unknown"]["full"] = http1_over_tls(args, args.sni, ["foo/9"])
    out["empty_string_protocol"] = {"hello": hello_exchange(args, args.sni.encode(), (b"",))}
    return out


def tls_garbage(args):
    """Plain HTTP/1.1, or random bytes, sent to a TLS listener."""
    sock = socket.create_connection((HOST, args.port), timeout=5)
    if args.variant == "plaintext":
        payload = f"GET / HTTP/1.1\r\nHost: {args.authority}\r\n\r\n".encode()
    elif args.variant == "h2_preface":
        payload = PREFACE + SettingsFrame(0).serialize()
    else:
        rng = random.Random(11)
        payload = bytes(rng.randrange(256) for _ in range(8192))
    try:
        sock.sendall(payload)
    except SOCKET_ERRORS:
        pass
    got, closed, after = read_until_close(sock, args.seconds)
    sock.close()
    return {"reply": tls_reply(got), "reply_start": got[:40].decode("latin-1"), "server_closed": closed,
            "server_closed_after_s": after if closed else None}


def tls_slowloris(args):
    """A ClientHello one byte at a time, --interval apart, until the server gives up, the
    hello is out, or --seconds pass."""
    hello = client_hello(args.sni.encode(), (b"h2",))
    sock = socket.create_connection((HOST, args.port), timeout=5)
    started = time.monotonic()
    deadline = started + args.seconds
    sent = 0
    closed_at = None
    while sent < len(hello) and time.monotonic() < deadline:
        try:
            sock.sendall(hello[sent : sent + 1])
            sent += 1
        except SOCKET_ERRORS:
            closed_at = time.monotonic()
            break
        ready, _, _ = select.select([sock], [], [], args.interval)
        if ready:
            try:
                data = sock.recv(4096)
            except SOCKET_ERRORS:
                data = b""
            if not data:
                closed_at = time.monotonic()
                break
    got = b""
    if closed_at is None:
        got, closed, _ = read_until_close(sock, max(0.1, deadline - time.monotonic()))
        if closed:
            closed_at = time.monotonic()
    sock.close()
    return {
        "hello_bytes": len(hello),
        "bytes_sent": sent,
        "server_closed": closed_at is not None,
        "server_closed_after_s": round(closed_at - started, 3) if closed_at else None,
        "reply": tls_reply(got) if got else None,
    }


def conn_flood(args):
    """--count connections: most bare TCP (half of them with one byte of a ClientHello), the
    rest full TLS handshakes with ALPN h2 and the HTTP/2 preface; held --hold seconds, then
    all closed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        soft = min(want, hard)
    count = min(args.count, soft - 64)
    tls_count = min(args.tls_count, count)
    socks = []
    failures = Counter()
    started = time.monotonic()
    deadline = started + args.seconds
    context = tls_context(args)
    hello_byte = client_hello(args.sni.encode(), (b"h2",))[:1]
    for i in range(count):
        if time.monotonic() > deadline:
            failures["deadline"] += 1
            break
        try:
            raw = socket.create_connection((HOST, args.port), timeout=5)
            if i < tls_count:
                sock = context.wrap_socket(raw, server_hostname=args.sni)
                sock.sendall(PREFACE + SettingsFrame(0).serialize())
                socks.append(sock)
            else:
                if i % 2:
                    raw.sendall(hello_byte)
                socks.append(raw)
        except SOCKET_ERRORS as err:
            failures[type(err).__name__] += 1
    opened_s = round(time.monotonic() - started, 3)
    time.sleep(args.hold)
    # How many did the server already drop while they were held?
    dropped = 0
    for sock in socks:
        try:
            sock.setblocking(False)
            if isinstance(sock, ssl.SSLSocket):
                sock.recv(1)  # SETTINGS from the server: fine; EOF: dropped
            else:
                if sock.recv(1) == b"":
                    dropped += 1
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        except SOCKET_ERRORS:
            dropped += 1
    for sock in socks:
        try:
            sock.close()
        except SOCKET_ERRORS:
            pass
    return {
        "nofile_soft": soft,
        "nofile_hard": hard,
        "asked": args.count,
        "opened": len(socks),
        "tls_h2": tls_count,
        "open_seconds": opened_s,
        "failures": dict(failures),
        "dropped_by_server_while_held": dropped,
    }


# --------------------------------------------------------------------------------------------
# HTTP/1.1 and h2c abuse (cleartext or TLS with ALPN http/1.1)


def http1_exchange(args, payload, seconds=3.0, then=None):
    sock = connect(args, alpn=("http/1.1",))
    try:
        sock.sendall(payload)
        if then:
            then(sock)
    except SOCKET_ERRORS as err:
        sock.close()
        return {"send_error": str(err)}
    got, closed, after = read_until_close(sock, seconds)
    sock.close()
    return describe_reply(got) | {"server_closed": closed}


def http1_abuse(args):
    a = args.authority
    endless = {}

    def endless_chunks(sock):
        deadline = time.monotonic() + min(args.seconds, 5.0)
        chunk = b"4000\r\n" + b"c" * 0x4000 + b"\r\n"
        sent = 0
        sock.settimeout(2.0)
        while sent < 512 and time.monotonic() < deadline:  # at most 8 MiB
            try:
                sock.sendall(chunk)
            except SOCKET_ERRORS:
                break
            sent += 1
        endless["chunks_sent"] = sent

    cases = {
        "missing_host": lambda: http1_exchange(args, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
        "doubled_host_same": lambda: http1_exchange(
            args, f"GET / HTTP/1.1\r\nHost: {a}\r\nHost: {a}\r\nConnection: close\r\n\r\n".encode()),
        "doubled_host_different": lambda: http1_exchange(
            args, f"GET / HTTP/1.1\r\nHost: {a}\r\nHost: evil.test\r\nConnection: close\r\n\r\n".encode()),
        "huge_request_line": lambda: http1_exchange(
            args, b"GET /" + b"a" * 300_000 + f" HTTP/1.1\r\nHost: {a}\r\n\r\n".encode()),
        "huge_header": lambda: http1_exchange(
            args, f"GET / HTTP/1.1\r\nHost: {a}\r\nX-Big: ".encode() + b"h" * 300_000 + b"\r\n\r\n"),
        "endless_chunked": lambda: http1_exchange(
            args, f"POST /upload HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: chunked\r\n\r\n".encode(),
            then=endless_chunks) | endless,
        "bad_chunk_size": lambda: http1_exchange(
            args, f"POST /upload HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\n".encode()),
        "cl_and_te": lambda: http1_exchange(args, (
            f"POST /upload HTTP/1.1\r\nHost: {a}\r\nContent-Length: 5\r\n"
            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode()),
        "http10_no_host": lambda: http1_exchange(args, b"GET / HTTP/1.0\r\n\r\n"),
        "request_line_garbage": lambda: http1_exchange(args, b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"),
    }
    wanted = [c for c in args.variant.split(",") if c] or list(cases)
    return {case: cases[case]() for case in wanted}


def h2c_abuse(args):
    a = args.authority
    settings_b64 = "AAMAAABkAARAAAAAAAIAAAAA"
    out = {}
    out["upgrade"] = http1_exchange(args, (
        f"GET / HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        f"Upgrade: h2c\r\nHTTP2-Settings: {settings_b64}\r\n\r\n").encode(), seconds=0.5)
    out["upgrade_bad_settings"] = http1_exchange(args, (
        f"GET / HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        f"Upgrade: h2c\r\nHTTP2-Settings: !!!not-base64!!!\r\n\r\n").encode(), seconds=0.5)
    out["upgrade_no_settings"] = http1_exchange(args, (
        f"GET / HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n").encode(), seconds=0.5)
    out["upgrade_then_preface"] = http1_exchange(args, (
        f"GET / HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        f"Upgrade: h2c\r\nHTTP2-Settings: {settings_b64}\r\n\r\n").encode() + PREFACE
        + SettingsFrame(0).serialize(), seconds=0.5)
    out["upgrade_post_body"] = http1_exchange(args, (
        f"POST /upload HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        f"Upgrade: h2c\r\nHTTP2-Settings: {settings_b64}\r\nContent-Length: 5\r\n\r\nhello").encode(),
        seconds=0.5)
    out["preface_then_garbage"] = http1_exchange(
        args, PREFACE + b"this is not a SETTINGS frame at all\r\n\r\n" * 4, seconds=3.0)
    out["preface_then_http1"] = http1_exchange(
        args, PREFACE + SettingsFrame(0).serialize() + f"GET / HTTP/1.1\r\nHost: {a}\r\n\r\n".encode(),
        seconds=3.0)
    out["preface_twice"] = http1_exchange(
        args, PREFACE + SettingsFrame(0).serialize() + PREFACE, seconds=3.0)
    return out


# --------------------------------------------------------------------------------------------
# SIGTERM with silent clients


def silent_clients(args):
    """One idle HTTP/2 connection (a request answered, then nothing), one TLS connection that
    completed the handshake (ALPN h2) but never sent the preface, one bare TCP connection;
    prints "ready" on stdout once all three are open, then holds them until stdin closes or
    --hold seconds pass."""
    idle = h2_connection(args)
    idle.request(1, "/", authority=args.authority, scheme="https")
    idle.pump_until(lambda: 1 in idle.ended_streams, 3.0)
    no_preface = connect(args)
    bare = socket.create_connection((HOST, args.port), timeout=5)
    print(json.dumps({"ready": True, "idle_answered": 1 in idle.streams_with_headers}), flush=True)
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], 0.1)
        if ready and not sys.stdin.readline():
            break
        idle.pump(0.0)
    for sock in (no_preface, bare):
        sock.close()
    idle.close()
    return {"idle_goaway": idle.goaway, "idle_server_closed": idle.eof}


ATTACKS = {
    "rapid-reset": rapid_reset,
    "continuation-flood": continuation_flood,
    "control-flood": control_flood,
    "bad-preface": bad_preface,
    "oversized-headers": oversized_headers,
    "hpack-bomb": hpack_bomb,
    "zero-window": zero_window,
    "never-read": never_read,
    "drops": drops,
    "odd-sni": odd_sni,
    "alpn": alpn,
    "tls-garbage": tls_garbage,
    "tls-slowloris": tls_slowloris,
    "conn-flood": conn_flood,
    "http1-abuse": http1_abuse,
    "h2c-abuse": h2c_abuse,
    "silent-clients": silent_clients,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("attack", choices=sorted(ATTACKS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--sni", default="a.test")
    parser.add_argument("--ca")
    parser.add_argument("--authority", default="a.test")
    parser.add_argument("--variant", default="")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--tls-count", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--hold", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--path", default="/big")
    parser.add_argument("--read-during", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    result = ATTACKS[args.attack](args)
    result["attack"] = args.attack
    result["variant"] = args.variant
    result["attack_seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
