#!/usr/bin/env python3
"""Differential framing test: Ringway's request framing against h11's.

Builds a corpus of clearly valid request streams (single requests of several methods, bodies
with Content-Length and chunked with extensions and trailers, pipelined pairs, HTTP/1.0
keep-alive) and a deterministic set of mutations of them (byte flips, inserted CR, LF, SP, HTAB,
NUL, deleted bytes, duplicated or folded header lines, Content-Length and Transfer-Encoding
combinations, case changes, changed chunk sizes, truncation), runs all of them through Ringway's
`framing` example (one process) and through h11 (in this process), and compares.

Each side reports the requests it framed (method, target, body length) and where it stopped:
at the end of the stream, at an incomplete message, after a request that closes the connection
or switches protocols, or at a refusal. The outcome of each stream falls into one category:

FAIL (exit status 1):
  framing-differs        both framed a request at the same position differently, or one side
                         completed a request the other still wants bytes for: where Ringway
                         accepted, a peer would see different message boundaries.
  corpus-refused         Ringway refused, or did not finish framing, a request of the corpus of
                         valid ones (so a parser that refuses everything cannot pass).
  corpus-not-valid       h11 disagrees with the expected framing of a corpus stream (the corpus,
                         not Ringway, is wrong).

WARN (printed, not a failure):
  ringway-accepts-h11-rejects   Ringway framed a request h11 refuses. Not a failure because h11
                                is stricter than RFC 9112 in places where Ringway follows the
                                RFC (an empty line before a request line) and because a refusal
                                by h11 says nothing about where another parser would cut the
                                stream; each sub-category is printed so a new kind stands out.
  persistence-differs           Ringway keeps reading requests after one h11 would close on
                                (h11 has no HTTP/1.0 keep-alive; that case is emulated).

INFO (counted only):
  ringway-stricter        Ringway refuses what h11 accepts (bare LF, obs-fold, CL with TE, ...).
  ringway-stops-earlier   Ringway stops where h11 goes on (closes or waits for more bytes).
  h11-paused              h11 stops at a request that proposes an upgrade; nothing to compare.
  agree                   same requests, same end.
"""

import argparse
import json
import os
import random
import subprocess
import sys
from collections import OrderedDict

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h11_frame  # noqa: E402

FAIL = ("framing-differs", "corpus-refused", "corpus-not-valid")
WARN = ("ringway-accepts-h11-rejects", "persistence-differs")


