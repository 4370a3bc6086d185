#!/usr/bin/env python3
"""A recording origin for the varnishtest cases that varnishtest's own server cannot check.

varnishtest's `rxreq` does not accept a chunked body with chunk extensions or trailer fields, and
its server cannot decide whether to send 100 Continue, so those cases (tests/vtc/06-chunked-
extensions, 06-chunked-trailer-*, 15-expect-100-continue) start this origin with `process`
instead of a `server` block:

    process p1 {python3 ${testdir}/../../scripts/vtc/origin.py ${origin_port} ${tmpdir}/origin.log} -start

It listens on 127.0.0.1:PORT, serves connections one at a time, and appends what it received to
LOG, one fact per line:

    listening
    request POST /x HTTP/1.1 complete      (or: aborted, when the connection ended mid-request)
    header Transfer-Encoding: chunked      (each field of that request's head, in order)
    body 11 hello world                    (decoded length, then the bytes, escaped)
    trailer X-Checksum: abc                (each trailer field, in order)
    sent 100-continue                      (when the request carried Expect: 100-continue)

A request that carries Expect: 100-continue and a body gets `100 Continue` before its body is
read, as an origin server does. Each complete request gets `200 OK` with a Content-Length body
listing the trailer fields it carried (one `name: value` a line). A connection idle for 3 s is
dropped, and the process exits after LIFETIME seconds (default 20), so a case never leaves it
running.
"""
import socket
import sys
import time


class Aborted(Exception):
    pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Aborted()
        self.buf += data

    def line(self, limit=65536):
        """One line ending in CRLF (bare LF is accepted and noted as such)."""
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise Aborted()
            self._fill()
        raw, self.buf = self.buf.split(b"\n", 1)
        if raw.endswith(b"\r"):
            return raw[:-1], True
        return raw, False

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def esc(b):
    return b.decode("latin-1").encode("unicode_escape").decode("ascii")


def serve(conn, log):
    """Serves requests on one connection until it closes."""
    while True:
        try:
            first, _ = conn.line()
        except Aborted:
            return
        if not first:
            continue
        facts = []
        state = "aborted"
        try:
            headers = []
            while True:
                line, _ = conn.line()
                if not line:
                    break
                name, _, value = line.partition(b":")
                headers.append((name.strip().lower(), value.strip()))
                facts.append("header " + esc(line))
            te = [v for n, v in headers if n == b"transfer-encoding"]
            cl = [v for n, v in headers if n == b"content-length"]
            if any(n == b"expect" and v.lower() == b"100-continue" for n, v in headers) and (te or cl):
                # as an origin server does: ask for the body it is about to read
                conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                facts.append("sent 100-continue")
            body = b""
            trailers = []
            if te and te[-1].lower().endswith(b"chunked"):
                while True:
                    size_line, crlf = conn.line()
                    if not crlf:
                        raise Aborted()
                    size = int(size_line.split(b";", 1)[0], 16)
                    if size == 0:
                        break
                    body += conn.exact(size)
                    if conn.exact(2) != b"\r\n":
                        raise Aborted()
                while True:
                    line, crlf = conn.line()
                    if not crlf:
                        raise Aborted()
                    if not line:
                        break
                    trailers.append(line)
            elif cl:
                body = conn.exact(int(cl[0]))
            facts.append("body %d %s" % (len(body), esc(body)))
            for t in trailers:
                facts.append("trailer " + esc(t))
            state = "complete"
        except (Aborted, ValueError, OSError):
            state = "aborted"
        log.write("request %s %s\n" % (esc(first), state))
        for f in facts:
            log.write(f + "\n")
        log.flush()
        if state != "complete":
            return
        answer = b"".join(t + b"\n" for t in trailers)
        conn.sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer
        )


def main():
    port = int(sys.argv[1])
    log = open(sys.argv[2], "a")
    lifetime = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    deadline = time.monotonic() + lifetime
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    log.write("listening\n")
    log.flush()
    while time.monotonic() < deadline:
        ls.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            sock, _ = ls.accept()
        except socket.timeout:
            break
        sock.settimeout(3.0)
        try:
            serve(Conn(sock), log)
        except OSError:
            pass
        finally:
            sock.close()


if __name__ == "__main__":
    main()
