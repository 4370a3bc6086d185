"""Shared HTTP/2 client pieces for the conformance and flood suites (scripts/h2-conformance.sh).

Two clients:
- `Conn`: a raw HTTP/2 connection over a plain socket. Frames are built byte by byte (so a test
  can send anything, malformed or not), the server's frames are parsed with hyperframe and its
  field blocks decoded with hpack. Every read has a deadline.
- `NormalClient`: a well-behaved client on the `h2` library's state machine, used for ordinary
  requests (large bodies under flow control) and as the "normal client" during floods.

Written from RFC 9113 (HTTP/2) and RFC 7541 (HPACK); nothing here is taken from h2spec.
"""

import json
import os
import random
import select
import socket
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe.frame import Frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
TYPE_NAMES = {
    DATA: "DATA", HEADERS: "HEADERS", PRIORITY: "PRIORITY", RST_STREAM: "RST_STREAM",
    SETTINGS: "SETTINGS", PUSH_PROMISE: "PUSH_PROMISE", PING: "PING", GOAWAY: "GOAWAY",
    WINDOW_UPDATE: "WINDOW_UPDATE", CONTINUATION: "CONTINUATION",
}
# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# SETTINGS identifiers (RFC 9113 §6.5.2).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)
SETTING_NAMES = {
    1: "HEADER_TABLE_SIZE", 2: "ENABLE_PUSH", 3: "MAX_CONCURRENT_STREAMS",
    4: "INITIAL_WINDOW_SIZE", 5: "MAX_FRAME_SIZE", 6: "MAX_HEADER_LIST_SIZE",
    8: "ENABLE_CONNECT_PROTOCOL", 9: "NO_RFC7540_PRIORITIES",
}

# Error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM, \
    INADEQUATE_SECURITY, HTTP_1_1_REQUIRED = range(14)
ERROR_NAMES = {
    0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
    4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
    8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
    12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED",
}


def err_name(code):
    return ERROR_NAMES.get(code, "0x%x" % code)


# ---- frames, byte by byte -------------------------------------------------------------------

def frame(ftype, flags, sid, payload=b"", length=None):
    """One frame. `length` overrides the length field (to lie about it)."""
    n = len(payload) if length is None else length
    return struct.pack(">BHBBI", (n >> 16) & 0xFF, n & 0xFFFF, ftype, flags, sid) + bytes(payload)


def settings(pairs=(), ack=False, sid=0):
    return frame(SETTINGS, ACK if ack else 0, sid, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def ping(data=b"\0" * 8, ack=False, sid=0, flags=None):
    return frame(PING, (ACK if ack else 0) if flags is None else flags, sid, data)


def window_update(sid, increment, reserved=False):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", (increment & 0x7FFFFFFF) | (0x80000000 if reserved else 0)))


def rst_stream(sid, code):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def goaway(last_sid, code, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_sid, code) + debug)


def priority(sid, dep=0, weight=16, exclusive=False):
    return frame(PRIORITY, 0, sid, struct.pack(">IB", dep | (0x80000000 if exclusive else 0), weight - 1))


def data(sid, payload=b"", end_stream=False, pad=None):
    flags = END_STREAM if end_stream else 0
    if pad is not None:
        flags |= PADDED
        payload = bytes([pad]) + payload + b"\0" * pad
    return frame(DATA, flags, sid, payload)


def headers(sid, block, end_stream=True, end_headers=True, pad=None, prio=None, flags=0):
    """HEADERS. `prio` = (dependency, weight, exclusive) sets the PRIORITY flag."""
    flags |= (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    payload = b""
    if prio is not None:
        flags |= PRIORITY_FLAG
        dep, weight, excl = prio
        payload += struct.pack(">IB", dep | (0x80000000 if excl else 0), weight - 1)
    payload += block
    if pad is not None:
        flags |= PADDED
        payload = bytes([pad]) + payload + b"\0" * pad
    return frame(HEADERS, flags, sid, payload)


def continuation(sid, block, end_headers=True):
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, sid, block)


