"""HTTP/2 flood and abuse probes (run by scripts/h2-conformance.sh).

Each flood runs for --flood-secs (2.5 s) as back-to-back attack connections ("waves"): a wave
handshakes, then sends the flood in batches while reading what comes back, until the server
answers GOAWAY or closes, or the wave's frame budget or time runs out. Meanwhile a normal client
(the h2 library, its own connection) sends GET /1k every 100 ms, and a sampler reads the server's
VmRSS every 50 ms. Bounds: at most --max-frames (20,000) frames per flood, a wave at most 5 s.

Criteria against Ringway (exit 1 if one fails):
  - every wave ends in GOAWAY with the code expected (ENHANCE_YOUR_CALM; for the CONTINUATION
    floods any GOAWAY, noted) or a close, within the wave's budget;
  - the normal client gets 200 for every request (at least 5), each within 1 s;
  - the server's RSS stays under its RSS at the start of the flood + 64 MiB;
  - the server is alive afterwards and answers a GET.
The zero-window hold is not a flood of frames but of held streams: 4 connections x 128 GET /1m
with every window at 0 (PINGs answered at once, with pump_all: a client that answers a PING late
gets GOAWAY(NO_ERROR) after --h2-ping-timeout, rightly). It passes when no DATA is sent, every
stream gets its head and then RST_STREAM(CANCEL) --header-timeout (x0.75 .. +2 s) after it, no
GOAWAY comes while streams are open, and the normal client, queued behind the attack for an
upstream connection, gets 200 for every request within --header-timeout + 5 s (one of them made
while the attack held the upstream connections); RSS and life as above. It ends when every
stream has ended, or after --hold-secs (15 s).
Against nginx the same is measured and printed as INFO: nginx has other limits.

Then, for Ringway only, the HTTP/2 timers: the header timeout, the idle timeout and the
keepalive PING timeout (values from --limits).

Usage: floods.py --port P --pid PID [--target ringway|nginx] [--limits k=v,...] [--only SUBSTR,...]
"""

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2wire import (  # noqa: E402
    CANCEL, CLOSED, ENHANCE_YOUR_CALM, GOAWAY, INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS, NO_ERROR,
    PING, TIMEOUT, Conn, HandshakeError, NormalClient, Target, alive, block, continuation, data,
    err_name, headers, ping, priority, pump_all, rss_kib, rst_stream, settings, window_update,
)

RSS_SLACK_KIB = 64 * 1024


# ---- the attacks ----------------------------------------------------------------------------

class Attack:
    """One kind of flood. `batch(n)` returns (bytes, frames) for up to n more flood frames;
    `setup()` the bytes that open the wave (after the handshake)."""
    codes = (ENHANCE_YOUR_CALM,)   # GOAWAY codes that pass; None: any GOAWAY
    settings = ()

    def __init__(self, t):
        self.t = t
        self.sid = 1

    def setup(self):
        return b""

    def next_sid(self):
        s = self.sid
        self.sid += 2
        return s


