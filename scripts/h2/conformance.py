"""HTTP/2 conformance cases for a server-side proxy (run by scripts/h2-conformance.sh).

The cases follow the sections of RFC 9113 (HTTP/2) and RFC 7541 (HPACK) that h2spec's "generic"
and "http2" groups cover, plus a few a proxy in front of HTTP/1.1 upstreams must get right
(what reaches the upstream). They are written from the RFCs, over raw sockets (h2wire.Conn), so
each can send exactly the bytes it means to. Every read is bounded (--timeout, 3 s).

Verdicts:
  PASS  what the RFC requires (and, for stream errors, the connection survives);
  WARN  allowed by the RFC but not the target behaviour: a stream error answered with a
        connection error (RFC 9113 §5.4.1 lets an endpoint do that), a connection closed without
        GOAWAY (§5.4.1 SHOULD), or a SHOULD not followed; --strict counts these as failures;
  KNOWN a failure listed in the --known file (a deviation of a library the target cannot change)
        whose answer is exactly the one listed there; any other answer stays a FAIL;
  XPASS a case listed in the --known file that now passes (the entry can go);
  FAIL  anything else: the expected and the seen frames are printed, and the frames sent.
  SKIP  the case does not apply to this target.

The --known file: one case a line, `ID  ANSWER  why...` (a line starting with # is a comment). ANSWER is what the
case's judge calls the server's answer, printed after "answer:" under a failing case:
  GOAWAY(CODE)          GOAWAY with that code, then the connection closed
  GOAWAY(CODE),open     ... and the connection left open
  RST_STREAM(CODE)      RST_STREAM on the stream, and the connection still answers a PING
  RST_STREAM(CODE),then:WHAT   ... and then WHAT (GOAWAY(CODE), close, no answer) instead
  :status=NNN           a response on the stream
  close / no answer     the connection closed without GOAWAY / nothing within the timeout
  +upstream             (suffix) the request reached the upstream (for a case that checks that)
  +upstream?            (suffix) whether it did could not be found out
  +trailer:NAME         (suffix) a trailer field NAME reached the upstream
Only cases judged by those helpers have an answer; any other failure is never KNOWN.

Usage: conformance.py --port P --upstream-port U [--target ringway|nginx] [--only SUBSTR,...]
                      [--known FILE] [--strict]
Exit status: 0 no failure, 1 a failure, 2 could not run (or the --known file is wrong).
"""

import argparse
import os
import random
import socket
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2wire import (  # noqa: E402
    ACK, CLOSED, DATA, END_HEADERS, END_STREAM, ENABLE_PUSH, GOAWAY, HEADERS,
    HEADER_TABLE_SIZE, INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS, MAX_FRAME_SIZE,
    MAX_HEADER_LIST_SIZE, PADDED, PING, PREFACE, PRIORITY, PUSH_PROMISE, RST_STREAM, SETTINGS,
    TIMEOUT, WINDOW_UPDATE, CONNS, Conn, HandshakeError, clear_conns, NormalClient, Target, block, continuation, data,
    describe_frame, err_name, frame, goaway, header_dict, headers, hp_indexed, hp_literal,
    hp_size_update, hp_str, huffman, ping, priority, random_ping, rst_stream, settings,
    window_update,
)
from h2wire import CANCEL, COMPRESSION_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, \
    NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, STREAM_CLOSED  # noqa: E402

PASS, WARN, FAIL, SKIP, KNOWN, XPASS = "PASS", "WARN", "FAIL", "SKIP", "KNOWN", "XPASS"
NONCE = "%06x" % random.getrandbits(24)


class R:
    """A verdict. `answer` is the server's answer in the --known file's terms (see the module
    doc), set by the judges that can name it; None: a failure that can never be KNOWN."""

    def __init__(self, status, expected="", seen="", note="", answer=None):
        self.status, self.expected, self.seen, self.note = status, expected, seen, note
        self.answer = answer


CASES = []


def case(cid, title, only=None):
    """Registers a case; `only` restricts it to one target."""
    def deco(fn):
        CASES.append((cid, title, fn, only))
        return fn
    return deco


def tag(cid):
    return "%s-%s" % (cid, NONCE)


def codes_text(codes):
    return "|".join(err_name(c) for c in codes)


# ---- expectations ---------------------------------------------------------------------------

def still_alive(c, timeout=None):
    """Sends a PING; (True, "") once its ACK arrives, else (False, what happened); a GOAWAY seen
    meanwhile is left in c.goaway."""
    payload = random_ping()
    if not c.send(ping(payload)):
        return False, "sending a PING failed (%s)" % c.send_error
    for f in c.frames(timeout):
        if f is CLOSED:
            return False, "connection closed"
        if f is TIMEOUT:
            return False, "no PING ACK within %.0f s" % c.timeout
        if f.type == PING and "ACK" in f.flags and bytes(f.opaque_data) == payload:
            return True, ""
        if f.type == GOAWAY:
            return False, describe_frame(f)
    return False, "?"


def conn_error(c, codes, expected=None):
    """Connection error: GOAWAY with one of `codes`, then the connection closes (§5.4.1)."""
    codes = tuple(codes) if isinstance(codes, (tuple, list)) else (codes,)
    exp = expected or "GOAWAY(%s), then close" % codes_text(codes)
    for f in c.frames():
        if f is CLOSED:
            return R(WARN, exp, c.seen_text(), "closed without GOAWAY (RFC 9113 §5.4.1: SHOULD send GOAWAY first)",
                     answer="close")
        if f is TIMEOUT:
            return R(FAIL, exp, c.seen_text() + " (then nothing for %.0f s)" % c.timeout, answer="no answer")
        if f.type == GOAWAY:
            ga = "GOAWAY(%s)" % err_name(f.error_code)
            if c.wait_closed(c.timeout):
                return R(PASS if f.error_code in codes else FAIL, exp, c.seen_text(), answer=ga)
            return R(FAIL, exp, c.seen_text() + "; connection still open %.0f s later (§5.4.1: MUST close)" % c.timeout,
                     answer=ga + ",open")
    return R(FAIL, exp, c.seen_text())


def _field_name(line):
    """The lowercase name of an HTTP/1.1 field line (a leading ':' kept: ':path: /x' -> ':path')."""
    lead = ":" if line.startswith(":") else ""
    return lead + line[len(lead):].split(":", 1)[0].strip().lower()


def _not_forwarded(t, cid, r, complete_only=False):
    """Downgrades `r` to FAIL if the upstream saw the request tagged `cid` (complete, with
    `complete_only`), and adds +upstream (+upstream? if that cannot be told) to its answer; also
    +trailer:NAME for each trailer field that reached the upstream."""
    rec = t.upstream_record(tag(cid))
    if r.answer is not None:
        if rec is None:
            r.answer += "+upstream?"
        else:
            if rec["complete"] if complete_only else rec["heads"]:
                r.answer += "+upstream"
            for ln in rec["trailers"]:
                r.answer += "+trailer:" + _field_name(ln)
    if r.status == FAIL:
        return r
    if rec is None:
        r.note = (r.note + "; " if r.note else "") + "upstream not asked"
        return r
    heads, complete = rec["heads"], rec["complete"]
    if (complete if complete_only else heads):
        r.status = FAIL
        r.note = (r.note + "; " if r.note else "") + (
            "the malformed request reached the upstream (%d head(s), %d complete) — RFC 9113 §8.1.1: "
            "an intermediary MUST NOT forward a malformed request" % (heads, complete))
    return r


def stream_error(c, sid, codes, allow_4xx=False, conn_codes=None, t=None, cid=None, complete_only=False,
                 expected=None):
    """Stream error: RST_STREAM(sid, one of `codes`), or (allow_4xx) a 4xx response on the stream,
    and the connection still answers a PING. GOAWAY with one of `codes` (or `conn_codes`) is a WARN.
    With `t` and `cid`: the request tagged cid must not have reached the upstream."""
    codes = tuple(codes) if isinstance(codes, (tuple, list)) else (codes,)
    conn_codes = tuple(conn_codes or codes)
    exp = expected or "RST_STREAM(s=%d, %s)%s; connection stays usable" % (
        sid, codes_text(codes), " or a 4xx response" if allow_4xx else "")
    r = None
    for f in c.frames():
        if f is CLOSED:
            r = R(FAIL, exp, c.seen_text(), answer="close")
            break
        if f is TIMEOUT:
            r = R(FAIL, exp, c.seen_text() + " (then nothing for %.0f s)" % c.timeout, answer="no answer")
            break
        if f.type == RST_STREAM and f.stream_id == sid:
            ans = "RST_STREAM(%s)" % err_name(f.error_code)
            r = _then_alive(c, R(PASS if f.error_code in codes else FAIL, exp, "", answer=ans), conn_codes)
            break
        if f.type == HEADERS and f.stream_id == sid and f.decoded is not None:
            st = header_dict(f.decoded).get(":status", ["?"])[0]
            if st.startswith("1"):
                continue
            if allow_4xx and st.startswith("4"):
                r = _then_alive(c, R(PASS, exp, "", "answered %s" % st, answer=":status=%s" % st), conn_codes)
            else:
                r = R(FAIL, exp, c.seen_text(), answer=":status=%s" % st)
            break
        if f.type == GOAWAY:
            ans = "GOAWAY(%s)" % err_name(f.error_code)
            if not c.wait_closed(c.timeout):
                ans += ",open"
            if f.error_code in conn_codes:
                r = R(WARN, exp, c.seen_text(), "a connection error instead of a stream error "
                      "(RFC 9113 §5.4.1 allows it; other streams on the connection are lost)", answer=ans)
            else:
                r = R(FAIL, exp, c.seen_text(), answer=ans)
            break
    if r is None:
        r = R(FAIL, exp, c.seen_text())
    if t is not None and cid is not None:
        r = _not_forwarded(t, cid, r, complete_only)
    return r


def _then_alive(c, r, conn_codes):
    """After a stream error: the connection must still answer a PING. A GOAWAY with one of
    `conn_codes` instead makes it a WARN (the stream error escalated to a connection error)."""
    ok, why = still_alive(c)
    r.seen = c.seen_text()
    if ok:
        return r
    if r.answer is not None:
        r.answer += ",then:" + ("GOAWAY(%s)" % err_name(c.goaway.error_code) if c.goaway is not None
                                else "close" if c.closed else "no answer")
    if r.status == FAIL:
        r.seen += "; then " + why
        return r
    if c.goaway is not None and c.goaway.error_code in conn_codes:
        r.status = WARN
        r.note = (r.note + "; " if r.note else "") + "then a connection error (RFC 9113 §5.4.1 allows it)"
        return r
    r.status = FAIL
    r.seen += "; then " + why
    return r


