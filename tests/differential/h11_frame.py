"""How h11 frames byte streams of pipelined requests: the other side of the differential test.

`frame(stream)` returns the same shape of result as Ringway's `framing` example:

    {"ok": True, "messages": [{"method", "target", "body_len"}...],
     "incomplete": bool, "closed": bool, "paused": bool}
    {"ok": False, "error": str, "after_messages": n, "messages": [...]}

Strings are bytes decoded as Latin-1, as the Rust side writes them.

Each request is read by a fresh server-role `h11.Connection` fed the bytes left over from the
previous one (`next_event()` until `EndOfMessage`, counting `Data` bytes), because h11 has no
HTTP/1.0 keep-alive while Ringway does: after an HTTP/1.0 request with `Connection: keep-alive`
(and no `close`) framing goes on, after any other request h11 marks as closing it stops
(`closed`). A request h11 would switch protocols for (any `Upgrade` field, or CONNECT) stops
framing with `paused`. Any h11 protocol error is a refusal.

Run as a program it reads hex-encoded streams, one per line, and prints one JSON line each.
"""

import json
import sys

import h11


def _tokens(headers, name):
    out = []
    for n, v in headers:
        if n == name:
            out.extend(t.strip().lower() for t in v.split(b","))
    return out


def frame(stream: bytes) -> dict:
    messages = []
    rest = stream
    while True:
        if not rest:
            return _ok(messages)
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(rest)
        request = None
        body_len = 0
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return _ok(messages, incomplete=True)
                if event is h11.PAUSED:
                    # Only reached before EndOfMessage if h11 itself stopped early.
                    return _ok(messages, paused=True)
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body_len += len(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
        except h11.ProtocolError as e:
            return {
                "ok": False,
                "error": f"{type(e).__name__}: {e}",
                "after_messages": len(messages),
                "messages": messages,
            }
        messages.append(
            {
                "method": request.method.decode("latin-1"),
                "target": request.target.decode("latin-1"),
                "body_len": body_len,
            }
        )
        rest, _closed = conn.trailing_data
        state = conn.their_state
        if state is h11.MIGHT_SWITCH_PROTOCOL:
            return _ok(messages, paused=True)
        if state is h11.MUST_CLOSE:
            conn_tokens = _tokens(request.headers, b"connection")
            http10_keep_alive = (
                request.http_version == b"1.0"
                and b"keep-alive" in conn_tokens
                and b"close" not in conn_tokens
            )
            if not http10_keep_alive:
                return _ok(messages, closed=True)


def _ok(messages, incomplete=False, closed=False, paused=False):
    return {
        "ok": True,
        "messages": messages,
        "incomplete": incomplete,
        "closed": closed,
        "paused": paused,
    }


def main() -> None:
    for line in sys.stdin:
        print(json.dumps(frame(bytes.fromhex(line.strip()))))


if __name__ == "__main__":
    main()