class RapidReset(Attack):
    name, title = "rapid-reset", "rapid reset: HEADERS + RST_STREAM(CANCEL) pairs"

    def batch(self, n):
        out = []
        for _ in range(max(1, n // 2)):
            s = self.next_sid()
            out.append(headers(s, self.t.req("GET", "/0")) + rst_stream(s, CANCEL))
        return b"".join(out), 2 * len(out)


class MadeYouReset(Attack):
    """Frames that are valid in themselves but make the server reset the stream they name
    (CVE-2025-8671): a stream window pushed past 2^31-1, a body longer than its content-length,
    a stream that depends on itself. Each answer is a RST_STREAM from the server."""
    name, title = "made-you-reset", "MadeYouReset: frames that make the server reset streams (window overflow, content-length, self-dependency)"

    def batch(self, n):
        out, frames = [], 0
        while frames < max(2, n):
            s = self.next_sid()
            kind = (s // 2) % 3
            if kind == 0:
                out.append(headers(s, self.t.req("POST", "/0"), end_stream=False) + window_update(s, 0x7FFFFFFF))
                frames += 2
            elif kind == 1:
                out.append(headers(s, self.t.req("POST", "/0", extra=[("content-length", "1")]), end_stream=False)
                           + data(s, b"xx", end_stream=True))
                frames += 2
            else:
                out.append(headers(s, self.t.req("GET", "/0"), prio=(s, 16, False)))
                frames += 1
        return b"".join(out), frames


class ContinuationFlood(Attack):
    name, title = "continuation", "CONTINUATION flood: HEADERS, then CONTINUATIONs of 1 KiB, never END_HEADERS"
    codes = None

    def setup(self):
        return headers(1, self.t.req("GET", "/0"), end_headers=False)

    def batch(self, n):
        self.k = getattr(self, "k", 0)
        out = []
        for _ in range(n):
            self.k += 1
            out.append(continuation(1, block([("x-c%05d" % self.k, "c" * 1000)]), end_headers=False))
        return b"".join(out), n


class EmptyContinuationFlood(Attack):
    name, title = "continuation-empty", "CONTINUATION flood: empty CONTINUATIONs, never END_HEADERS"
    codes = None

    def setup(self):
        return headers(1, self.t.req("GET", "/0"), end_headers=False)

    def batch(self, n):
        return continuation(1, b"", end_headers=False) * n, n


class PingFlood(Attack):
    name, title = "ping", "PING flood"

    def batch(self, n):
        return b"".join(ping(i.to_bytes(8, "big")) for i in range(n)), n


class SettingsFlood(Attack):
    name, title = "settings", "SETTINGS flood (each must be ACKed)"

    def batch(self, n):
        return b"".join(settings([(INITIAL_WINDOW_SIZE, 65535 + (i % 2))]) for i in range(n)), n


class EmptyDataFlood(Attack):
    name, title = "empty-data", "empty DATA flood on an open stream (no payload, no END_STREAM)"

    def setup(self):
        return headers(1, self.t.req("POST", "/0"), end_stream=False)

    def batch(self, n):
        return data(1, b"") * n, n


class WindowUpdateFlood(Attack):
    name, title = "window-update", "WINDOW_UPDATE flood (connection window +1 each)"

    def batch(self, n):
        return window_update(0, 1) * n, n


class PriorityFlood(Attack):
    name, title = "priority", "PRIORITY flood (idle streams)"

    def batch(self, n):
        out = []
        for _ in range(n):
            s = self.next_sid()
            out.append(priority(s, 0, 16))
        if self.sid > 2_000_000:
            self.sid = 1
        return b"".join(out), n


ATTACKS = [RapidReset, MadeYouReset, ContinuationFlood, EmptyContinuationFlood, PingFlood, SettingsFlood,
           EmptyDataFlood, WindowUpdateFlood, PriorityFlood]


# ---- measuring ------------------------------------------------------------------------------

class Background:
    """The normal client and the RSS sampler, running until stop()."""

    def __init__(self, t, pid, req_timeout=2.0):
        self.t, self.pid = t, pid
        self.req_timeout = req_timeout
        self.stop_ev = threading.Event()
        self.results = []   # (status or error text, seconds, time.monotonic() at its start)
        self.rss0 = rss_kib(pid) if pid else None
        self.rss_peak = self.rss0 or 0
        self.threads = [threading.Thread(target=self.client, daemon=True),
                        threading.Thread(target=self.sampler, daemon=True)]

    def start(self):
        for th in self.threads:
            th.start()
        return self

    def stop(self):
        """Stops both threads; a request in flight is let finish (within its timeout)."""
        self.stop_ev.set()
        for th in self.threads:
            th.join(self.req_timeout + 3)

    def sampler(self):
        while not self.stop_ev.is_set():
            r = rss_kib(self.pid) if self.pid else None
            if r:
                self.rss_peak = max(self.rss_peak, r)
            time.sleep(0.05)

    def client(self):
        nc = None
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            try:
                if nc is None:
                    nc = NormalClient(self.t, timeout=self.req_timeout)
                st, _, body = nc.request("GET", "/1k", timeout=self.req_timeout)
                self.results.append((st if len(body) == 1024 else "%s with %d B" % (st, len(body)),
                                     time.monotonic() - t0, t0))
            except Exception as e:
                self.results.append(("%s: %s" % (e.__class__.__name__, e), time.monotonic() - t0, t0))
                if nc is not None:
                    nc.close()
                nc = None
            self.stop_ev.wait(0.1)
        if nc is not None:
            nc.close()


class Wave:
    def __init__(self):
        self.frames = 0
        self.goaway = None
        self.closed = None
        self.secs = 0.0
        self.react_secs = None
        self.rst = 0
        self.other = set()
        self.error = None


def run_wave(t, attack, budget, wave_secs, batch_size):
    w = Wave()
    try:
        c = Conn(t, timeout=3)
    except OSError as e:
        w.error = "connect: %s" % e
        return w
    with c:
        try:
            c.handshake(attack.settings)
        except (HandshakeError, OSError) as e:
            w.error = "handshake: %s" % e
            return w
        c.send(attack.setup(), describe=False)
        t0 = time.monotonic()
        deadline = t0 + wave_secs

        def drain(timeout):
            end = time.monotonic() + timeout
            while True:
                f = c.read(max(0.0, end - time.monotonic()))
                if f is TIMEOUT or f is CLOSED:
                    return
                if f.type == GOAWAY:
                    if w.react_secs is None:
                        w.react_secs = time.monotonic() - t0
                elif f.type == 3:  # RST_STREAM
                    w.rst += 1
                elif f.type not in (PING, 4, 8, 0, 1):
                    w.other.add(f.type)

        while w.frames < budget and time.monotonic() < deadline:
            raw, n = attack.batch(min(batch_size, budget - w.frames))
            if not c.send(raw, describe=False):
                break
            w.frames += n
            drain(0.002)
            if c.goaway is not None or c.closed:
                break
        # The reaction may still be on its way: wait for it (bounded), then for the close.
        if c.goaway is None and not c.closed:
            drain(min(2.0, max(0.2, deadline - time.monotonic())))
        if c.goaway is not None and not c.closed:
            c.wait_closed(2.0)
        if c.closed and w.react_secs is None:
            w.react_secs = time.monotonic() - t0
        w.goaway = c.goaway
        w.closed = c.closed
        w.secs = time.monotonic() - t0
    return w


def judge_waves(attack, waves, target):
    """(ok, summary) for the waves of one flood."""
    ok = True
    codes = {}
    worst_frames, worst_secs, unanswered = 0, 0.0, 0
    for w in waves:
        if w.error:
            key = w.error
        elif w.goaway is not None:
            key = "GOAWAY(%s%s)" % (err_name(w.goaway.error_code),
                                    ", %s" % bytes(w.goaway.additional_data)[:40].decode("latin-1")
                                    if w.goaway.additional_data else "")
        elif w.closed:
            key = "closed without GOAWAY (%s)" % w.closed
        else:
            key = "no reaction"
        codes[key] = codes.get(key, 0) + 1
        if w.react_secs is not None:
            worst_frames = max(worst_frames, w.frames)
            worst_secs = max(worst_secs, w.react_secs)
        good = (w.goaway is not None and (attack.codes is None or w.goaway.error_code in attack.codes)) or \
               (w.goaway is None and w.closed)
        if w.error or not good:
            ok = False
            if not w.error and w.goaway is None and not w.closed:
                unanswered += 1
    summary = "%d waves, %d frames: %s" % (
        len(waves), sum(w.frames for w in waves), ", ".join("%d x %s" % (n, k) for k, n in codes.items()))
    if any(w.react_secs is not None for w in waves):
        summary += "; slowest reaction after %d frames / %.0f ms" % (worst_frames, worst_secs * 1000)
    rsts = sum(w.rst for w in waves)
    if rsts:
        summary += "; %d RST_STREAM seen" % rsts
    return ok, summary


def run_flood(t, args, attack_cls):
    attack = attack_cls(t)
    bg = Background(t, args.pid).start()
    time.sleep(0.3)   # the normal client is connected and served before the flood starts
    t0 = time.monotonic()
    waves, sent = [], 0
    while time.monotonic() - t0 < args.flood_secs and sent < args.max_frames:
        # A wave given fewer frames than earlier waves needed could not be judged: stop instead.
        need = max((x.frames for x in waves if x.react_secs is not None), default=0)
        if need and args.max_frames - sent < need * 1.5:
            break
        w = run_wave(t, attack, min(args.wave_frames, args.max_frames - sent), args.wave_secs, args.batch)
        waves.append(w)
        sent += w.frames
        if w.error and len(waves) > 3 and all(x.error for x in waves[-3:]):
            break
        if w.goaway is None and not w.closed and not w.error:
            break  # the server did not stop this wave: one is enough to judge
        attack = attack_cls(t)
        # Spread the frame budget over the whole flood, so that the normal client meets it.
        ahead = sent / (args.max_frames / args.flood_secs) - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(min(ahead, args.flood_secs - (time.monotonic() - t0)))
    flood_secs = time.monotonic() - t0
    time.sleep(0.3)
    bg.stop()
    return finish(t, args, attack_cls(t), waves, bg, flood_secs)


def finish(t, args, attack, waves, bg, flood_secs, waves_judged=True, bound=1.0, min_requests=5):
    """The verdict on the normal client (every request 200 within `bound` s, at least
    `min_requests`), RSS, liveness and a GET afterwards; with `waves_judged`, on the waves too."""
    lines, ok = [], True
    if waves_judged:
        wok, wsum = judge_waves(attack, waves, args.target)
        exp = "GOAWAY(%s) or close" % ("any code" if attack.codes is None else "|".join(err_name(c) for c in attack.codes))
        lines.append("attack: %s (expected: %s)" % (wsum, exp))
        if not wok:
            ok = False
            lines.append("FAILED: not every attack connection was stopped as expected")
    # The normal client.
    res = bg.results
    n200 = sum(1 for s, _, _ in res if s == 200)
    slow = [d for s, d, _ in res if s == 200 and d > bound]
    worst = max((d for _, d, _ in res), default=0)
    errors = {}
    for s, _, _ in res:
        if s != 200:
            errors[str(s)] = errors.get(str(s), 0) + 1
    lines.append("normal client: %d/%d x 200 during %.1f s, slowest %.0f ms%s" % (
        n200, len(res), flood_secs, worst * 1000,
        "; " + ", ".join("%d x %s" % (v, k) for k, v in errors.items()) if errors else ""))
    if len(res) < min_requests or n200 != len(res) or slow:
        ok = False
        lines.append("FAILED: the normal client was not served (every request 200 within %g s, at least %d)" % (
            bound, min_requests))
    # Memory and life.
    if args.pid:
        rss1 = rss_kib(args.pid)
        lines.append("RSS: %s MiB at the start, peak %.1f MiB, %s MiB after (bound: start + %d MiB)" % (
            "%.1f" % (bg.rss0 / 1024) if bg.rss0 else "?", bg.rss_peak / 1024,
            "%.1f" % (rss1 / 1024) if rss1 else "?", RSS_SLACK_KIB // 1024))
        if bg.rss0 and bg.rss_peak - bg.rss0 > RSS_SLACK_KIB:
            ok = False
            lines.append("FAILED: RSS grew by %.1f MiB" % ((bg.rss_peak - bg.rss0) / 1024))
        if not alive(args.pid):
            ok = False
            lines.append("FAILED: the server process is gone")
    try:
        nc = NormalClient(t, timeout=3)
        st, _, body = nc.request("GET", "/1k")
        nc.close()
        after = "GET /1k after the flood: %s" % st
        if st != 200:
            ok = False
    except Exception as e:
        after = "GET /1k after the flood failed: %s: %s" % (e.__class__.__name__, e)
        ok = False
    lines.append(after)
    return ok, lines


# ---- holding responses behind closed windows ------------------------------------------------

def zero_window(t, args, lim):
    """4 connections with SETTINGS_INITIAL_WINDOW_SIZE=0, each with as many GET /1m streams as
    the server allows (4 x 128 against Ringway's defaults: twice its 256 upstream connections per
    endpoint), PINGs answered at once, no WINDOW_UPDATE ever. Against Ringway:
      - no DATA beyond the zero windows, and the server does not buffer the responses (RSS bound);
      - every stream gets its response head, then RST_STREAM(CANCEL) about --header-timeout after
        it (a client that keeps its window closed while it holds an upstream connection is reset,
        freeing the connection), so streams queued for a slot get theirs in turn;
      - no GOAWAY on the attack connections while they have streams open;
      - the normal client, queued behind the attack's streams, gets 200 for every request within
        --header-timeout + 5 s, one of them made while the attack held the upstream connections.
    The attack ends when every stream has ended, or after --hold-secs (15)."""
    hto = lim.get("header_timeout", 2.0)
    bound = hto + 5
    bg = Background(t, args.pid, req_timeout=bound + 1).start()
    time.sleep(0.3)
    t0 = time.monotonic()
    conns, notes = [], []
    for _ in range(4):
        try:
            c = Conn(t, timeout=3)
            c.handshake([(INITIAL_WINDOW_SIZE, 0)])
            c.auto_window = False
            n = min(c.server_settings.get(MAX_CONCURRENT_STREAMS, 128), 256)
            c.send(b"".join(headers(2 * i + 1, t.req("GET", "/1m")) for i in range(n)), describe=False)
            for i in range(n):
                c.stream(2 * i + 1)
            c.events = []  # (seconds since t0, what) for PINGs and GOAWAYs
            conns.append(c)
        except (OSError, HandshakeError) as e:
            notes.append("connect/handshake: %s" % e)
    goaway_early = []  # (connection index, seconds, open streams)
    while time.monotonic() - t0 < args.hold_secs:
        for c, f in pump_all(conns, 0.05):
            if f in (CLOSED, TIMEOUT):
                continue
            if f.type == PING and "ACK" not in f.flags:
                c.events.append((time.monotonic() - t0, "PING (answered)"))
            elif f.type == GOAWAY:
                open_ = sum(1 for st in c.streams.values() if not st.done())
                c.events.append((time.monotonic() - t0, "GOAWAY(%s), %d streams open" % (err_name(f.error_code), open_)))
                if open_:
                    goaway_early.append((conns.index(c) + 1, time.monotonic() - t0, open_))
        if all(st.done() for c in conns for st in c.streams.values()) or all(c.closed for c in conns):
            break
    t_attack_end = time.monotonic()
    # Tally.
    streams = [st for c in conns for st in c.streams.values()]
    heads = [st for st in streams if st.status is not None]
    by_status = {}
    for st in heads:
        by_status[st.status] = by_status.get(st.status, 0) + 1
    resets = {}
    for st in streams:
        if st.reset is not None:
            resets[err_name(st.reset)] = resets.get(err_name(st.reset), 0) + 1
    data_bytes = sum(st.data_total for st in streams)
    lo, hi = hto * 0.75, hto + 2.0
    cancel_after = [st.t_end - st.t_head for st in streams if st.reset == CANCEL and st.t_head is not None]
    resets_in_time = [d for d in cancel_after if lo <= d <= hi]
    open_left = [st for st in streams if not st.done()]
    first_reset = min((st.t_end for st in streams if st.reset is not None), default=t_attack_end)
    for c in conns:
        c.close()
    secs = t_attack_end - t0
    bg.stop()
    ok, lines = finish(t, args, None, [], bg, secs, waves_judged=False, bound=bound, min_requests=1)
    lines.insert(0, "attack: %d connections, %d streams for %.1f s: %d response heads (%s), %d DATA octets "
                    "(must be 0), resets %s, reset %s after the head (expected %.1f-%.1f s), %d still open%s%s" % (
                        len(conns), len(streams), secs, len(heads),
                        ", ".join("%d x %s" % (n, k) for k, n in sorted(by_status.items())) or "-", data_bytes,
                        ", ".join("%d x %s" % (n, k) for k, n in sorted(resets.items())) or "none",
                        "%.2f-%.2f s" % (min(cancel_after), max(cancel_after)) if cancel_after else "-",
                        lo, hi, len(open_left),
                        "; GOAWAY with streams open: %s" % ", ".join("connection %d at %.2f s (%d open)" % g
                                                                    for g in goaway_early) if goaway_early else "",
                        "; " + "; ".join(notes) if notes else ""))
    if args.target == "ringway":
        # The normal client's requests made while the attack held the upstream connections.
        during = [r for r in bg.results if t0 <= r[2] < first_reset]
        lines.insert(1, "normal client during the hold (before the first reset at %.2f s): %d request(s): %s" % (
            first_reset - t0, len(during),
            ", ".join("%s in %.2f s" % (r[0], r[1]) for r in during) or "none"))
        if not during:
            ok = False
            lines.append("FAILED: no normal request was made while the attack held the upstream connections")
    if data_bytes:
        ok = False
        lines.append("FAILED: DATA sent beyond a zero flow-control window")
    if args.target == "ringway":
        bad = []
        if notes or len(conns) < 4:
            bad.append("not every attack connection could be set up")
        if len(heads) != len(streams) or set(by_status) != {200}:
            bad.append("%d of %d streams got a 200 head (a stream queued for an upstream connection waits up "
                       "to --upstream-response-timeout, 60 s, then 503)" % (by_status.get(200, 0), len(streams)))
        if resets.get("CANCEL", 0) != len(streams) or len(resets_in_time) != len(streams):
            bad.append("%d of %d streams reset with CANCEL %.1f-%.1f s after their head" % (
                len(resets_in_time), len(streams), lo, hi))
        if goaway_early:
            bad.append("GOAWAY on an attack connection with streams open (PINGs were answered at once)")
        if bad:
            ok = False
            lines.append("FAILED: " + "; ".join(bad))
            for i, c in enumerate(conns):
                hs = [st.t_head - t0 for st in c.streams.values() if st.t_head is not None]
                rs = [st.t_end - t0 for st in c.streams.values() if st.reset is not None]
                lines.append("  connection %d: %d heads%s, %d resets%s, still open %d; %s" % (
                    i + 1, len(hs), " %.2f-%.2f s" % (min(hs), max(hs)) if hs else "",
                    len(rs), " %.2f-%.2f s" % (min(rs), max(rs)) if rs else "",
                    sum(1 for st in c.streams.values() if not st.done()),
                    ", ".join("%.2f s %s" % e for e in c.events[:12]) or "no PING/GOAWAY"))
    return ok, lines


# ---- timers (Ringway only) ------------------------------------------------------------------

def timer_header(t, lim):
    """Preface and SETTINGS, PINGs answered, no HEADERS: closed after the header timeout."""
    bound = lim["header_timeout"]
    with Conn(t, timeout=3) as c:
        c.handshake()
        t0 = time.monotonic()
        closed = c.wait_closed(bound + 3)
        secs = time.monotonic() - t0
        exp = "closed between %.1f and %.1f s after the handshake (--header-timeout %gs)" % (bound - 0.5, bound + 2, bound)
        seen = "%s after %.1f s; %s" % ("closed" if closed else "still open", secs, c.seen_text())
        return closed and bound - 0.5 <= secs <= bound + 2, exp, seen


def timer_idle(t, lim):
    """One request, then nothing (PINGs answered): GOAWAY(NO_ERROR) and close after the idle timeout."""
    bound = lim["idle"]
    with Conn(t, timeout=3) as c:
        c.handshake()
        c.send(headers(1, t.req("GET", "/0")))
        for f in c.frames(3):
            if f in (CLOSED, TIMEOUT) or c.stream(1).done():
                break
        t0 = time.monotonic()
        closed = c.wait_closed(bound + 3)
        secs = time.monotonic() - t0
        exp = "GOAWAY(NO_ERROR), then close, %.1f to %.1f s after the last response (--h2-idle-timeout %gs)" % (
            bound - 0.5, bound + 2, bound)
        seen = "%s after %.1f s; %s" % ("closed" if closed else "still open", secs, c.seen_text())
        ok = closed and bound - 0.5 <= secs <= bound + 2 and c.goaway is not None and c.goaway.error_code == NO_ERROR
        return ok, exp, seen


def timer_ping(t, lim):
    """One request, then PINGs left unanswered: closed after ping interval + ping timeout."""
    interval, timeout = lim["ping_interval"], lim["ping_timeout"]
    with Conn(t, timeout=3) as c:
        c.handshake()
        c.send(headers(1, t.req("GET", "/0")))
        for f in c.frames(3):
            if f in (CLOSED, TIMEOUT) or c.stream(1).done():
                break
        c.auto_ack = False
        t0 = time.monotonic()
        pinged = None
        closed = False
        for f in c.frames(interval + timeout + 3):
            if f is CLOSED:
                closed = True
                break
            if f is TIMEOUT:
                break
            if f.type == PING and "ACK" not in f.flags and pinged is None:
                pinged = time.monotonic() - t0
        secs = time.monotonic() - t0
        lo, hi = interval + timeout - 0.5, interval + timeout + 1.5
        exp = ("a PING about %gs after the last frame, and, unanswered, a close %.1f to %.1f s after the last "
               "response (--h2-ping-interval %gs --h2-ping-timeout %gs; idle timeout %gs later)" % (
                   interval, lo, hi, interval, timeout, lim["idle"]))
        seen = "PING after %s; %s after %.1f s; %s" % ("%.1f s" % pinged if pinged is not None else "never",
                                                        "closed" if closed else "still open", secs, c.seen_text())
        return pinged is not None and closed and lo <= secs <= hi, exp, seen


TIMERS = [("timer/header", "no HEADERS: closed after the header timeout", timer_header),
          ("timer/idle", "no open stream: GOAWAY(NO_ERROR) after the HTTP/2 idle timeout", timer_idle),
          ("timer/ping", "keepalive PINGs unanswered: closed after the PING timeout", timer_ping)]


# ---- runner ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, help="the server's pid, for RSS and liveness")
    ap.add_argument("--target", default="ringway", choices=("ringway", "nginx"))
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--limits", default="", help="the server's flood limits and timers, k=v,... (for the report and the timers)")
    ap.add_argument("--flood-secs", type=float, default=float(os.environ.get("H2_FLOOD_SECS", "2.5")))
    ap.add_argument("--max-frames", type=int, default=20000)
    ap.add_argument("--wave-frames", type=int, default=20000)
    ap.add_argument("--wave-secs", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--hold-secs", type=float, default=15.0, help="the zero-window hold's longest run")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    lim = {}
    for kv in filter(None, a.limits.split(",")):
        k, _, v = kv.partition("=")
        lim[k] = float(v)
    t = Target(a.host, a.port, None, a.target, a.pid, a.timeout)
    sel = [x for x in a.only.split(",") if x]
    judged = a.target == "ringway"
    counts = {"PASS": 0, "FAIL": 0, "INFO": 0, "SKIP": 0}
    failed = []
    start = time.monotonic()
    items = [("flood/" + k.name, k.title, k) for k in ATTACKS]
    items.append(("flood/zero-window", "zero-window hold: 4 connections x max streams of GET /1m, window 0, "
                  "reset after the header timeout", None))
    for cid, title, kind in items:
        if sel and not any(s in cid or s.lower() in title.lower() for s in sel):
            continue
        t0 = time.monotonic()
        try:
            ok, lines = run_flood(t, a, kind) if kind is not None else zero_window(t, a, lim)
        except Exception as e:
            ok, lines = False, ["the probe crashed: %s: %s" % (e.__class__.__name__, e)]
        status = ("PASS" if ok else "FAIL") if judged else "INFO"
        counts[status] += 1
        if status == "FAIL":
            failed.append(cid)
        print("%-4s %-24s %s  (%.1f s)" % (status, cid, title, time.monotonic() - t0))
        for ln in lines:
            print("       " + ln)
        sys.stdout.flush()
    for cid, title, fn in TIMERS:
        if sel and not any(s in cid or s.lower() in title.lower() for s in sel):
            continue
        t0 = time.monotonic()
        if not judged:
            counts["SKIP"] += 1
            print("SKIP %-24s %s  (Ringway's timers)" % (cid, title))
            continue
        key = {"timer/header": "header_timeout", "timer/idle": "idle", "timer/ping": "ping_interval"}[cid]
        if key not in lim:
            counts["SKIP"] += 1
            print("SKIP %-24s %s  (no %s in --limits)" % (cid, title, key))
            continue
        try:
            ok, exp, seen = fn(t, lim)
        except Exception as e:
            ok, exp, seen = False, "no exception", "%s: %s" % (e.__class__.__name__, e)
        status = "PASS" if ok else "FAIL"
        counts[status] += 1
        if not ok:
            failed.append(cid)
        print("%-4s %-24s %s  (%.1f s)" % (status, cid, title, time.monotonic() - t0))
        print("       expected: %s\n       seen:     %s" % (exp, seen))
        sys.stdout.flush()
    print("floods (%s): %d probes in %.1f s: %d PASS, %d FAIL, %d INFO, %d SKIP" % (
        a.target, sum(counts.values()), time.monotonic() - start, counts["PASS"], counts["FAIL"],
        counts["INFO"], counts["SKIP"]))
    print("counts: " + " ".join("%s=%d" % kv for kv in counts.items()))
    if failed:
        print("floods: failed: %s" % " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