def malformed(c, sid, t=None, cid=None, complete_only=False):
    """A malformed request (RFC 9113 §8.1.1): stream error PROTOCOL_ERROR, or an HTTP response
    (4xx) before the stream ends; never forwarded."""
    return stream_error(c, sid, (PROTOCOL_ERROR,), allow_4xx=True, t=t, cid=cid, complete_only=complete_only,
                        expected="RST_STREAM(s=%d, PROTOCOL_ERROR) or a 4xx response; not forwarded; "
                                 "connection stays usable" % sid)


def ignored(c, forbid_rst=(), expected="the frame ignored: PING answered, no error"):
    """The server must carry on: a PING is answered; no GOAWAY, no RST_STREAM on `forbid_rst`."""
    payload = random_ping()
    c.send(ping(payload))
    for f in c.frames():
        if f is CLOSED or f is TIMEOUT:
            return R(FAIL, expected, c.seen_text() + ("" if f is CLOSED else " (then nothing)"))
        if f.type == GOAWAY:
            return R(FAIL, expected, c.seen_text())
        if f.type == RST_STREAM and f.stream_id in forbid_rst:
            return R(FAIL, expected, c.seen_text())
        if f.type == PING and "ACK" in f.flags and bytes(f.opaque_data) == payload:
            return R(PASS, expected, c.seen_text())
    return R(FAIL, expected, c.seen_text())


def response(c, sid, timeout=None):
    """Reads until stream `sid` ends (END_STREAM or RST_STREAM), a GOAWAY, a close or the timeout;
    returns the stream's state (h2wire.Stream), with .error saying why reading stopped early."""
    st = c.stream(sid)
    st.error = None
    if st.done():
        return st
    for f in c.frames(timeout):
        if f is CLOSED or f is TIMEOUT:
            st.error = "connection closed" if f is CLOSED else "timeout"
            break
        if f.type == GOAWAY:
            st.error = describe_frame(f)
            break
        if st.done():
            break
    return st


def expect_200(c, sid, body=None, body_len=None, expected=None, timeout=None):
    exp = expected or "a 200 response on stream %d" % sid
    res = response(c, sid, timeout)
    res.body = bytes(res.body)
    if res.status == 200 and res.ended and (body is None or res.body == body) and (body_len is None or len(res.body) == body_len):
        return R(PASS, exp, c.seen_text())
    extra = ""
    if res.status == 200 and body is not None and res.body != body:
        extra = "; body %r… (%d B) instead of %r… (%d B)" % (res.body[:20], len(res.body), body[:20], len(body))
    if res.status == 200 and body_len is not None and len(res.body) != body_len:
        extra = "; body %d B instead of %d B" % (len(res.body), body_len)
    return R(FAIL, exp, c.seen_text() + extra)


def conn(t, pairs=(), **kw):
    c = Conn(t, **kw)
    c.handshake(pairs)
    return c


def open_post(c, t, sid, path="/echo", extra=(), cl=None):
    """HEADERS for a POST without END_STREAM: the stream stays open."""
    ex = list(extra)
    if cl is not None:
        ex.append(("content-length", str(cl)))
    c.send(headers(sid, t.req("POST", path, extra=ex), end_stream=False))


def max_frame(c):
    return c.server_settings.get(MAX_FRAME_SIZE, 16384)


# ---- 3.4 connection preface -----------------------------------------------------------------

@case("3.4/1", "client preface and SETTINGS: the server's first frame is SETTINGS")
def _(t):
    with Conn(t) as c:
        c.send(PREFACE, settings())
        f = c.read()
        exp = "SETTINGS (not an ACK) as the first frame"
        if f not in (CLOSED, TIMEOUT) and f.type == SETTINGS and "ACK" not in f.flags:
            return R(PASS, exp, c.seen_text())
        return R(FAIL, exp, c.seen_text())


def raw_exchange(t, payload, timeout=None, pause_after=None):
    """Sends raw bytes, reads until close/timeout: (bytes, closed)."""
    s = socket.create_connection((t.host, t.port), timeout=t.timeout)
    try:
        if pause_after:
            s.sendall(payload[:pause_after])
            time.sleep(0.3)
            s.sendall(payload[pause_after:])
        else:
            s.sendall(payload)
        got, deadline = b"", time.monotonic() + (timeout or t.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got, False
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return got, False
            except OSError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
    finally:
        s.close()


def frames_in(raw):
    out, i = [], 0
    while i + 9 <= len(raw):
        n = int.from_bytes(raw[i:i + 3], "big")
        out.append((raw[i + 3], raw[i + 4], int.from_bytes(raw[i + 5:i + 9], "big") & 0x7FFFFFFF, raw[i + 9:i + 9 + n]))
        i += 9 + n
    return out


def judge_bad_preface(t, payload, label):
    exp = ("GOAWAY(PROTOCOL_ERROR) and close, or (a port shared with HTTP/1.1) an HTTP/1.1 4xx/5xx "
           "and close, or a plain close; never served as HTTP/2")
    got, closed = raw_exchange(t, payload)
    if got.startswith(b"HTTP/1."):
        line = got.split(b"\r\n", 1)[0].decode("latin-1")
        code = line.split(" ")[1] if " " in line else "?"
        seen = "HTTP/1 answer %r, %s" % (line, "then closed" if closed else "connection left open")
        ok = code[:1] in ("4", "5") and closed
        return R(PASS if ok else FAIL, exp, seen, "answered as HTTP/1.1" if ok else "")
    fr = frames_in(got)
    desc = []
    goaway_code = None
    for ty, fl, sid, pl in fr:
        if ty == GOAWAY and len(pl) >= 8:
            goaway_code = int.from_bytes(pl[4:8], "big")
            desc.append("GOAWAY(%s)" % err_name(goaway_code))
        else:
            desc.append({SETTINGS: "SETTINGS", WINDOW_UPDATE: "WINDOW_UPDATE"}.get(ty, "type %d" % ty))
    seen = ("; ".join(desc) or ("%d bytes" % len(got) if got else "nothing")) + ("; closed" if closed else "; still open")
    if not closed:
        return R(FAIL, exp, seen)
    if goaway_code is None:
        return R(PASS if not got else WARN, exp, seen, "closed without GOAWAY" if not got else "no GOAWAY")
    return R(PASS if goaway_code == PROTOCOL_ERROR else FAIL, exp, seen)


@case("3.4/2", "invalid connection preface (tail differs from the preface) -> PROTOCOL_ERROR / close")
def _(t):
    return judge_bad_preface(t, b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n" + settings(), "tail")


@case("3.4/3", "preface not followed by SETTINGS (a PING first) -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with Conn(t) as c:
        c.send(PREFACE, ping(b"12345678"))
        return conn_error(c, PROTOCOL_ERROR)


@case("3.4/4", "preface and SETTINGS sent one byte at a time -> a normal connection")
def _(t):
    with Conn(t) as c:
        raw = PREFACE + settings()
        for i in range(len(raw)):
            c.send(raw[i:i + 1], describe=False)
            time.sleep(0.01)
        c.send(headers(1, t.req("GET", "/1k")))
        return expect_200(c, 1, body_len=1024, expected="the handshake completes; GET /1k answered 200 with 1024 B")


@case("3.4/5", "preface split after its first 18 bytes (an HTTP/1-looking head), 300 ms pause -> a normal connection")
def _(t):
    with Conn(t) as c:
        c.send(PREFACE[:18], describe=False)
        time.sleep(0.3)
        c.send(PREFACE[18:], settings(), headers(1, t.req("GET", "/1k")), describe=False)
        return expect_200(c, 1, body_len=1024, expected="GET /1k answered 200 with 1024 B")


# ---- 4.1 frame format -----------------------------------------------------------------------

@case("4.1/1", "a frame of unknown type (0x20) on stream 0 and on an open stream is ignored")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo", cl=2)
        c.send(frame(0x20, 0, 0, b"unknown!"), frame(0x21, 0xff, 1, b"x" * 20), data(1, b"ok", end_stream=True))
        r = expect_200(c, 1, body=b"ok", expected="unknown frames ignored; the request completes (200, body echoed)")
        return r if r.status != PASS else ignored(c)


@case("4.1/2", "undefined flags on a PING (0xfe) are ignored: the PING is answered")
def _(t):
    with conn(t) as c:
        c.send(ping(b"flags!!!", flags=0xFE))
        for f in c.frames():
            if f in (CLOSED, TIMEOUT):
                break
            if f.type == PING and "ACK" in f.flags and bytes(f.opaque_data) == b"flags!!!":
                return R(PASS, "PING ACK echoing the payload", c.seen_text())
            if f.type == GOAWAY:
                break
        return R(FAIL, "PING ACK echoing the payload", c.seen_text())


@case("4.1/3", "the reserved bit set in a HEADERS stream identifier is ignored")
def _(t):
    with conn(t) as c:
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, 0x80000001, t.req("GET", "/1k")))
        return expect_200(c, 1, body_len=1024, expected="a 200 response on stream 1")


@case("4.1/4", "the reserved bit set in a WINDOW_UPDATE increment is ignored")
def _(t):
    with conn(t) as c:
        c.send(window_update(0, 1000, reserved=True))
        return ignored(c)


# ---- 4.2 frame size -------------------------------------------------------------------------

@case("4.2/1", "a DATA frame of 2^14 octets (the size every endpoint must accept) is accepted")
def _(t):
    with conn(t) as c:
        n = 16384
        body = bytes(random.getrandbits(8) for _ in range(64)) * (n // 64)
        open_post(c, t, 1, "/echo", cl=n)
        c.send(data(1, body, end_stream=True))
        return expect_200(c, 1, body=body, expected="200 echoing the %d B body" % n)


def over_max_frame(c):
    """SETTINGS_MAX_FRAME_SIZE + 1, or None if the server allows the largest frames (2^24-1)."""
    n = max_frame(c)
    return None if n >= (1 << 24) - 1 else n + 1


@case("4.2/2", "a DATA frame over SETTINGS_MAX_FRAME_SIZE -> FRAME_SIZE_ERROR")
def _(t):
    with conn(t) as c:
        n = over_max_frame(c)
        if n is None:
            return R(SKIP, "", "", "the server's SETTINGS_MAX_FRAME_SIZE is 2^24-1: no frame can exceed it")
        open_post(c, t, 1, "/echo", cl=n)
        c.send(data(1, b"a" * n, end_stream=True))
        r = stream_error(c, 1, (FRAME_SIZE_ERROR,), expected="FRAME_SIZE_ERROR (RST_STREAM or GOAWAY)")
        if r.status == WARN:
            r.status, r.note = PASS, "connection error (allowed for DATA: §4.2)"
        return r


@case("4.2/3", "a HEADERS frame over SETTINGS_MAX_FRAME_SIZE -> GOAWAY(FRAME_SIZE_ERROR)")
def _(t):
    with conn(t) as c:
        n = over_max_frame(c)
        if n is None:
            return R(SKIP, "", "", "the server's SETTINGS_MAX_FRAME_SIZE is 2^24-1: no frame can exceed it")
        base = t.req("GET", "/")
        blk = base + hp_literal("x-pad", "p" * (n - len(base) - 10))
        blk = blk + hp_literal("x", "y" * max(0, n - len(blk) - 3))
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, blk))
        return conn_error(c, FRAME_SIZE_ERROR, expected="GOAWAY(FRAME_SIZE_ERROR), then close (%d B HEADERS)" % len(blk))