def describe_outgoing(raw):
    """Short description of the frames in bytes we sent (for failure reports)."""
    out, i = [], 0
    if raw.startswith(PREFACE):
        out.append("preface")
        i = len(PREFACE)
    while i + 9 <= len(raw):
        n = int.from_bytes(raw[i:i + 3], "big")
        t, fl, sid = raw[i + 3], raw[i + 4], int.from_bytes(raw[i + 5:i + 9], "big")
        payload = raw[i + 9:i + 9 + n]
        out.append(_describe_raw(t, fl, sid, payload, n))
        i += 9 + n
    if i < len(raw):
        out.append("%d raw bytes" % (len(raw) - i))
    return out


def _describe_raw(t, fl, sid, payload, n):
    name = TYPE_NAMES.get(t, "type0x%x" % t)
    bits = ["s=%d" % (sid & 0x7FFFFFFF) + ("+R" if sid & 0x80000000 else "")]
    if t in (DATA, HEADERS) and fl & END_STREAM:
        bits.append("ES")
    if t in (HEADERS, CONTINUATION, PUSH_PROMISE) and fl & END_HEADERS:
        bits.append("EH")
    if t in (SETTINGS, PING) and fl & ACK:
        bits.append("ACK")
    if t in (DATA, HEADERS) and fl & PADDED:
        bits.append("PADDED")
    if t == HEADERS and fl & PRIORITY_FLAG:
        bits.append("PRIO")
    other = fl & ~{DATA: 0x9, HEADERS: 0x2D, SETTINGS: 1, PING: 1, CONTINUATION: 4, PUSH_PROMISE: 0xC}.get(t, 0)
    if other:
        bits.append("flags=0x%x" % other)
    if t == SETTINGS and len(payload) % 6 == 0 and not fl & ACK:
        for j in range(0, len(payload), 6):
            k, v = struct.unpack(">HI", payload[j:j + 6])
            bits.append("%s=%d" % (SETTING_NAMES.get(k, "0x%x" % k), v))
    elif t == WINDOW_UPDATE and len(payload) == 4:
        bits.append("+%d" % (int.from_bytes(payload, "big") & 0x7FFFFFFF))
    elif t in (RST_STREAM,) and len(payload) == 4:
        bits.append(err_name(int.from_bytes(payload, "big")))
    elif t == GOAWAY and len(payload) >= 8:
        bits.append("last=%d %s" % (int.from_bytes(payload[:4], "big") & 0x7FFFFFFF, err_name(int.from_bytes(payload[4:8], "big"))))
    if t not in (SETTINGS, WINDOW_UPDATE, RST_STREAM) or n != len(payload) or n not in (0, 4):
        bits.append("%dB" % n)
    return "%s(%s)" % (name, ", ".join(bits))


# ---- HPACK, representation by representation (RFC 7541) --------------------------------------

_HUFF = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def huffman(b):
    return _HUFF.encode(b)


