"""The HTTP/1.1 upstream the HTTP/2 conformance cases run behind (scripts/h2-conformance.sh).

A small threaded server that keeps connections alive, reads Content-Length and chunked request
bodies (trailers included), and remembers what reached it, so a case can check that a malformed
request was not forwarded. Paths (the query string is ignored, except `case=` tags and `ms=`):

  /echo                 200, the request body as the response body
  /headers              200, JSON: method, target and the request's fields as received (in order)
  /delay?ms=N           200 "ok" after N ms (at most 5000)
  /0 /1k /64k /1m       200 with a body of that many bytes
  /hop                  200 with connection-specific fields (Connection, Keep-Alive, Upgrade,
                        Proxy-Connection, a field named in Connection) and a chunked body
  /__seen?tag=T         JSON {"heads": n, "complete": m, "trailers": [...]}: requests whose target
                        has `case=T` (or, without one, whose X-Case field is T), and the trailer
                        lines of their chunked bodies
  anything else         200 "ok"

Usage: upstream.py PORT   (listens on 127.0.0.1:PORT; prints "ready" when listening)
"""

import json
import socketserver
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
SEEN = {}  # tag -> [heads, complete, trailer lines]
MAX_HEAD = 64 * 1024


def tag_of(target):
    q = urllib.parse.urlsplit(target).query
    for k, v in urllib.parse.parse_qsl(q, keep_blank_values=True):
        if k == "case":
            return v
    return None


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.request.settimeout(30)
        self.buf = b""

    def read_more(self):
        chunk = self.request.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def read_line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise EOFError
            self.read_more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            self.read_more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def handle(self):
        try:
            while self.one():
                pass
        except (EOFError, OSError, ValueError):
            pass

    def one(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                return False
            self.read_more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        method, target, _version = lines[0].decode("latin-1").split(" ", 2)
        fields = []
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            fields.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        low = {}
        for k, v in fields:
            low.setdefault(k.lower(), []).append(v)
        tag = tag_of(target)
        if tag is None and "x-case" in low:
            tag = low["x-case"][0]
        if tag is not None:
            with LOCK:
                SEEN.setdefault(tag, [0, 0, []])[0] += 1
        # Body.
        body = b""
        te = ",".join(low.get("transfer-encoding", [])).lower()
        if "chunked" in te:
            parts = []
            while True:
                size = int(self.read_line().split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        ln = self.read_line()
                        if ln == b"":
                            break
                        if tag is not None:
                            with LOCK:
                                SEEN[tag][2].append(ln.decode("latin-1"))
                    break
                parts.append(self.read_exact(size))
                self.read_exact(2)
            body = b"".join(parts)
        elif "content-length" in low:
            body = self.read_exact(int(low["content-length"][0]))
        if tag is not None:
            with LOCK:
                SEEN[tag][1] += 1
        close = "close" in ",".join(low.get("connection", [])).lower()
        path = urllib.parse.urlsplit(target).path
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
        extra = []
        chunked = False
        if path == "/__seen":
            with LOCK:
                h, c, tr = SEEN.get(query.get("tag", ""), [0, 0, []])
            out = json.dumps({"heads": h, "complete": c, "trailers": tr}).encode()
        elif path == "/echo":
            out = body
        elif path == "/headers":
            out = json.dumps({"method": method, "target": target, "fields": fields,
                              "body_len": len(body)}).encode()
        elif path == "/delay":
            time.sleep(min(int(query.get("ms", "100")), 5000) / 1000)
            out = b"ok\n"
        elif path in ("/0", "/1k", "/64k", "/1m"):
            n = {"/0": 0, "/1k": 1024, "/64k": 65536, "/1m": 1 << 20}[path]
            out = (b"abcdefghijklmnopqrstuvwxyz012345" * (n // 32 + 1))[:n]
        elif path == "/hop":
            extra = [("Connection", "keep-alive, X-Hop-Secret"), ("Keep-Alive", "timeout=5"),
                     ("X-Hop-Secret", "must-not-pass"), ("Proxy-Connection", "keep-alive"),
                     ("Upgrade", "h2c"), ("X-Mixed-Case", "ok")]
            chunked = True
            out = b"hop by hop\n"
        else:
            out = b"ok\n"
        resp = ["HTTP/1.1 200 OK", "Content-Type: application/octet-stream"]
        resp += ["%s: %s" % kv for kv in extra]
        if chunked:
            resp.append("Transfer-Encoding: chunked")
            payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(out), out) if out else b"0\r\n\r\n"
        else:
            resp.append("Content-Length: %d" % len(out))
            payload = out
        if close:
            resp.append("Connection: close")
        wire = ("\r\n".join(resp) + "\r\n\r\n").encode()
        if method != "HEAD":
            wire += payload
        self.request.sendall(wire)
        return not close


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    port = int(sys.argv[1])
    srv = Server(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