@case("4.2/4", "a SETTINGS frame over SETTINGS_MAX_FRAME_SIZE -> GOAWAY(FRAME_SIZE_ERROR)")
def _(t):
    with conn(t) as c:
        n = over_max_frame(c)
        if n is None:
            return R(SKIP, "", "", "the server's SETTINGS_MAX_FRAME_SIZE is 2^24-1: no frame can exceed it")
        c.send(settings([(0xFF00, 0)] * (n // 6 + 1)))
        return conn_error(c, FRAME_SIZE_ERROR)


# ---- 4.3 field section compression ----------------------------------------------------------

@case("4.3/1", "an invalid field block fragment (string runs past the block) -> GOAWAY(COMPRESSION_ERROR)")
def _(t):
    with conn(t) as c:
        blk = t.req("GET", "/") + b"\x00\x05x-bad\x64abc"  # value length 100, 3 octets present
        c.send(headers(1, blk))
        return conn_error(c, COMPRESSION_ERROR)


@case("4.3/2", "a PRIORITY frame between HEADERS and its CONTINUATION -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        blk = t.req("GET", "/")
        c.send(headers(1, blk[:5], end_headers=False), priority(1, 0, 16), continuation(1, blk[5:]))
        return conn_error(c, PROTOCOL_ERROR)


@case("4.3/3", "HEADERS for another stream between HEADERS and its CONTINUATION -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        blk = t.req("GET", "/")
        c.send(headers(1, blk[:5], end_headers=False), headers(3, blk), continuation(1, blk[5:]))
        return conn_error(c, PROTOCOL_ERROR)


@case("4.3/4", "a PING between HEADERS and its CONTINUATION -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        blk = t.req("GET", "/")
        c.send(headers(1, blk[:5], end_headers=False), ping(b"mid-blk!"), continuation(1, blk[5:]))
        return conn_error(c, PROTOCOL_ERROR)


@case("4.3/5", "HPACK state survives a stream error: a table entry added by a rejected request is usable next")
def _(t):
    with conn(t) as c:
        cid = "4.3/5"
        path = "/headers?case=%s-ok" % tag(cid)
        # Stream 1 is malformed (no :method) but adds :path to the dynamic table.
        blk1 = (hp_indexed(6) + hp_literal(None, path, mode="incremental", name_index=4)
                + hp_literal(":authority", t.authority))
        c.send(headers(1, blk1))
        res1 = response(c, 1)
        blk3 = hp_indexed(2) + hp_indexed(6) + hp_indexed(62) + hp_literal(":authority", t.authority)
        c.send(headers(3, blk3))
        res3 = response(c, 3)
        exp = "stream 1 rejected (RST_STREAM or 4xx); stream 3, whose :path is dynamic index 62, answered 200 for %s" % path
        ok1 = res1.reset is not None or (res1.status or 0) >= 400
        ok3 = res3.status == 200 and path.encode() in bytes(res3.body)
        if ok1 and ok3:
            return R(PASS, exp, c.seen_text())
        if res1.error and "GOAWAY" in res1.error:
            return R(WARN, exp, c.seen_text(), "stream 1 ended the connection (a connection error): the table could not be checked")
        return R(FAIL, exp, c.seen_text() + ("; stream 3 body %r" % bytes(res3.body[:120]) if res3.status == 200 else ""))


# ---- 5.1 stream states ----------------------------------------------------------------------

@case("5.1/1", "idle stream: DATA -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(data(1, b"hello", end_stream=True))
        return conn_error(c, PROTOCOL_ERROR)


@case("5.1/2", "idle stream: RST_STREAM -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(rst_stream(1, CANCEL))
        return conn_error(c, PROTOCOL_ERROR)


@case("5.1/3", "idle stream: WINDOW_UPDATE -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(window_update(1, 100))
        return conn_error(c, PROTOCOL_ERROR)


@case("5.1/4", "idle stream: CONTINUATION -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(continuation(1, t.req("GET", "/")))
        return conn_error(c, PROTOCOL_ERROR)


@case("5.1/5", "half-closed (remote): DATA -> RST_STREAM(STREAM_CLOSED)")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/delay?ms=1500")), data(1, b"late", end_stream=True))
        return stream_error(c, 1, (STREAM_CLOSED,))


@case("5.1/6", "half-closed (remote): HEADERS -> RST_STREAM(STREAM_CLOSED)")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/delay?ms=1500")), headers(1, block([("x-trailer", "late")])))
        return stream_error(c, 1, (STREAM_CLOSED,))


@case("5.1/7", "half-closed (remote): CONTINUATION -> STREAM_CLOSED or PROTOCOL_ERROR")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/delay?ms=1500")), continuation(1, block([("x-late", "1")])))
        r = stream_error(c, 1, (STREAM_CLOSED,), conn_codes=(STREAM_CLOSED, PROTOCOL_ERROR),
                         expected="RST_STREAM(STREAM_CLOSED) or GOAWAY(PROTOCOL_ERROR|STREAM_CLOSED)")
        if r.status == WARN:
            r.status, r.note = PASS, "connection error (a CONTINUATION without HEADERS is one: §6.10)"
        return r


def closed_by_rst(c, t):
    open_post(c, t, 1, "/delay?ms=100")
    c.send(rst_stream(1, CANCEL))
    time.sleep(0.05)


def closed_normally(c, t):
    c.send(headers(1, t.req("GET", "/0")))
    res = response(c, 1)
    return res.ended


def closed_case(setup, send, allowed_stream, allowed_conn):
    def fn(t):
        with conn(t) as c:
            if setup(c, t) is False:
                return R(FAIL, "setup: a 200 on stream 1", c.seen_text())
            c.send(send(t))
            exp = "%s%s" % ("RST_STREAM(s=1, %s) or " % codes_text(allowed_stream) if allowed_stream else "",
                            "GOAWAY(%s)" % codes_text(allowed_conn))
            r = stream_error(c, 1, allowed_stream or (-1,), conn_codes=allowed_conn, expected=exp)
            if r.status == WARN:
                r.status, r.note = PASS, "connection error"
            return r
    return fn


_data1 = lambda t: data(1, b"late", end_stream=True)  # noqa: E731
_hdr1 = lambda t: headers(1, t.req("GET", "/"))  # noqa: E731
_cont1 = lambda t: continuation(1, block([("x-late", "1")]))  # noqa: E731

case("5.1/8", "closed (client sent RST_STREAM): DATA -> STREAM_CLOSED")(
    closed_case(closed_by_rst, _data1, (STREAM_CLOSED,), (STREAM_CLOSED,)))
case("5.1/9", "closed (client sent RST_STREAM): HEADERS -> STREAM_CLOSED or PROTOCOL_ERROR")(
    closed_case(closed_by_rst, _hdr1, (STREAM_CLOSED,), (STREAM_CLOSED, PROTOCOL_ERROR)))
case("5.1/10", "closed (client sent RST_STREAM): CONTINUATION -> PROTOCOL_ERROR or STREAM_CLOSED")(
    closed_case(closed_by_rst, _cont1, (STREAM_CLOSED,), (STREAM_CLOSED, PROTOCOL_ERROR)))
case("5.1/11", "closed (END_STREAM both ways): DATA -> STREAM_CLOSED")(
    closed_case(closed_normally, _data1, (STREAM_CLOSED,), (STREAM_CLOSED,)))
case("5.1/12", "closed (END_STREAM both ways): HEADERS (stream id reused) -> STREAM_CLOSED or PROTOCOL_ERROR")(
    closed_case(closed_normally, _hdr1, (STREAM_CLOSED,), (STREAM_CLOSED, PROTOCOL_ERROR)))
case("5.1/13", "closed (END_STREAM both ways): CONTINUATION -> PROTOCOL_ERROR or STREAM_CLOSED")(
    closed_case(closed_normally, _cont1, (STREAM_CLOSED,), (STREAM_CLOSED, PROTOCOL_ERROR)))


@case("5.1/14", "idle stream: PRIORITY is allowed")
def _(t):
    with conn(t) as c:
        c.send(priority(3, 0, 16))
        return ignored(c)


@case("5.1/15", "half-closed (remote): WINDOW_UPDATE, PRIORITY and RST_STREAM are allowed")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/delay?ms=300")), window_update(1, 1000), priority(1, 0, 200))
        r = ignored(c, forbid_rst=())
        if r.status != PASS:
            return r
        c.send(headers(3, t.req("GET", "/delay?ms=300")), rst_stream(3, CANCEL))
        r = ignored(c)
        if r.status != PASS:
            return r
        r = expect_200(c, 1, expected="stream 1 still answered 200")
        return r


@case("5.1/16", "closed stream: PRIORITY is allowed")
def _(t):
    with conn(t) as c:
        closed_normally(c, t)
        c.send(priority(1, 0, 32))
        return ignored(c)


# ---- 5.1.1 stream identifiers ---------------------------------------------------------------

@case("5.1.1/1", "HEADERS on an even (server-initiated) stream id -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(headers(2, t.req("GET", "/")))
        return conn_error(c, PROTOCOL_ERROR)


@case("5.1.1/2", "HEADERS on a stream id lower than a previous one -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(headers(5, t.req("GET", "/0")))
        response(c, 5)
        c.send(headers(3, t.req("GET", "/0")))
        return conn_error(c, PROTOCOL_ERROR)


# ---- 5.1.2 stream concurrency ---------------------------------------------------------------

@case("5.1.2/1", "a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS -> RST_STREAM(REFUSED_STREAM|PROTOCOL_ERROR)")
def _(t):
    with conn(t, timeout=max(t.timeout, 5)) as c:
        n = c.server_settings.get(MAX_CONCURRENT_STREAMS)
        if n is None or n > 1000:
            return R(SKIP, "", "server advertises MAX_CONCURRENT_STREAMS=%s" % n)
        out = b"".join(headers(2 * i + 1, t.req("POST", "/echo"), end_stream=False) for i in range(n))
        c.send(out, describe=False)
        c.sent.append("%d x HEADERS(POST /echo, no END_STREAM)" % n)
        extra = 2 * n + 1
        c.send(headers(extra, t.req("POST", "/echo"), end_stream=False))
        r = stream_error(c, extra, (REFUSED_STREAM, PROTOCOL_ERROR))
        early = [s for s in c.seen if s.startswith("RST_STREAM") and "s=%d," % extra not in s]
        if r.status == PASS and early:
            return R(FAIL, r.expected, c.seen_text(), "streams within the limit were reset too")
        r.expected = "the %d-th stream (s=%d) refused: RST_STREAM(REFUSED_STREAM|PROTOCOL_ERROR); connection usable" % (n + 1, extra)
        return r


# ---- 5.3.1 stream dependencies --------------------------------------------------------------

@case("5.3.1/1", "HEADERS with a dependency on itself -> RST_STREAM(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/"), prio=(1, 16, False)))
        return stream_error(c, 1, (PROTOCOL_ERROR,))


@case("5.3.1/2", "PRIORITY on an open stream depending on itself -> RST_STREAM(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo")
        c.send(priority(1, 1, 16))
        return stream_error(c, 1, (PROTOCOL_ERROR,))


# ---- 5.4.1 connection errors / 5.5 extensions ------------------------------------------------

@case("5.4.1/1", "GOAWAY after a connection error names the last stream processed")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/0")))
        response(c, 1)
        c.send(data(0, b"x"))
        exp = "GOAWAY(PROTOCOL_ERROR, last stream id >= 1)"
        for f in c.frames():
            if f in (CLOSED, TIMEOUT):
                break
            if f.type == GOAWAY:
                ok = f.error_code == PROTOCOL_ERROR and f.last_stream_id >= 1
                return R(PASS if ok else FAIL, exp, c.seen_text())
        return R(FAIL, exp, c.seen_text())


@case("5.5/1", "an unknown extension frame in the middle of a field block -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        blk = t.req("GET", "/")
        c.send(headers(1, blk[:5], end_headers=False), frame(0x22, 0, 1, b"ext"), continuation(1, blk[5:]))
        return conn_error(c, PROTOCOL_ERROR)


# ---- 6.1 DATA -------------------------------------------------------------------------------

@case("6.1/1", "DATA on stream 0 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(data(0, b"hello"))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.1/2", "DATA with a pad length >= the payload -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo", cl=4)
        c.send(frame(DATA, PADDED | END_STREAM, 1, bytes([10]) + b"abcd"))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.1/3", "DATA with padding: the padding is not part of the body")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo", cl=5)
        c.send(data(1, b"hello", end_stream=True, pad=32))
        return expect_200(c, 1, body=b"hello", expected="200 echoing 'hello'")


@case("6.1/4", "several DATA frames (one empty) make one body")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo", cl=11)
        c.send(data(1, b"hello"), data(1, b""), data(1, b" "), data(1, b"world", end_stream=True))
        return expect_200(c, 1, body=b"hello world", expected="200 echoing 'hello world'")


# ---- 6.2 HEADERS ----------------------------------------------------------------------------

@case("6.2/1", "HEADERS on stream 0 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(headers(0, t.req("GET", "/")))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.2/2", "HEADERS with a pad length beyond the payload -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        blk = t.req("GET", "/")
        c.send(frame(HEADERS, PADDED | END_HEADERS | END_STREAM, 1, bytes([len(blk) + 10]) + blk))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.2/3", "HEADERS with padding -> 200")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/1k"), pad=40))
        return expect_200(c, 1, body_len=1024)


@case("6.2/4", "HEADERS with the PRIORITY flag (exclusive, weight 256) -> 200")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/1k"), prio=(0, 256, True)))
        return expect_200(c, 1, body_len=1024)


@case("6.2/5", "HEADERS with padding and PRIORITY -> 200")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/1k"), prio=(0, 1, False), pad=3))
        return expect_200(c, 1, body_len=1024)


# ---- 6.3 PRIORITY ---------------------------------------------------------------------------

@case("6.3/1", "PRIORITY on stream 0 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(priority(0, 1, 16))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.3/2", "PRIORITY of 4 octets on an open stream -> RST_STREAM(FRAME_SIZE_ERROR)")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo")
        c.send(frame(PRIORITY, 0, 1, b"\0\0\0\0"))
        return stream_error(c, 1, (FRAME_SIZE_ERROR,))


@case("6.3/3", "PRIORITY frames (weights 1 and 256, dependencies, exclusive) on open and idle streams are accepted")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo", cl=2)
        c.send(priority(1, 0, 1), priority(1, 0, 256), priority(5, 1, 16, exclusive=True), priority(1, 5, 8))
        c.send(data(1, b"ok", end_stream=True))
        return expect_200(c, 1, body=b"ok", expected="200 echoing 'ok' on stream 1")


@case("6.3/4", "PRIORITY for idle stream 7, then HEADERS on lower stream 3 -> 200")
def _(t):
    with conn(t) as c:
        c.send(priority(7, 0, 16), headers(3, t.req("GET", "/1k")))
        return expect_200(c, 3, body_len=1024, expected="a 200 response on stream 3")


# ---- 6.4 RST_STREAM -------------------------------------------------------------------------

@case("6.4/1", "RST_STREAM on stream 0 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(rst_stream(0, CANCEL))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.4/2", "RST_STREAM of 3 octets -> GOAWAY(FRAME_SIZE_ERROR)")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo")
        c.send(frame(RST_STREAM, 0, 1, b"\0\0\x08"))
        return conn_error(c, FRAME_SIZE_ERROR)


@case("6.4/3", "RST_STREAM on an open stream: no further frames on it, the connection carries on")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/delay?ms=400")), rst_stream(1, CANCEL))
        r = ignored(c)
        if r.status != PASS:
            return r
        time.sleep(0.7)
        r = ignored(c)
        bad = [s for s in c.seen if ("(s=1" in s and not s.startswith(("WINDOW_UPDATE", "RST_STREAM")))]
        if bad:
            return R(FAIL, "nothing but WINDOW_UPDATE/RST_STREAM on stream 1 after its RST_STREAM", c.seen_text())
        return r


# ---- 6.5 SETTINGS ---------------------------------------------------------------------------

@case("6.5/1", "SETTINGS with ACK and a payload -> GOAWAY(FRAME_SIZE_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(frame(SETTINGS, ACK, 0, struct.pack(">HI", INITIAL_WINDOW_SIZE, 1000)))
        return conn_error(c, FRAME_SIZE_ERROR)


@case("6.5/2", "SETTINGS on stream 1 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(settings([(INITIAL_WINDOW_SIZE, 100000)], sid=1))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.5/3", "SETTINGS of 3 octets -> GOAWAY(FRAME_SIZE_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(frame(SETTINGS, 0, 0, b"\0\x03\0"))
        return conn_error(c, FRAME_SIZE_ERROR)


@case("6.5.2/1", "SETTINGS_ENABLE_PUSH = 2 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(settings([(ENABLE_PUSH, 2)]))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.5.2/2", "SETTINGS_INITIAL_WINDOW_SIZE = 2^31 -> GOAWAY(FLOW_CONTROL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(settings([(INITIAL_WINDOW_SIZE, 1 << 31)]))
        return conn_error(c, FLOW_CONTROL_ERROR)


@case("6.5.2/3", "SETTINGS_MAX_FRAME_SIZE = 16383 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(settings([(MAX_FRAME_SIZE, 16383)]))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.5.2/4", "SETTINGS_MAX_FRAME_SIZE = 2^24 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(settings([(MAX_FRAME_SIZE, 1 << 24)]))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.5.2/5", "an unknown SETTINGS identifier is ignored: SETTINGS ACK")
def _(t):
    with conn(t) as c:
        c.send(settings([(0xFF42, 7)]))
        for f in c.frames():
            if f in (CLOSED, TIMEOUT) or f.type == GOAWAY:
                break
            if f.type == SETTINGS and "ACK" in f.flags:
                return ignored(c)
        return R(FAIL, "SETTINGS ACK", c.seen_text())


@case("6.5.3/1", "several SETTINGS_INITIAL_WINDOW_SIZE values in one frame: the last one counts")
def _(t):
    with conn(t, [(INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1)]) as c:
        c.auto_window = False
        c.send(headers(1, t.req("GET", "/1k")))
        exp = "exactly 1 octet of DATA on stream 1 (window 1), then nothing until a WINDOW_UPDATE"
        res = response(c, 1, timeout=1.0)
        if res.status == 200 and res.data_total == 1 and not res.ended and res.error == "timeout":
            return R(PASS, exp, c.seen_text())
        return R(FAIL, exp, c.seen_text())


@case("6.5.3/2", "SETTINGS (not ACK) -> SETTINGS ACK")
def _(t):
    with conn(t) as c:
        c.send(settings([(MAX_CONCURRENT_STREAMS, 50)]))
        for f in c.frames():
            if f in (CLOSED, TIMEOUT) or f.type == GOAWAY:
                break
            if f.type == SETTINGS and "ACK" in f.flags:
                return R(PASS, "SETTINGS ACK", c.seen_text())
        return R(FAIL, "SETTINGS ACK", c.seen_text())


@case("6.5.3/3", "SETTINGS_HEADER_TABLE_SIZE = 0: the server's HPACK encoder uses no dynamic table")
def _(t):
    with conn(t, [(HEADER_TABLE_SIZE, 0)]) as c:
        c.dec.max_allowed_table_size = 0
        for sid in (1, 3, 5):
            c.send(headers(sid, t.req("GET", "/1k")))
            res = response(c, sid)
            if c.hpack_error or res.status != 200:
                return R(FAIL, "three 200 responses decodable with a 0-octet dynamic table",
                         c.seen_text() + ("; HPACK: " + c.hpack_error if c.hpack_error else ""))
        return R(PASS, "three 200 responses decodable with a 0-octet dynamic table", c.seen_text())


# ---- 6.7 PING -------------------------------------------------------------------------------

@case("6.7/1", "PING -> PING ACK with the same payload")
def _(t):
    with conn(t) as c:
        ok, why = still_alive(c)
        return R(PASS if ok else FAIL, "PING ACK echoing the payload", c.seen_text())


@case("6.7/2", "a PING with ACK is not answered")
def _(t):
    with conn(t) as c:
        c.send(ping(b"ackackac", ack=True), ping(b"realping"))
        exp = "the only PING ACK is the one for 'realping'"
        for f in c.frames():
            if f in (CLOSED, TIMEOUT) or f.type == GOAWAY:
                break
            if f.type == PING:
                ok = "ACK" in f.flags and bytes(f.opaque_data) == b"realping"
                return R(PASS if ok else FAIL, exp, c.seen_text())
        return R(FAIL, exp, c.seen_text())


@case("6.7/3", "PING on stream 1 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(ping(b"stream 1", sid=1))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.7/4", "PING of 6 octets -> GOAWAY(FRAME_SIZE_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(frame(PING, 0, 0, b"sixsix"))
        return conn_error(c, FRAME_SIZE_ERROR)


# ---- 6.8 GOAWAY -----------------------------------------------------------------------------

@case("6.8/1", "GOAWAY on stream 1 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(frame(GOAWAY, 0, 1, struct.pack(">II", 0, NO_ERROR)))
        return conn_error(c, PROTOCOL_ERROR)


def goaway_from_client(t, code):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/delay?ms=200")), goaway(0, code, b"client leaving"))
        res = response(c, 1)
        exp = "the request in flight still answered (200); no error GOAWAY in return"
        bad = [s for s in c.seen if s.startswith("GOAWAY") and "NO_ERROR" not in s]
        if bad:
            return R(FAIL, exp, c.seen_text())
        if res.status == 200 and res.ended:
            return R(PASS, exp, c.seen_text())
        if res.error in ("connection closed",) or (res.error or "").startswith("GOAWAY"):
            return R(WARN, exp, c.seen_text(), "the server dropped the request in flight when the client sent GOAWAY")
        return R(FAIL, exp, c.seen_text())


@case("6.8/2", "GOAWAY(NO_ERROR) from the client with a request in flight")
def _(t):
    return goaway_from_client(t, NO_ERROR)


# ---- 6.9 WINDOW_UPDATE ----------------------------------------------------------------------

@case("6.9/1", "WINDOW_UPDATE of 0 on the connection -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(window_update(0, 0))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.9/2", "WINDOW_UPDATE of 0 on an open stream -> RST_STREAM(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo")
        c.send(window_update(1, 0))
        return stream_error(c, 1, (PROTOCOL_ERROR,))


@case("6.9/3", "WINDOW_UPDATE of 3 octets -> GOAWAY(FRAME_SIZE_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(frame(WINDOW_UPDATE, 0, 0, b"\0\0\x01"))
        return conn_error(c, FRAME_SIZE_ERROR)


@case("6.9.1/1", "SETTINGS_INITIAL_WINDOW_SIZE = 1: DATA comes 1 octet at a time")
def _(t):
    with conn(t, [(INITIAL_WINDOW_SIZE, 1)]) as c:
        c.auto_window = False
        c.send(headers(1, t.req("GET", "/1k")))
        exp = "DATA of 1 octet on stream 1, then nothing until a WINDOW_UPDATE"
        res = response(c, 1, timeout=1.0)
        if res.status == 200 and res.data_frames == [1] and res.error == "timeout":
            c.send(window_update(1, 2))
            res2 = response(c, 1, timeout=1.0)
            if res2.data_total == 3:
                return R(PASS, exp + "; WINDOW_UPDATE(+2) lets exactly 2 more through", c.seen_text())
            return R(FAIL, exp + "; WINDOW_UPDATE(+2) lets exactly 2 more through", c.seen_text())
        return R(FAIL, exp, c.seen_text())


@case("6.9.1/2", "WINDOW_UPDATE taking the connection window past 2^31-1 -> GOAWAY(FLOW_CONTROL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(window_update(0, 0x7FFFFFFF))
        return conn_error(c, FLOW_CONTROL_ERROR)


@case("6.9.1/3", "WINDOW_UPDATE taking a stream window past 2^31-1 -> RST_STREAM(FLOW_CONTROL_ERROR)")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo")
        c.send(window_update(1, 0x7FFFFFFF))
        return stream_error(c, 1, (FLOW_CONTROL_ERROR,))


@case("6.9.2/1", "SETTINGS_INITIAL_WINDOW_SIZE raised after HEADERS: DATA follows")
def _(t):
    with conn(t, [(INITIAL_WINDOW_SIZE, 0)]) as c:
        c.auto_window = False
        c.send(headers(1, t.req("GET", "/1k")))
        res = response(c, 1, timeout=0.7)
        exp = "no DATA at window 0; after SETTINGS_INITIAL_WINDOW_SIZE=1, DATA of 1 octet"
        if res.data_total > 0:
            return R(FAIL, exp, c.seen_text())
        c.send(settings([(INITIAL_WINDOW_SIZE, 1)]))
        res = response(c, 1, timeout=1.0)
        if res.data_total == 1:
            return R(PASS, exp, c.seen_text())
        return R(FAIL, exp, c.seen_text())


@case("6.9.2/2", "SETTINGS_INITIAL_WINDOW_SIZE lowered below what was sent: a negative window is respected")
def _(t):
    with conn(t, [(INITIAL_WINDOW_SIZE, 3)]) as c:
        c.auto_window = False
        c.send(headers(1, t.req("GET", "/1k")))
        res = response(c, 1, timeout=0.7)
        exp = "3 octets at window 3; window lowered to 1 (now -2); WINDOW_UPDATE(+3) -> exactly 1 more octet"
        if res.data_total != 3:
            return R(FAIL, exp, c.seen_text())
        c.send(settings([(INITIAL_WINDOW_SIZE, 1)]))
        res = response(c, 1, timeout=0.5)
        if res.data_total != 3:
            return R(FAIL, exp, c.seen_text() + " (DATA while the window is negative)")
        c.send(window_update(1, 3))
        res = response(c, 1, timeout=1.0)
        if res.data_total == 4:
            return R(PASS, exp, c.seen_text())
        return R(FAIL, exp, c.seen_text())


@case("6.9.2/3", "SETTINGS_INITIAL_WINDOW_SIZE change overflowing an open stream's window -> GOAWAY(FLOW_CONTROL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/delay?ms=1500")))
        c.send(window_update(1, 0x7FFFFFFF - 65535))
        c.send(settings([(INITIAL_WINDOW_SIZE, 65536)]))
        return conn_error(c, FLOW_CONTROL_ERROR)


# ---- 6.10 CONTINUATION ----------------------------------------------------------------------

@case("6.10/1", "HEADERS + several CONTINUATION frames (split mid-field) -> 200")
def _(t):
    with conn(t) as c:
        blk = t.req("GET", "/1k", extra=[("x-long", "v" * 300)])
        a, b, d = len(blk) // 4, len(blk) // 2, 3 * len(blk) // 4
        c.send(headers(1, blk[:a], end_headers=False), continuation(1, blk[a:b], end_headers=False),
               continuation(1, blk[b:d], end_headers=False), continuation(1, blk[d:]))
        return expect_200(c, 1, body_len=1024)


@case("6.10/2", "CONTINUATION followed by DATA before END_HEADERS -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        blk = t.req("POST", "/echo")
        c.send(headers(1, blk[:4], end_stream=False, end_headers=False), continuation(1, blk[4:8], end_headers=False),
               data(1, b"x", end_stream=True))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.10/3", "CONTINUATION on stream 0 -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        blk = t.req("GET", "/")
        c.send(headers(1, blk[:5], end_headers=False), continuation(0, blk[5:]))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.10/4", "CONTINUATION after HEADERS with END_HEADERS -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("POST", "/echo"), end_stream=False), continuation(1, block([("x-more", "1")])))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.10/5", "CONTINUATION after a CONTINUATION with END_HEADERS -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        blk = t.req("POST", "/echo")
        c.send(headers(1, blk[:5], end_stream=False, end_headers=False), continuation(1, blk[5:]),
               continuation(1, block([("x-more", "1")])))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.10/6", "CONTINUATION after DATA -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo")
        c.send(data(1, b"x"), continuation(1, block([("x-more", "1")])))
        return conn_error(c, PROTOCOL_ERROR)


@case("6.10/7", "CONTINUATION on another stream than its HEADERS -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        blk = t.req("GET", "/")
        c.send(headers(1, blk[:5], end_headers=False), continuation(3, blk[5:]))
        return conn_error(c, PROTOCOL_ERROR)


# ---- 7 error codes --------------------------------------------------------------------------

@case("7/1", "GOAWAY with an unknown error code from the client causes nothing special")
def _(t):
    return goaway_from_client(t, 0xFE)


@case("7/2", "RST_STREAM with an unknown error code: the stream closes, the connection carries on")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo")
        c.send(rst_stream(1, 0xFE))
        return ignored(c)


# ---- 8.1 HTTP message framing ---------------------------------------------------------------

@case("8.1/1", "a second HEADERS without END_STREAM (not trailers) -> malformed")
def _(t):
    with conn(t) as c:
        cid = "8.1/1"
        open_post(c, t, 1, "/echo?case=%s" % tag(cid))
        c.send(headers(1, block([("x-second", "1")]), end_stream=False))
        return malformed(c, 1, t, cid, complete_only=True)


@case("8.1/2", "POST with a body and trailers -> 200, body intact")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo")
        c.send(data(1, b"body with trailers"), headers(1, block([("x-checksum", "abc")]), end_stream=True))
        return expect_200(c, 1, body=b"body with trailers")


@case("8.1/3", "trailers with a pseudo-header field -> malformed")
def _(t):
    with conn(t) as c:
        cid = "8.1/3"
        open_post(c, t, 1, "/echo?case=%s" % tag(cid))
        c.send(data(1, b"x"), headers(1, block([(":path", "/other")]), end_stream=True))
        return malformed(c, 1, t, cid, complete_only=True)


def cl_case(cid, cl, frames_fn):
    def fn(t):
        with conn(t) as c:
            open_post(c, t, 1, "/echo?case=%s" % tag(cid), extra=[("content-length", cl)])
            c.send(*frames_fn())
            return malformed(c, 1, t, cid, complete_only=True)
    return fn


case("8.1.1/1", "content-length 4, one DATA of 8 octets -> malformed, not forwarded complete")(
    cl_case("8.1.1/1", "4", lambda: [data(1, b"abcdefgh", end_stream=True)]))
case("8.1.1/2", "content-length 8, DATA of 4 + 2 octets then END_STREAM -> malformed")(
    cl_case("8.1.1/2", "8", lambda: [data(1, b"abcd"), data(1, b"ef", end_stream=True)]))
case("8.1.1/3", "content-length 4, DATA of 2 + 4 octets -> malformed")(
    cl_case("8.1.1/3", "4", lambda: [data(1, b"ab"), data(1, b"cdef", end_stream=True)]))


@case("8.1.1/4", "content-length 5 on HEADERS with END_STREAM (no body) -> malformed")
def _(t):
    with conn(t) as c:
        cid = "8.1.1/4"
        c.send(headers(1, t.req("POST", "/echo?case=%s" % tag(cid), extra=[("content-length", "5")])))
        return malformed(c, 1, t, cid, complete_only=True)


@case("8.1.1/5", "content-length that is not a number -> malformed")
def _(t):
    with conn(t) as c:
        cid = "8.1.1/5"
        open_post(c, t, 1, "/echo?case=%s" % tag(cid), extra=[("content-length", "4x")])
        c.send(data(1, b"abcd", end_stream=True))
        return malformed(c, 1, t, cid)


@case("8.1.1/6", "two different content-length fields (5 and 6), 5 octets sent -> malformed")
def _(t):
    with conn(t) as c:
        cid = "8.1.1/6"
        open_post(c, t, 1, "/echo?case=%s" % tag(cid), extra=[("content-length", "5"), ("content-length", "6")])
        c.send(data(1, b"abcde", end_stream=True))
        return malformed(c, 1, t, cid)


# ---- 8.2 fields -----------------------------------------------------------------------------

def field_case(cid, extra, method="GET", path="/headers", omit=(), override=None, raw_block=None):
    """A request with `extra` fields (raw bytes allowed) that makes it malformed."""
    def fn(t):
        with conn(t) as c:
            p = "%s?case=%s" % (path, tag(cid))
            if raw_block is not None:
                blk = raw_block(t, p)
            else:
                fields = [f for f in t.request_fields(method, p) if f[0] not in omit]
                if override:
                    fields = override(fields)
                blk = block(fields + list(extra))
            c.send(headers(1, blk))
            return malformed(c, 1, t, cid)
    return fn


MALFORMED_FIELDS = [
    ("8.2/1", "uppercase field name (X-Upper)", [("X-Upper", "1")]),
    ("8.2.1/1", "field name with a space", [("x bad", "1")]),
    ("8.2.1/2", "field name with a colon inside (x:y)", [("x:y", "1")]),
    ("8.2.1/3", "field name with a non-ASCII octet", [(b"x-caf\xe9", "1")]),
    ("8.2.1/4", "field value with NUL", [("x-nul", b"a\x00b")]),
    ("8.2.1/5", "field value with CR LF (header injection)", [("x-inject", b"a\r\nx-injected: 1")]),
    ("8.2.1/6", "field value with a bare LF", [("x-lf", b"a\nb")]),
    ("8.2.1/7", "field value starting with a space", [("x-lead", " value")]),
    ("8.2.1/8", "field value ending with a tab", [("x-trail", "value\t")]),
    ("8.2.1/9", "empty field name", [("", "value")]),
    ("8.2.2/1", "connection-specific field: connection", [("connection", "keep-alive")]),
    ("8.2.2/2", "connection-specific field: keep-alive", [("keep-alive", "timeout=5")]),
    ("8.2.2/3", "connection-specific field: proxy-connection", [("proxy-connection", "keep-alive")]),
    ("8.2.2/4", "connection-specific field: transfer-encoding", [("transfer-encoding", "chunked")]),
    ("8.2.2/5", "connection-specific field: upgrade", [("upgrade", "websocket")]),
    ("8.2.2/6", "te other than trailers (te: gzip)", [("te", "gzip")]),
    ("8.2.2/7", "te: trailers, gzip (a list)", [("te", "trailers, gzip")]),
]
for _cid, _title, _extra in MALFORMED_FIELDS:
    case(_cid, _title + " -> malformed")(field_case(_cid, _extra))


@case("8.2.2/8", "te: trailers is allowed -> 200")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/1k", extra=[("te", "trailers")])))
        return expect_200(c, 1, body_len=1024)


def upstream_fields(res):
    import json
    try:
        d = json.loads(bytes(res.body))
        return d, [(k.lower(), v) for k, v in d["fields"]]
    except (ValueError, KeyError, TypeError):
        return None, None


@case("8.2.3/1", "cookie crumbs reach the HTTP/1.1 upstream as one Cookie field joined by '; '")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/headers", extra=[("cookie", "a=1"), ("x-mid", "m"), ("cookie", "b=2"), ("cookie", "c=3")])))
        res = response(c, 1)
        exp = "upstream sees exactly one Cookie: a=1; b=2; c=3"
        d, fields = upstream_fields(res)
        if res.status != 200 or fields is None:
            return R(FAIL, exp, c.seen_text())
        cookies = [v for k, v in fields if k == "cookie"]
        return R(PASS if cookies == ["a=1; b=2; c=3"] else FAIL, exp, "upstream Cookie fields: %r" % cookies)


# ---- 8.3 pseudo-header fields ---------------------------------------------------------------

PSEUDO = [
    ("8.3/1", "unknown pseudo-header field :foo", dict(extra_first=[(":foo", "bar")])),
    ("8.3/2", "response pseudo-header :status in a request", dict(extra_first=[(":status", "200")])),
    ("8.3/3", "pseudo-header field (:authority) after a regular field", dict(after=True)),
    ("8.3.1/1", "empty :path", dict(set_path="")),
    ("8.3.1/2", ":method omitted", dict(omit=":method")),
    ("8.3.1/3", ":scheme omitted", dict(omit=":scheme")),
    ("8.3.1/4", ":path omitted", dict(omit=":path")),
    ("8.3.1/5", ":method twice", dict(dup=":method")),
    ("8.3.1/6", ":scheme twice", dict(dup=":scheme")),
    ("8.3.1/7", ":path twice", dict(dup=":path")),
    ("8.3.1/8", ":authority twice", dict(dup=":authority")),
    ("8.3.1/9", ":path not starting with '/' (foo)", dict(set_path="foo")),
    ("8.3.1/10", ":path with a space", dict(set_path="/a b")),
    ("8.3.1/11", ":authority with userinfo (user@host)", dict(set_authority="user@HOST")),
    ("8.3.1/15", ":authority with a space", dict(set_authority="HOST x")),
]


def pseudo_case(cid, spec):
    def fn(t):
        with conn(t) as c:
            p = "/headers?case=%s" % tag(cid)
            f = t.request_fields("GET", p)
            if "set_path" in spec:
                # The tag must stay findable when :path itself is the malformed part: put it in a field.
                f = [(k, spec["set_path"] if k == ":path" else v) for k, v in f]
            if "set_authority" in spec:
                f = [(k, spec["set_authority"].replace("HOST", t.authority) if k == ":authority" else v) for k, v in f]
            if "omit" in spec:
                f = [kv for kv in f if kv[0] != spec["omit"]]
            if "dup" in spec:
                f = f + [kv for kv in f if kv[0] == spec["dup"]]
            if "extra_first" in spec:
                f = spec["extra_first"] + f
            if "after" in spec:
                f = [kv for kv in f if kv[0] != ":authority"] + [("x-case", tag(cid))] + [kv for kv in f if kv[0] == ":authority"]
            else:
                f = f + [("x-case", tag(cid))]
            c.send(headers(1, block(f)))
            return malformed(c, 1, t, cid)
    return fn


for _cid, _title, _spec in PSEUDO:
    case(_cid, _title + " -> malformed")(pseudo_case(_cid, _spec))


@case("8.3.1/12", ":authority becomes the upstream Host, exactly once")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/headers")))
        res = response(c, 1)
        d, fields = upstream_fields(res)
        exp = "upstream sees one Host: %s" % t.authority
        if fields is None:
            return R(FAIL, exp, c.seen_text())
        hosts = [v for k, v in fields if k == "host"]
        return R(PASS if hosts == [t.authority] else FAIL, exp, "upstream Host fields: %r" % hosts)


@case("8.3.1/13", "Host differing from :authority: malformed (SHOULD), never two Hosts upstream")
def _(t):
    with conn(t) as c:
        cid = "8.3.1/13"
        c.send(headers(1, t.req("GET", "/headers?case=%s" % tag(cid), extra=[("host", "other.example")])))
        res = response(c, 1)
        exp = "RST_STREAM(PROTOCOL_ERROR) or 4xx (RFC 9113 §8.3.1 SHOULD); if forwarded, exactly one Host"
        if res.reset == PROTOCOL_ERROR or (res.status or 0) >= 400 and (res.status or 0) < 500:
            return R(PASS, exp, c.seen_text())
        if res.status == 200:
            d, fields = upstream_fields(res)
            hosts = [v for k, v in fields or [] if k == "host"]
            if len(hosts) != 1:
                return R(FAIL, exp, "forwarded with Host fields %r" % hosts)
            return R(WARN, exp, c.seen_text() + "; upstream Host %r" % hosts, "forwarded (the RFC says SHOULD treat as malformed)")
        return R(FAIL, exp, c.seen_text())


@case("8.3.1/14", "Host instead of :authority -> forwarded with that Host")
def _(t):
    with conn(t) as c:
        f = [kv for kv in t.request_fields("GET", "/headers") if kv[0] != ":authority"] + [("host", t.authority)]
        c.send(headers(1, block(f)))
        res = response(c, 1)
        d, fields = upstream_fields(res)
        exp = "200; upstream sees one Host: %s" % t.authority
        if fields is None:
            return R(WARN if (res.status or 0) >= 400 else FAIL, exp, c.seen_text())
        hosts = [v for k, v in fields if k == "host"]
        return R(PASS if hosts == [t.authority] else FAIL, exp, "upstream Host fields: %r" % hosts)


# ---- 8.4 server push, 8.5 CONNECT -----------------------------------------------------------

@case("8.4/1", "PUSH_PROMISE from the client -> GOAWAY(PROTOCOL_ERROR)")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/delay?ms=500")))
        c.send(frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 3) + t.req("GET", "/")))
        return conn_error(c, PROTOCOL_ERROR)


@case("8.5/1", "CONNECT with :scheme and :path -> malformed")
def _(t):
    with conn(t) as c:
        c.send(headers(1, block([(":method", "CONNECT"), (":scheme", "http"), (":path", "/"),
                                 (":authority", t.authority)]), end_stream=False))
        return malformed(c, 1)


@case("8.5/2", "CONNECT (well formed) is not tunnelled: a 4xx/5xx or a reset")
def _(t):
    with conn(t) as c:
        c.send(headers(1, block([(":method", "CONNECT"), (":authority", "127.0.0.1:22")]), end_stream=False))
        res = response(c, 1)
        exp = "a 4xx/5xx response or RST_STREAM; never a 2xx"
        if res.reset is not None or (res.status or 0) >= 400:
            return R(PASS, exp, c.seen_text())
        return R(FAIL, exp, c.seen_text())


# ---- HTTP message exchanges -----------------------------------------------------------------

@case("x/1", "GET /1k -> 200 with 1024 octets")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/1k")))
        return expect_200(c, 1, body_len=1024)


@case("x/2", "HEAD -> 200 without a body")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("HEAD", "/1k")))
        res = response(c, 1)
        exp = "200, END_STREAM, no DATA payload"
        ok = res.status == 200 and res.ended and res.data_total == 0
        return R(PASS if ok else FAIL, exp, c.seen_text())


@case("x/3", "POST with content-length -> 200, body echoed")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo", cl=13)
        c.send(data(1, b"hello, upload", end_stream=True))
        return expect_200(c, 1, body=b"hello, upload")


@case("x/4", "POST without content-length (streamed body) -> 200, body echoed")
def _(t):
    with conn(t) as c:
        open_post(c, t, 1, "/echo")
        c.send(data(1, b"streamed "), data(1, b"body", end_stream=True))
        return expect_200(c, 1, body=b"streamed body")


@case("x/5", "1 MiB upload echoed and 1 MiB download, under flow control (h2 library client)")
def _(t):
    body = os.urandom(1 << 20)
    nc = NormalClient(t, timeout=max(t.timeout, 10))
    try:
        st, hd, got = nc.request("POST", "/echo", body=body, extra=[("content-length", str(len(body)))])
        if st != 200 or got != body:
            return R(FAIL, "200 echoing 1 MiB", "status %s, %d B back, equal: %s" % (st, len(got), got == body))
        st, hd, got = nc.request("GET", "/1m")
        if st != 200 or len(got) != 1 << 20:
            return R(FAIL, "GET /1m: 200 with 1048576 B", "status %s, %d B" % (st, len(got)))
        return R(PASS, "1 MiB echoed; 1 MiB downloaded", "ok")
    except Exception as e:
        return R(FAIL, "1 MiB echoed; 1 MiB downloaded", "%s: %s" % (e.__class__.__name__, e))
    finally:
        nc.close()


@case("x/6", "50 concurrent streams on one connection -> 50 x 200")
def _(t):
    with conn(t, timeout=max(t.timeout, 5)) as c:
        n = min(50, c.server_settings.get(MAX_CONCURRENT_STREAMS, 50))
        c.send(b"".join(headers(2 * i + 1, t.req("GET", "/1k")) for i in range(n)), describe=False)
        done, bad = set(), []
        for f in c.frames():
            if f in (CLOSED, TIMEOUT) or f.type == GOAWAY:
                break
            if f.type == RST_STREAM:
                bad.append(describe_frame(f))
            if f.type in (DATA, HEADERS) and "END_STREAM" in f.flags:
                done.add(f.stream_id)
            if len(done) + len(bad) >= n:
                break
        ok = len(done) == n and not bad
        return R(PASS if ok else FAIL, "%d streams completed" % n, "%d completed, %d reset %s" % (len(done), len(bad), bad[:3]))


@case("x/7", "an HTTP/1.1 response's connection-specific fields are not sent on HTTP/2")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/hop")))
        res = response(c, 1)
        exp = ("200 without connection, keep-alive, proxy-connection, transfer-encoding, upgrade, or the field "
               "named in Connection (x-hop-secret); all names lowercase")
        if res.status != 200:
            return R(FAIL, exp, c.seen_text())
        names = list(res.headers)
        bad = [n for n in names if n in ("connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                         "upgrade", "x-hop-secret") or n != n.lower()]
        ok = not bad and bytes(res.body) == b"hop by hop\n"
        return R(PASS if ok else FAIL, exp, "response fields %s; body %r" % (names, bytes(res.body[:30])))


# ---- HPACK representations (RFC 7541) -------------------------------------------------------

def hpack_ok_case(build):
    def fn(t):
        with conn(t) as c:
            c.send(headers(1, build(t, c)))
            return expect_200(c, 1, expected="a 200 response")
    return fn


def table_size(c):
    """The server's SETTINGS_HEADER_TABLE_SIZE: the largest dynamic table our encoder may use."""
    return c.server_settings.get(HEADER_TABLE_SIZE, 4096)


def _base(t, path="/"):
    return hp_indexed(2) + hp_indexed(6) + hp_literal(None, path, name_index=4) + hp_literal(None, t.authority, name_index=1)


HPACK_OK = [
    ("hpack/1", "indexed fields (static :method GET, :scheme http, :path /)",
     lambda t, c: hp_indexed(2) + hp_indexed(6) + hp_indexed(4) + hp_literal(None, t.authority, name_index=1)),
    ("hpack/2", "literal with incremental indexing, indexed name", lambda t, c: _base(t) + hp_literal(None, "a", mode="incremental", name_index=58)),
    ("hpack/3", "literal with incremental indexing, indexed name, Huffman", lambda t, c: _base(t) + hp_literal(None, "agent", mode="incremental", name_index=58, huff=True)),
    ("hpack/4", "literal with incremental indexing, new name", lambda t, c: _base(t) + hp_literal("x-new", "v", mode="incremental")),
    ("hpack/5", "literal with incremental indexing, new name, Huffman", lambda t, c: _base(t) + hp_literal("x-new", "value", mode="incremental", huff=True)),
    ("hpack/6", "literal without indexing, indexed name", lambda t, c: _base(t) + hp_literal(None, "a", mode="without", name_index=58)),
    ("hpack/7", "literal without indexing, indexed name, Huffman", lambda t, c: _base(t) + hp_literal(None, "agent", mode="without", name_index=58, huff=True)),
    ("hpack/8", "literal without indexing, new name", lambda t, c: _base(t) + hp_literal("x-new", "v", mode="without")),
    ("hpack/9", "literal without indexing, new name, Huffman", lambda t, c: _base(t) + hp_literal("x-new", "value", mode="without", huff=True)),
    ("hpack/10", "literal never indexed, indexed name", lambda t, c: _base(t) + hp_literal(None, "a", mode="never", name_index=58)),
    ("hpack/11", "literal never indexed, indexed name, Huffman", lambda t, c: _base(t) + hp_literal(None, "agent", mode="never", name_index=58, huff=True)),
    ("hpack/12", "literal never indexed, new name", lambda t, c: _base(t) + hp_literal("x-new", "v", mode="never")),
    ("hpack/13", "literal never indexed, new name, Huffman", lambda t, c: _base(t) + hp_literal("x-new", "value", mode="never", huff=True)),
    ("hpack/14", "dynamic table size update at the start of the block", lambda t, c: hp_size_update(100) + _base(t)),
    ("hpack/15", "two dynamic table size updates at the start (0, then SETTINGS_HEADER_TABLE_SIZE)", lambda t, c: hp_size_update(0) + hp_size_update(table_size(c)) + _base(t)),
]
for _cid, _title, _build in HPACK_OK:
    case(_cid, _title + " -> 200")(hpack_ok_case(_build))


@case("hpack/16", "a dynamic table entry added on one stream is used on the next")
def _(t):
    with conn(t) as c:
        c.send(headers(1, _base(t, "/headers") + hp_literal("x-dyn", "remembered", mode="incremental")))
        r = expect_200(c, 1)
        if r.status != PASS:
            return r
        c.send(headers(3, _base(t, "/headers") + hp_indexed(62)))
        res = response(c, 3)
        d, fields = upstream_fields(res)
        exp = "stream 3's indexed field 62 reaches the upstream as x-dyn: remembered"
        ok = fields is not None and ("x-dyn", "remembered") in fields
        return R(PASS if ok else FAIL, exp, c.seen_text() + "; upstream fields %r" % (fields,))


# ---- HPACK decoding errors -> COMPRESSION_ERROR ---------------------------------------------

def hpack_err_case(build):
    def fn(t):
        with conn(t) as c:
            c.send(headers(1, build(t, c)))
            return conn_error(c, COMPRESSION_ERROR)
    return fn


def _huff_bits(bits):
    bits += "1" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


HPACK_ERR = [
    ("hpack-err/1", "indexed field with index 0", lambda t, c: _base(t) + hp_indexed(0)),
    ("hpack-err/2", "indexed field beyond the static and (empty) dynamic table (index 70)", lambda t, c: _base(t) + hp_indexed(70)),
    ("hpack-err/3", "literal whose name index is beyond the table (index 70)", lambda t, c: _base(t) + hp_literal(None, "v", name_index=70)),
    ("hpack-err/4", "dynamic table size update above SETTINGS_HEADER_TABLE_SIZE", lambda t, c: hp_size_update(table_size(c) + 1) + _base(t)),
    ("hpack-err/5", "dynamic table size update after a field representation", lambda t, c: _base(t) + hp_size_update(0)),
    ("hpack-err/6", "Huffman string with more than 7 bits of padding", lambda t, c: _base(t) + b"\x00" + hp_str("x-h", raw=huffman(b"x-h") + b"\xff", huff=True) + hp_str("v")),
    ("hpack-err/7", "Huffman string padded with zeros (not the EOS prefix)", lambda t, c: _base(t) + b"\x00" + hp_str("x", raw=_huff_bits("00011000")[:1], huff=True) + hp_str("v")),
    ("hpack-err/8", "Huffman string containing EOS", lambda t, c: _base(t) + b"\x00\x03x-e" + hp_str("", raw=_huff_bits("00011" + "1" * 30), huff=True)),
    ("hpack-err/9", "integer that overflows (index with 10 continuation octets)", lambda t, c: _base(t) + b"\xff" + b"\xff" * 10 + b"\x01"),
    ("hpack-err/10", "field block ending inside a string literal", lambda t, c: _base(t) + b"\x00\x05x-bad\x7f\x10abc"),
]
for _cid, _title, _build in HPACK_ERR:
    case(_cid, _title + " -> GOAWAY(COMPRESSION_ERROR)")(hpack_err_case(_build))


# ---- large field sections -------------------------------------------------------------------

@case("10.5.1/1", "a header list larger than SETTINGS_MAX_HEADER_LIST_SIZE -> 431 or RST_STREAM; the connection survives")
def _(t):
    with conn(t) as c:
        limit = c.server_settings.get(MAX_HEADER_LIST_SIZE)
        if limit is None or limit > 256 * 1024:
            return R(SKIP, "", "", "the server advertises no (small) SETTINGS_MAX_HEADER_LIST_SIZE")
        cid = "10.5.1/1"
        n = (limit + 4096) // 1000 + 1
        fields = t.request_fields("GET", "/headers?case=%s" % tag(cid)) + [("x-big-%02d" % i, "b" * 960) for i in range(n)]
        blk = block(fields)
        mf = max_frame(c)
        parts = [blk[i:i + mf] for i in range(0, len(blk), mf)]
        out = [headers(1, parts[0], end_headers=len(parts) == 1)]
        out += [continuation(1, p, end_headers=(i == len(parts) - 2)) for i, p in enumerate(parts[1:])]
        c.send(*out)
        exp = "a 431 (or 4xx) response or RST_STREAM on stream 1 (~%d B list, limit %d); connection usable" % (n * 1000, limit)
        res = response(c, 1)
        if res.status is not None and 400 <= res.status < 500 or res.reset is not None:
            ok, why = still_alive(c)
            r = R(PASS if ok else FAIL, exp, c.seen_text() + ("" if ok else "; then " + why),
                  "answered %s" % (res.status if res.status else "RST_STREAM(%s)" % err_name(res.reset)))
            return _not_forwarded(t, cid, r)
        if res.error and res.error.startswith("GOAWAY"):
            return R(WARN, exp, c.seen_text(), "a connection error")
        return R(FAIL, exp, c.seen_text())


# ---- Ringway-specific -----------------------------------------------------------------------

@case("ringway/1", "the server SETTINGS carry the configured limits (defaults)", only="ringway")
def _(t):
    with Conn(t) as c:
        c.send(PREFACE, settings())
        conn_window = 65535
        deadline = time.monotonic() + t.timeout
        st = None
        while time.monotonic() < deadline:
            f = c.read(max(0.3, deadline - time.monotonic()) if st is None else 0.3)
            if f in (CLOSED, TIMEOUT):
                break
            if f.type == SETTINGS and "ACK" not in f.flags:
                st = dict(f.settings)
            if f.type == WINDOW_UPDATE and f.stream_id == 0:
                conn_window += f.window_increment
        want = {MAX_CONCURRENT_STREAMS: EXPECT["streams"], INITIAL_WINDOW_SIZE: EXPECT["stream_window"],
                MAX_HEADER_LIST_SIZE: EXPECT["header_list"]}
        exp = "MAX_CONCURRENT_STREAMS=%d, INITIAL_WINDOW_SIZE=%d, MAX_HEADER_LIST_SIZE=%d, connection window %d" % (
            want[MAX_CONCURRENT_STREAMS], want[INITIAL_WINDOW_SIZE], want[MAX_HEADER_LIST_SIZE], EXPECT["conn_window"])
        ok = st is not None and all(st.get(k) == v for k, v in want.items()) and conn_window == EXPECT["conn_window"]
        return R(PASS if ok else FAIL, exp, c.seen_text() + "; connection window %d" % conn_window)


@case("ringway/2", "HTTP/1.1 on the same port as h2c", only="ringway")
def _(t):
    got, closed = raw_exchange(t, ("GET /1k HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % t.authority).encode())
    line = got.split(b"\r\n", 1)[0]
    return R(PASS if line.startswith(b"HTTP/1.1 200") else FAIL, "HTTP/1.1 200", repr(line[:60]))


@case("ringway/3", "more than 100 request fields -> 431, as for HTTP/1", only="ringway")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/1k", extra=[("x-f%03d" % i, "v") for i in range(101)])))
        res = response(c, 1)
        exp = "431 on stream 1; connection usable"
        ok = res.status == 431 and still_alive(c)[0]
        return R(PASS if ok else FAIL, exp, c.seen_text())


@case("ringway/4", ":path over max_uri_bytes (8k) -> 414, as for HTTP/1", only="ringway")
def _(t):
    with conn(t) as c:
        c.send(headers(1, t.req("GET", "/" + "u" * 9000)))
        res = response(c, 1)
        exp = "414 on stream 1; connection usable"
        ok = res.status == 414 and still_alive(c)[0]
        return R(PASS if ok else FAIL, exp, c.seen_text())


EXPECT = {"streams": 128, "stream_window": 256 * 1024, "header_list": 16 * 1024, "conn_window": 1 << 20}


# ---- runner ---------------------------------------------------------------------------------

class KnownFileError(Exception):
    pass


def load_known(path, ids):
    """{case id: (answer, why)} from the --known file; KnownFileError on a malformed line, an
    unknown case id or an id listed twice."""
    known = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 3:
                raise KnownFileError("%s:%d: expected `ID  ANSWER  why`, got %r" % (path, n, line))
            cid, answer, why = parts
            if cid not in ids:
                raise KnownFileError("%s:%d: no case %s" % (path, n, cid))
            if cid in known:
                raise KnownFileError("%s:%d: case %s listed twice" % (path, n, cid))
            known[cid] = (answer, why)
    return known


def apply_known(cid, r, known):
    """Turns a FAIL whose answer is exactly the listed one into KNOWN, a listed case that passes
    into XPASS; notes the listing on anything else."""
    if cid not in known:
        return r
    answer, why = known[cid]
    if r.status == FAIL and r.answer == answer:
        r.status = KNOWN
        r.note = (r.note + "; " if r.note else "") + "known deviation: " + why
    elif r.status == PASS:
        r.status = XPASS
        r.note = (r.note + "; " if r.note else "") + "listed as a known deviation (%s) but passes now: " \
                                                      "drop it from the list" % answer
    else:
        r.note = (r.note + "; " if r.note else "") + "listed as a known deviation answered %s; answered %s now" % (
            answer, r.answer or "(no answer the list can name)")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int)
    ap.add_argument("--target", default="ringway", choices=("ringway", "nginx"))
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--only", default="", help="comma-separated substrings of case ids or titles")
    ap.add_argument("--strict", action="store_true", help="count WARN as a failure")
    ap.add_argument("--known", help="the known-deviations file (see the module doc)")
    ap.add_argument("--verbose", action="store_true", help="print expected/seen for passing cases too")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    t = Target(a.host, a.port, a.upstream_port, a.target, timeout=a.timeout)
    sel = [x for x in a.only.split(",") if x]
    known = {}
    if a.known:
        try:
            known = load_known(a.known, {cid for cid, _, _, _ in CASES})
        except (OSError, KnownFileError) as e:
            print("conformance: the known-deviations file: %s" % e, file=sys.stderr)
            return 2
    counts = {PASS: 0, WARN: 0, KNOWN: 0, XPASS: 0, FAIL: 0, SKIP: 0}
    failures = []
    start = time.monotonic()
    for cid, title, fn, only in CASES:
        if sel and not any(s in cid or s.lower() in title.lower() for s in sel):
            continue
        if a.list:
            print("%-12s %s" % (cid, title))
            continue
        t0 = time.monotonic()
        clear_conns()
        if only and only != a.target:
            r = R(SKIP, "", "", "%s only" % only)
        else:
            try:
                r = fn(t)
            except HandshakeError as e:
                r = R(FAIL, "a handshake", str(e))
            except Exception as e:
                r = R(FAIL, "no exception in the test", "%s: %s" % (e.__class__.__name__, e),
                      traceback.format_exc(limit=3).strip().splitlines()[-2].strip())
        ms = (time.monotonic() - t0) * 1000
        r = apply_known(cid, r, known)
        counts[r.status] += 1
        line = "%-5s %-12s %s  (%d ms)" % (r.status, cid, title, ms)
        if r.note:
            line += "\n       note: " + r.note
        if r.status in (FAIL, WARN, KNOWN, XPASS) or a.verbose:
            line += "\n       expected: %s\n       seen:     %s" % (r.expected, r.seen)
            if r.answer is not None and r.status != PASS:
                line += "\n       answer:   %s" % r.answer
            for i, cn in enumerate(CONNS):
                if cn.sent:
                    label = "sent#%d:" % (i + 1) if len(CONNS) > 1 else "sent:"
                    line += "\n       %-10s%s" % (label, cn.sent_text(14))
        print(line, flush=True)
        if r.status == FAIL or (a.strict and r.status == WARN):
            failures.append(cid)
    if a.list:
        return 0
    total = sum(counts.values())
    print("conformance (%s): %d cases in %.1f s: %d PASS, %d WARN, %d KNOWN, %d XPASS, %d FAIL, %d SKIP" % (
        a.target, total, time.monotonic() - start, counts[PASS], counts[WARN], counts[KNOWN], counts[XPASS],
        counts[FAIL], counts[SKIP]))
    print("counts: " + " ".join("%s=%d" % kv for kv in counts.items()))
    if failures:
        print("conformance: failed: %s" % " ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