def corpus():
    """(name, stream, expected [(method, target, body_len)]) of clearly valid streams."""
    out = []

    def add(name, stream, expected):
        out.append((name, stream if isinstance(stream, bytes) else stream.encode(), expected))

    h = "Host: example.test\r\n"
    add("get", f"GET / HTTP/1.1\r\n{h}\r\n", [("GET", "/", 0)])
    add("get-query", f"GET /search?q=a%20b&x=1 HTTP/1.1\r\n{h}\r\n", [("GET", "/search?q=a%20b&x=1", 0)])
    add(
        "get-headers",
        f"GET /a/b/c HTTP/1.1\r\n{h}User-Agent: diff/1.0\r\nAccept: text/html, */*;q=0.8\r\n"
        "Accept-Encoding: gzip\r\nCookie: a=1; b=2\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n",
        [("GET", "/a/b/c", 0)],
    )
    add("get-port", "GET /p HTTP/1.1\r\nHost: example.test:8080\r\n\r\n", [("GET", "/p", 0)])
    add("get-ipv6", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", [("GET", "/", 0)])
    add("get-absolute", "GET http://example.test/x?y=1 HTTP/1.1\r\nHost: example.test\r\n\r\n",
        [("GET", "http://example.test/x?y=1", 0)])
    add("head", f"HEAD /index.html HTTP/1.1\r\n{h}\r\n", [("HEAD", "/index.html", 0)])
    add("delete", f"DELETE /item/7 HTTP/1.1\r\n{h}\r\n", [("DELETE", "/item/7", 0)])
    add("options-star", f"OPTIONS * HTTP/1.1\r\n{h}\r\n", [("OPTIONS", "*", 0)])
    add("options-path", f"OPTIONS /x HTTP/1.1\r\n{h}\r\n", [("OPTIONS", "/x", 0)])
    add("custom-method", f"PROPFIND /dav HTTP/1.1\r\n{h}Depth: 1\r\n\r\n", [("PROPFIND", "/dav", 0)])
    add("get-cl0", f"GET / HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n", [("GET", "/", 0)])
    add("post-cl", f"POST /form HTTP/1.1\r\n{h}Content-Length: 5\r\n\r\nhello", [("POST", "/form", 5)])
    add("post-cl0", f"POST /empty HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n", [("POST", "/empty", 0)])
    add("post-cl-binary", f"POST /bin HTTP/1.1\r\n{h}Content-Length: 8\r\n\r\n".encode() + b"\r\n\x00\xff\r\n\n\r",
        [("POST", "/bin", 8)])
    add("post-cl-looks-like-request", f"POST /x HTTP/1.1\r\n{h}Content-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        [("POST", "/x", 35)])
    add("put-cl", f"PUT /f HTTP/1.1\r\n{h}Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
        [("PUT", "/f", 11)])
    add("patch-cl", f"PATCH /f HTTP/1.1\r\n{h}Content-Length: 2\r\n\r\n{{}}", [("PATCH", "/f", 2)])
    add("expect-continue", f"PUT /big HTTP/1.1\r\n{h}Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        [("PUT", "/big", 3)])
    add("chunked", f"POST /c HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        [("POST", "/c", 5)])
    add("chunked-empty", f"POST /c HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [("POST", "/c", 0)])
    add("chunked-multi", f"PUT /c HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n"
        "E\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n", [("PUT", "/c", 23)])
    add("chunked-ext", f"POST /c HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n"
        "6;a;b=c\r\n world\r\n0;end\r\n\r\n", [("POST", "/c", 11)])
    add("chunked-trailers", f"POST /c HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        "3\r\nabc\r\n0\r\nX-Sum: 42\r\nExpires: never\r\n\r\n", [("POST", "/c", 3)])
    add("chunked-upper-hex", f"POST /c HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n"
        "0\r\n\r\n", [("POST", "/c", 10)])
    add("chunked-leading-zeros", f"POST /c HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n0003\r\nabc\r\n"
        "00\r\n\r\n", [("POST", "/c", 3)])
    add("chunked-case", f"POST /c HTTP/1.1\r\n{h}transfer-encoding: Chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        [("POST", "/c", 1)])
    add("chunked-crlf-data", f"POST /c HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n4\r\n\r\n\r\n\r\n0\r\n\r\n",
        [("POST", "/c", 4)])
    add("close", f"GET /last HTTP/1.1\r\n{h}Connection: close\r\n\r\n", [("GET", "/last", 0)])
    add("keep-alive-explicit", f"GET / HTTP/1.1\r\n{h}Connection: keep-alive\r\n\r\n", [("GET", "/", 0)])
    add("http10", "GET /old HTTP/1.0\r\n\r\n", [("GET", "/old", 0)])
    add("http10-host", f"GET /old HTTP/1.0\r\n{h}User-Agent: x\r\n\r\n", [("GET", "/old", 0)])
    add("http10-post", "POST /f HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", [("POST", "/f", 3)])
    add("http10-keep-alive-pair", "GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        "GET /2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", [("GET", "/1", 0), ("GET", "/2", 0)])
    add("http10-keep-alive-post", "POST /1 HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nab"
        "GET /2 HTTP/1.0\r\n\r\n", [("POST", "/1", 2), ("GET", "/2", 0)])
    add("pipelined-gets", f"GET /1 HTTP/1.1\r\n{h}\r\nGET /2 HTTP/1.1\r\n{h}\r\n", [("GET", "/1", 0), ("GET", "/2", 0)])
    add("pipelined-head-get", f"HEAD /1 HTTP/1.1\r\n{h}\r\nGET /2 HTTP/1.1\r\n{h}\r\n",
        [("HEAD", "/1", 0), ("GET", "/2", 0)])
    add("pipelined-cl-get", f"POST /1 HTTP/1.1\r\n{h}Content-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\n{h}\r\n",
        [("POST", "/1", 3), ("GET", "/2", 0)])
    add("pipelined-chunked-get", f"POST /1 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        f"GET /2 HTTP/1.1\r\n{h}\r\n", [("POST", "/1", 3), ("GET", "/2", 0)])
    add("pipelined-chunked-chunked", f"PUT /1 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
        f"PUT /2 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n2;x=y\r\nbc\r\n0\r\nT: 1\r\n\r\n",
        [("PUT", "/1", 1), ("PUT", "/2", 2)])
    add("pipelined-then-close", f"GET /1 HTTP/1.1\r\n{h}\r\nGET /2 HTTP/1.1\r\n{h}Connection: close\r\n\r\n",
        [("GET", "/1", 0), ("GET", "/2", 0)])
    add("pipelined-three", f"GET /1 HTTP/1.1\r\n{h}\r\nPOST /2 HTTP/1.1\r\n{h}Content-Length: 1\r\n\r\nx"
        f"DELETE /3 HTTP/1.1\r\n{h}\r\n", [("GET", "/1", 0), ("POST", "/2", 1), ("DELETE", "/3", 0)])
    add("cl-list-same", f"POST / HTTP/1.1\r\n{h}Content-Length: 3, 3\r\n\r\nabc", [("POST", "/", 3)])
    add("long-header", f"GET / HTTP/1.1\r\n{h}X-Long: {'v' * 3000}\r\n\r\n", [("GET", "/", 0)])
    add("many-headers", f"GET / HTTP/1.1\r\n{h}" + "".join(f"X-H{i}: {i}\r\n" for i in range(60)) + "\r\n",
        [("GET", "/", 0)])
    add("obs-text-value", f"GET / HTTP/1.1\r\n{h}X-Name: caf\xe9\r\n\r\n".encode("latin-1"), [("GET", "/", 0)])
    return out


# Header lines that decide framing, for the Content-Length / Transfer-Encoding combinations.
FRAMING_LINES = [
    b"Content-Length: 5", b"Content-Length: 0", b"Content-Length: 17", b"Content-Length: 5, 5",
    b"Content-Length: 5, 6", b"Content-Length:5", b"Content-Length: 05", b"Content-Length: +5",
    b"Content-Length: -1", b"Content-Length: 0x5", b"Content-Length: 5 ", b"Content-Length:\t5",
    b"Content-Length: 99999999999999999999", b"content-length: 5", b"Content-Length : 5",
    b"Content-Length\t: 5", b" Content-Length: 5", b"Content-Length: 5\x00",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: Chunked", b"Transfer-Encoding: chunked ",
    b"Transfer-Encoding:chunked", b"Transfer-Encoding: identity", b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, identity", b"Transfer-Encoding: chunked, chunked",
    b"Transfer-Encoding: xchunked", b"Transfer-Encoding: chunked;q=1", b"Transfer-Encoding: \x0bchunked",
    b"Transfer-Encoding : chunked", b"Transfer-Encoding:\tchunked", b"Transfer-Encoding: ,chunked",
    b"Transfer-Encoding: \"chunked\"", b"Transfer-Encoding:", b" Transfer-Encoding: chunked",
    b"Transfer-Encoding\r\n : chunked", b"Transfer_Encoding: chunked", b"Connection: close",
    b"Connection: keep-alive", b"Connection: Upgrade", b"Upgrade: websocket", b"Expect: 100-continue",
    b"Connection: content-length", b"Host: other.test", b"Content-Length: 5\r\nContent-Length: 5",
]

BODIES = [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"hello",
    b"0\r\n\r\n",
    b"11\r\nGET /x HTTP/1.1\r\n\r\n0\r\n\r\n",
    b"3\r\nabc\r\n0\r\nTrailer: x\r\n\r\n",
]

INTERESTING = b"\r\n \t\x00\x0b\x0c:;,=\"0123456789abcdefABCDEFxX-+/\\%.?#@\x7f\x80\xff"


def framing_combo(rng):
    """A POST with one to three framing lines, a body, and a pipelined GET after it."""
    lines = [b"Host: example.test"] + [rng.choice(FRAMING_LINES) for _ in range(rng.randint(1, 3))]
    rng.shuffle(lines)
    version = rng.choice([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"])
    head = b"POST /c " + version + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    tail = b"GET /next HTTP/1.1\r\nHost: example.test\r\n\r\n" if rng.random() < 0.7 else b""
    return head + rng.choice(BODIES) + tail


def mutate(rng, stream):
    """Applies one to three mutations, chosen by `rng`, to `stream`."""
    s = bytearray(stream)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(12)
        pos = rng.randrange(len(s) + 1) if s else 0
        line_ends = [i for i in range(len(s) - 1) if s[i:i + 2] == b"\r\n"]
        if op == 0 and s:  # flip a byte to something interesting
            s[min(pos, len(s) - 1)] = rng.choice(INTERESTING)
        elif op == 1 and s:  # flip a byte to anything
            s[min(pos, len(s) - 1)] = rng.randrange(256)
        elif op == 2:  # insert a separator or control byte
            s[pos:pos] = bytes([rng.choice(b"\r\n \t\x00")])
        elif op == 3 and s:  # delete a few bytes
            del s[pos:pos + rng.randint(1, 3)]
        elif op == 4 and len(line_ends) > 2:  # duplicate a header line
            i = rng.randrange(len(line_ends) - 2)
            a, b = line_ends[i] + 2, line_ends[i + 1] + 2
            s[b:b] = s[a:b]
        elif op == 5 and line_ends:  # a CRLF becomes a bare LF or a bare CR
            i = rng.choice(line_ends)
            s[i:i + 2] = rng.choice([b"\n", b"\r", b"\n\r", b"\r\r\n"])
        elif op == 6 and line_ends:  # insert a framing line after some line
            i = rng.choice(line_ends) + 2
            s[i:i] = rng.choice(FRAMING_LINES) + b"\r\n"
        elif op == 7 and s:  # change the case of a run
            end = min(len(s), pos + rng.randint(1, 12))
            run = bytes(s[pos:end])
            s[pos:end] = run.upper() if rng.random() < 0.5 else run.swapcase()
        elif op == 8 and line_ends:  # fold a line (obs-fold) or add whitespace around a colon
            i = rng.choice(line_ends)
            s[i:i + 2] = rng.choice([b"\r\n ", b"\r\n\t", b" \r\n", b"\t\r\n"])
        elif op == 9:  # rewrite a chunk-size line
            hexpos = [i for i in line_ends if i > 0 and chr(s[i - 1]) in "0123456789abcdefABCDEF"]
            if hexpos:
                i = rng.choice(hexpos)
                s[i:i] = rng.choice([b" ", b"\t", b";", b";x", b"0", b"f", b"\x00", b"ffffffffffffffffff"])
        elif op == 10 and s:  # truncate
            del s[pos:]
        elif op == 11:  # append another corpus-like request
            s += rng.choice([b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", b"\r\n", b"G", b"0\r\n\r\n"])
    return bytes(s)


def run_ringway(binary, streams):
    data = "".join(s.hex() + "\n" for s in streams)
    proc = subprocess.run([binary], input=data.encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"run.py: {binary} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    lines = proc.stdout.decode().splitlines()
    if len(lines) != len(streams):
        sys.exit(f"run.py: {binary} answered {len(lines)} lines for {len(streams)} streams")
    return [json.loads(line) for line in lines]


def end_of(result):
    if not result["ok"]:
        return "error"
    for key in ("incomplete", "closed", "paused"):
        if result[key]:
            return key
    return "complete"


def key(message):
    """What both sides must agree on for one request."""
    return (message["method"], message["target"], message["body_len"])


def accepts_what(r, h):
    """Why h11 refused a request Ringway framed: a short, stable sub-category."""
    error = h["error"]
    framed = r["messages"][len(h["messages"])]
    if "no request line received" in error:
        return "empty line before a request line (RFC 9112 2.2: a server SHOULD ignore it)"
    if "conflicting Content-Length" in error:
        return "equal Content-Length values spelled differently (05 / 5)"
    if framed.get("chunked"):
        return "chunked trailer section h11 refuses (not field lines, or framing fields)"
    return error


def judge(r, h):
    """The category of one stream's pair of outcomes, and a short reason."""
    rm, hm = r["messages"], h["messages"]
    for i in range(min(len(rm), len(hm))):
        if key(rm[i]) != key(hm[i]):
            return "framing-differs", f"request {i}: ringway {rm[i]} / h11 {hm[i]}"
    re_, he = end_of(r), end_of(h)
    if len(rm) == len(hm):
        if re_ == he:
            return "agree", ""
        if he == "paused":
            return "h11-paused", ""
        if re_ == "error":
            return "ringway-stricter", r["error"]
        if re_ in ("closed", "paused"):
            return "ringway-stops-earlier", f"ringway {re_}, h11 {he}"
        if he == "error" and re_ == "incomplete":
            return "ringway-stops-earlier", "ringway waits for more, h11 refuses"
        if he == "closed" and re_ in ("complete", "incomplete"):
            return "persistence-differs", "h11 closes after the last request, ringway keeps reading"
        return "framing-differs", f"same requests, ringway ends {re_}, h11 ends {he}"
    if len(rm) > len(hm):
        extra = f"request {len(hm)}: {rm[len(hm)]}"
        if he == "error":
            return "ringway-accepts-h11-rejects", f"{accepts_what(r, h)} ({h['error']}; {extra})"
        if he == "paused":
            return "h11-paused", ""
        if he == "closed":
            return "persistence-differs", f"h11 closed, ringway framed {extra}"
        return "framing-differs", f"ringway framed {extra}, h11 ends {he}"
    extra = f"request {len(rm)}: {hm[len(rm)]}"
    if re_ == "error":
        return "ringway-stricter", r["error"]
    if re_ in ("closed", "paused", "incomplete"):
        if re_ == "incomplete":
            return "framing-differs", f"h11 framed {extra}, ringway still waits for bytes"
        return "ringway-stops-earlier", f"ringway {re_}"
    return "framing-differs", f"h11 framed {extra}, ringway ends {re_}"


def show(stream, limit=400):
    text = repr(stream)
    return text if len(text) <= limit else text[:limit] + f"... ({len(stream)} bytes)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ringway", required=True, help="path to the built framing example")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--count", type=int, default=5000, help="generated streams besides the corpus")
    ap.add_argument("--show", type=int, default=3, help="examples printed per category")
    ap.add_argument("--show-info", action="store_true", help="also print examples of info categories")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    valid = corpus()
    cases = [("corpus:" + name, s, exp) for name, s, exp in valid]
    for i in range(args.count):
        if rng.random() < 0.3:
            cases.append((f"combo#{i}", framing_combo(rng), None))
        else:
            _, base, _ = rng.choice(valid)
            cases.append((f"mutant#{i}", mutate(rng, base), None))

    streams = [c[1] for c in cases]
    ringway = run_ringway(args.ringway, streams)
    h11 = [h11_frame.frame(s) for s in streams]

    categories = OrderedDict()
    sub = {}
    for (name, stream, expected), r, h in zip(cases, ringway, h11):
        if expected is not None:
            want = [{"method": m, "target": t, "body_len": n} for m, t, n in expected]
            if not r["ok"] or r["incomplete"] or [key(m) for m in r["messages"]] != [key(m) for m in want]:
                cat, why = "corpus-refused", r.get("error") or f"ringway ends {end_of(r)} after {r['messages']}"
            elif [key(m) for m in h["messages"]] != [key(m) for m in want] or end_of(h) not in (
                "complete",
                "closed",
            ):
                cat, why = "corpus-not-valid", h.get("error") or f"h11 ends {end_of(h)} after {h['messages']}"
            else:
                cat, why = judge(r, h)
        else:
            cat, why = judge(r, h)
        categories.setdefault(cat, []).append((name, stream, r, h, why))
        label = why.split(" (")[0] if cat in ("ringway-stricter", "ringway-accepts-h11-rejects") else ""
        if label:
            sub.setdefault(cat, {}).setdefault(label, []).append((name, stream, r, h, why))

    print(f"differential: {len(cases)} streams ({len(valid)} corpus, seed {args.seed})")
    order = list(FAIL) + list(WARN) + ["ringway-stricter", "ringway-stops-earlier", "h11-paused", "agree"]
    for cat in order:
        items = categories.get(cat, [])
        level = "FAIL" if cat in FAIL else "WARN" if cat in WARN else "info"
        print(f"  {level:4} {cat:30} {len(items)}")
        for label, group in sorted(sub.get(cat, {}).items(), key=lambda kv: -len(kv[1])):
            print(f"         {len(group):5}  {label}")
    shown = list(FAIL) + list(WARN)
    if args.show_info:
        shown += ["ringway-stricter", "ringway-stops-earlier", "h11-paused"]
    for cat in shown:
        items = categories.get(cat, [])
        if not items:
            continue
        if cat in sub:
            # One example of every sub-category first, then the rest in order.
            firsts = [group[0] for group in sub[cat].values()]
            items = firsts + [i for i in items if i not in firsts]
        print(f"\n== {cat}: first {min(args.show, len(items))} of {len(items)}")
        for name, stream, r, h, why in items[: args.show]:
            print(f"-- {name}: {why}")
            print(f"   input:   {show(stream)}")
            print(f"   ringway: {json.dumps(r)}")
            print(f"   h11:     {json.dumps(h)}")
    failed = sum(len(categories.get(cat, [])) for cat in FAIL)
    if failed:
        print(f"\ndifferential: FAILED, {failed} stream(s) in failing categories")
        sys.exit(1)
    print("\ndifferential: ok")


if __name__ == "__main__":
    main()