def hp_int(value, prefix_bits, first=0):
    """RFC 7541 §5.1 integer, `first` holding the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hp_str(b, huff=False, raw=None):
    """RFC 7541 §5.2 string literal. `raw` gives the (Huffman) octets verbatim."""
    if isinstance(b, str):
        b = b.encode("latin-1")
    if raw is not None:
        return hp_int(len(raw), 7, 0x80 if huff else 0) + raw
    if huff:
        enc = huffman(b)
        return hp_int(len(enc), 7, 0x80) + enc
    return hp_int(len(b), 7) + b


def hp_indexed(index):
    return hp_int(index, 7, 0x80)


def hp_literal(name, value, mode="without", name_index=None, huff=False):
    """A literal field: mode "incremental" (§6.2.1), "without" (§6.2.2) or "never" (§6.2.3);
    the name by static/dynamic index or as a new name."""
    prefix, first = {"incremental": (6, 0x40), "without": (4, 0x00), "never": (4, 0x10)}[mode]
    if name_index is not None:
        out = hp_int(name_index, prefix, first)
    else:
        out = bytes([first]) + hp_str(name, huff)
    return out + hp_str(value, huff)


def hp_size_update(size):
    return hp_int(size, 5, 0x20)


def block(fields, mode="without", huff=False):
    """A field block of literals without indexing (new names), so that the server's dynamic
    table never changes: any bytes in names and values, in the order given."""
    return b"".join(hp_literal(n, v, mode=mode, huff=huff) for n, v in fields)


class Target:
    """Where the suite points: the server under test and the test upstream behind it."""

    def __init__(self, host, port, upstream_port=None, name="ringway", pid=None, timeout=3.0):
        self.host, self.port, self.upstream_port, self.name, self.pid = host, port, upstream_port, name, pid
        self.timeout = timeout
        self.authority = "%s:%d" % (host, port)

    def request_fields(self, method="GET", path="/", scheme="http", authority=None, extra=()):
        f = [(":method", method), (":scheme", scheme), (":path", path),
             (":authority", self.authority if authority is None else authority)]
        return f + list(extra)

    def req(self, method="GET", path="/", extra=(), **kw):
        return block(self.request_fields(method, path, extra=extra, **kw))

    def upstream_seen(self, tag):
        """How many requests tagged `case=tag` the test upstream has seen: (heads, complete)."""
        d = self.upstream_record(tag)
        return None if d is None else (d["heads"], d["complete"])

    def upstream_record(self, tag):
        """What the test upstream has seen of requests tagged `case=tag`: {"heads", "complete",
        "trailers" (the trailer lines of their chunked bodies)}, or None."""
        if not self.upstream_port:
            return None
        try:
            with socket.create_connection((self.host, self.upstream_port), timeout=2) as s:
                s.sendall(("GET /__seen?tag=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % tag).encode())
                raw = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    raw += chunk
            body = raw.split(b"\r\n\r\n", 1)[1]
            d = json.loads(body)
            d.setdefault("trailers", [])
            return d if "heads" in d and "complete" in d else None
        except (OSError, ValueError, IndexError, KeyError):
            return None


# ---- the raw connection ---------------------------------------------------------------------

CLOSED = "closed"
TIMEOUT = "timeout"

# Every Conn made since the last clear_conns(): a failing case prints what each one sent.
CONNS = []


def clear_conns():
    del CONNS[:]


class Stream:
    """What the server sent on one stream, accumulated as frames are read."""

    def __init__(self, sid):
        self.sid = sid
        self.status, self.headers, self.trailers = None, {}, []
        self.body = bytearray()
        self.data_frames = []
        self.ended = False
        self.reset = None
        self.error = None
        self.t_head = None          # time.monotonic() when the response head was read
        self.t_end = None           # ... when the stream ended or was reset

    def done(self):
        return self.ended or self.reset is not None

    @property
    def data_total(self):
        return sum(self.data_frames)


class Conn:
    """A raw HTTP/2 client connection. Reads return a hyperframe Frame, CLOSED or TIMEOUT."""

    def __init__(self, target, timeout=None):
        self.t = target
        self.timeout = target.timeout if timeout is None else timeout
        self.sock = socket.create_connection((target.host, target.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rbuf = bytearray()
        self.dec = hpack.Decoder()
        self.server_settings = {}
        self.closed = None          # None, "eof" or "reset"
        self.seen = []              # descriptions of what the server sent
        self.sent = []              # descriptions of what we sent
        self.partial = {}           # stream id -> header block being assembled
        self.auto_ack = True        # ACK the server's SETTINGS and PINGs
        self.auto_window = True     # give back the window of DATA received
        self.send_error = None
        self.hpack_error = None
        self.streams = {}
        self._es_pending = set()
        self.goaway = None          # the last GOAWAY frame the server sent
        CONNS.append(self)

    def stream(self, sid):
        if sid not in self.streams:
            self.streams[sid] = Stream(sid)
        return self.streams[sid]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sending --
    def send(self, *chunks, describe=True):
        raw = b"".join(chunks)
        if describe:
            self.sent.extend(describe_outgoing(raw))
        try:
            self.sock.sendall(raw)
            return True
        except OSError as e:
            self.send_error = e.__class__.__name__
            return False

    def handshake(self, pairs=(), wait_ack=True):
        """Preface and SETTINGS; waits for the server's SETTINGS (ACKed) and the ACK of ours."""
        self.send(PREFACE, settings(pairs), describe=False)
        got_settings, got_ack = False, not wait_ack
        deadline = time.monotonic() + self.timeout
        while not (got_settings and got_ack):
            f = self.read(deadline - time.monotonic())
            if f in (CLOSED, TIMEOUT):
                raise HandshakeError("handshake: %s before the server's SETTINGS%s (seen: %s)" % (
                    f, "" if got_settings else "", "; ".join(self.seen) or "nothing"))
            if f.type == SETTINGS:
                if "ACK" in f.flags:
                    got_ack = True
                else:
                    got_settings = True
            elif f.type == GOAWAY:
                raise HandshakeError("handshake: GOAWAY(%s)" % err_name(f.error_code))
        self.seen = []
        return self

    # -- reading --
    def read(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            if len(self.rbuf) >= 9:
                n = int.from_bytes(self.rbuf[:3], "big")
                if len(self.rbuf) >= 9 + n:
                    raw = bytes(self.rbuf[:9 + n])
                    del self.rbuf[:9 + n]
                    return self._got(raw)
            if self.closed:
                return CLOSED
            left = deadline - time.monotonic()
            if left <= 0:
                return TIMEOUT
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                return TIMEOUT
            except OSError:
                self.closed = "reset"
                self.seen.append("connection reset")
                continue
            if not chunk:
                self.closed = "eof"
                self.seen.append("connection closed")
                continue
            self.rbuf += chunk

    def _got(self, raw):
        try:
            f, n = Frame.parse_frame_header(memoryview(raw[:9]), strict=False)
            f.parse_body(memoryview(raw[9:]))
        except Exception as e:  # a frame the server should never have sent
            g = _Bad(raw, e)
            self.seen.append("INVALID FRAME from server (%s: %s)" % (e.__class__.__name__, e))
            return g
        f.decoded = None
        if f.type in (HEADERS, CONTINUATION):
            blk = self.partial.pop(f.stream_id, b"") + bytes(f.data)
            if "END_HEADERS" in f.flags:
                try:
                    f.decoded = [(bytes(k), bytes(v)) for k, v in self.dec.decode(blk, raw=True)]
                except Exception as e:
                    self.hpack_error = "%s: %s" % (e.__class__.__name__, e)
                    f.decoded = []
            else:
                self.partial[f.stream_id] = blk
        self.seen.append(describe_frame(f))
        self._track(f)
        if f.type == SETTINGS and "ACK" not in f.flags:
            self.server_settings.update(f.settings)
            if self.auto_ack:
                self.send(settings(ack=True), describe=False)
        elif f.type == PING and "ACK" not in f.flags and self.auto_ack:
            self.send(ping(bytes(f.opaque_data), ack=True), describe=False)
        elif f.type == DATA and self.auto_window and f.flow_controlled_length > 0:
            wu = window_update(0, f.flow_controlled_length)
            if "END_STREAM" not in f.flags:
                wu += window_update(f.stream_id, f.flow_controlled_length)
            self.send(wu, describe=False)
        return f

    def _track(self, f):
        if f.type == GOAWAY:
            self.goaway = f
            return
        if f.stream_id == 0 or f.type not in (HEADERS, CONTINUATION, DATA, RST_STREAM):
            return
        st = self.stream(f.stream_id)
        if f.type == RST_STREAM:
            st.reset = f.error_code
            if st.t_end is None:
                st.t_end = time.monotonic()
            return
        if f.type == DATA:
            st.body += bytes(f.data)
            st.data_frames.append(len(f.data))
        elif f.decoded is not None:
            hd = header_dict(f.decoded)
            code = hd.get(":status", [None])[0]
            if code is not None and not code.startswith("1"):
                st.status, st.headers = int(code) if code.isdigit() else code, hd
                st.t_head = time.monotonic()
            elif code is None and st.status is not None:
                st.trailers.append(hd)
        if f.type == DATA and "END_STREAM" in f.flags:
            st.ended = True
        elif f.type == HEADERS and "END_STREAM" in f.flags:
            if "END_HEADERS" in f.flags:
                st.ended = True
            else:
                self._es_pending.add(f.stream_id)
        elif f.type == CONTINUATION and "END_HEADERS" in f.flags and f.stream_id in self._es_pending:
            self._es_pending.discard(f.stream_id)
            st.ended = True
        if st.ended and st.t_end is None:
            st.t_end = time.monotonic()

    def frames(self, timeout=None):
        """Yields frames until CLOSED or TIMEOUT (yielded last) within `timeout` overall."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            f = self.read(deadline - time.monotonic())
            yield f
            if f in (CLOSED, TIMEOUT):
                return

    def pump(self):
        """Reads whatever the socket holds without waiting and handles every complete frame in
        it (PINGs and SETTINGS are ACKed at once); returns those frames. `read` hands out one
        frame per call, so a loop that reads one frame per connection in turn answers a PING
        queued behind a backlog late: use this (or `pump_all`) to keep up with several
        connections."""
        # Non-blocking for the reads (a socket with a timeout would wait for data first).
        self.sock.settimeout(0)
        while not self.closed:
            try:
                chunk = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.closed = "reset"
                self.seen.append("connection reset")
                break
            if not chunk:
                self.closed = "eof"
                self.seen.append("connection closed")
                break
            self.rbuf += chunk
        self.sock.settimeout(self.timeout)
        out = []
        while True:
            f = self.read(0)
            if f is CLOSED or f is TIMEOUT:
                return out
            out.append(f)

    def wait_closed(self, timeout):
        """True if the server closes within `timeout` (frames before it are read and kept)."""
        for f in self.frames(timeout):
            if f is CLOSED:
                return True
            if f is TIMEOUT:
                return False
        return False

    def seen_text(self, limit=12):
        s = self.seen[-limit:]
        return ("… " if len(self.seen) > limit else "") + ("; ".join(s) if s else "nothing")

    def sent_text(self, limit=10):
        s = self.sent[:limit]
        return "; ".join(s) + (" … (%d frames)" % len(self.sent) if len(self.sent) > limit else "")


def pump_all(conns, timeout):
    """Waits up to `timeout` for any of `conns` to be readable, then pumps every readable one;
    returns [(conn, frame)] in arrival order per connection."""
    socks = {c.sock: c for c in conns if not c.closed}
    if not socks:
        time.sleep(max(0.0, timeout))
        return []
    ready = [c for c in conns if not c.closed and len(c.rbuf) >= 9]
    if not ready:
        r, _, _ = select.select(list(socks), [], [], max(0.0, timeout))
        ready = [socks[s] for s in r]
    return [(c, f) for c in ready for f in c.pump()]


class _Bad:
    type = -1
    stream_id = 0
    flags = ()

    def __init__(self, raw, e):
        self.raw, self.error = raw, e


class HandshakeError(Exception):
    pass


def header_dict(decoded):
    d = {}
    for k, v in decoded or []:
        d.setdefault(k.decode("latin-1"), []).append(v.decode("latin-1"))
    return d


def describe_frame(f):
    if isinstance(f, _Bad):
        return "INVALID"
    t = f.type
    name = TYPE_NAMES.get(t, "type0x%x" % t)
    sid = f.stream_id
    if t == GOAWAY:
        dbg = bytes(f.additional_data)[:60]
        return "GOAWAY(last=%d, %s%s)" % (f.last_stream_id, err_name(f.error_code),
                                          (", " + repr(dbg)[2:-1]) if dbg else "")
    if t == RST_STREAM:
        return "RST_STREAM(s=%d, %s)" % (sid, err_name(f.error_code))
    if t == SETTINGS:
        if "ACK" in f.flags:
            return "SETTINGS(ACK)"
        return "SETTINGS(%s)" % ", ".join("%s=%d" % (SETTING_NAMES.get(k, "0x%x" % k), v) for k, v in f.settings.items())
    if t == PING:
        return "PING(%s%s)" % ("ACK, " if "ACK" in f.flags else "", bytes(f.opaque_data).hex())
    if t == WINDOW_UPDATE:
        return "WINDOW_UPDATE(s=%d, +%d)" % (sid, f.window_increment)
    if t == DATA:
        return "DATA(s=%d, %dB%s)" % (sid, len(f.data), ", ES" if "END_STREAM" in f.flags else "")
    if t in (HEADERS, CONTINUATION):
        extra = ""
        if f.decoded is not None:
            st = [v for k, v in f.decoded if k == b":status"]
            extra = ", :status=%s" % st[0].decode() if st else ", %d fields" % len(f.decoded)
        return "%s(s=%d%s%s)" % (name, sid, extra, ", ES" if "END_STREAM" in f.flags else "")
    return "%s(s=%d, %dB)" % (name, sid, len(getattr(f, "body", b"")))


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split(")")[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False


# ---- the well-behaved client (h2 library) -----------------------------------------------------

class NormalClient:
    """One HTTP/2 connection driven by the h2 library's state machine; blocking, one request at
    a time, every wait bounded."""

    def __init__(self, target, timeout=None):
        self.t = target
        self.timeout = target.timeout if timeout is None else timeout
        self.sock = socket.create_connection((target.host, target.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.h2.initiate_connection()
        self._flush()
        self.terminated = None

    def close(self):
        try:
            self.h2.close_connection()
            self._flush()
        except Exception:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _flush(self):
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def request(self, method="GET", path="/", body=None, extra=(), timeout=None, trailers=None):
        """Returns (status, headers dict, body bytes). Raises on reset, GOAWAY or timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        sid = self.h2.get_next_available_stream_id()
        fields = [(b":method", method.encode()), (b":scheme", b"http"), (b":path", path.encode()),
                  (b":authority", self.t.authority.encode())]
        fields += [(k.encode(), v.encode()) for k, v in extra]
        end = body is None and trailers is None
        self.h2.send_headers(sid, fields, end_stream=end)
        self._flush()
        to_send = memoryview(body or b"")
        sent_end = end
        status, hdrs, chunks = None, {}, []
        while True:
            # Send as much body as the windows allow.
            while not sent_end:
                room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                if len(to_send) == 0:
                    if trailers:
                        self.h2.send_headers(sid, [(k.encode(), v.encode()) for k, v in trailers], end_stream=True)
                    else:
                        self.h2.end_stream(sid)
                    sent_end = True
                elif room > 0:
                    n = min(room, len(to_send))
                    self.h2.send_data(sid, bytes(to_send[:n]))
                    to_send = to_send[n:]
                else:
                    break
            self._flush()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete response within the time limit (status %s)" % status)
            self.sock.settimeout(left)
            try:
                raw = self.sock.recv(1 << 16)
            except socket.timeout:
                raise TimeoutError("no complete response within the time limit (status %s)" % status)
            if not raw:
                raise ConnectionError("connection closed by the server")
            for ev in self.h2.receive_data(raw):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    hd = {}
                    for k, v in ev.headers:
                        hd.setdefault(k.decode(), []).append(v.decode("latin-1"))
                    st = int(hd.get(":status", ["0"])[0])
                    if st >= 200:
                        status, hdrs = st, hd
                elif isinstance(ev, h2.events.InformationalResponseReceived):
                    pass
                elif isinstance(ev, h2.events.DataReceived):
                    if ev.stream_id == sid:
                        chunks.append(ev.data)
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    self._flush()
                    return status, hdrs, b"".join(chunks)
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    raise ConnectionError("stream reset: %s" % err_name(int(ev.error_code)))
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.terminated = err_name(int(ev.error_code))
                    raise ConnectionError("GOAWAY(%s)" % self.terminated)
            self._flush()


def random_ping():
    return bytes(random.getrandbits(8) for _ in range(8))


def env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
