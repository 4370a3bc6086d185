#!/usr/bin/env python3
"""Helpers for scripts/vtc.sh.

    report.py observe LOG           one line: what the client got and what reached the origin,
                                    read from a `varnishtest -v` log
    report.py merge OLD NEW         rows of NEW replace those of OLD (a filtered run); prints the result
    report.py doc --cases DIR --results DIR --out FILE
                                    writes docs/conformance.md from the cases' header comments and
                                    the latest results in target/vtc/*.tsv

Conventions the cases follow (tests/vtc/*.vtc): the client under test is c1, a second client c2
sends the sentinel request `/sentinel`, the origin is s1 (or the process p1 running
scripts/vtc/origin.py, whose log scripts/vtc.sh appends to the case's log as `origin.log|` lines).
Each case starts with

    varnishtest "<rule in words>"
    # rule: <number>
    # rfc: <clause>
    # expect: <what Ringway must do>
"""
import argparse
import glob
import os
import re
import sys

LINE = re.compile(r"^\*+\s+(\S+)\s+(.*)$")


def observe(path):
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return "no log"
    statuses = []
    closed = False
    client_fail = None
    forwarded = []  # [url, state]
    chunked = last_zero = False
    first_fail = None
    for raw in text.splitlines():
        if raw.startswith("origin.log|"):
            # scripts/vtc/origin.py's log, appended by scripts/vtc.sh
            r = re.match(r"origin\.log\|request ([!-~]+) (\S+) HTTP/\S+ (complete|aborted)", raw)
            if r:
                forwarded.append([r.group(2), "complete" if r.group(3) == "complete" else "cut"])
            continue
        fail = raw.startswith("---- ")
        m = LINE.match(raw) if not fail else re.match(r"^----\s+(\S+)\s+(.*)$", raw)
        if not m:
            continue
        who, rest = m.group(1), m.group(2)
        if fail and first_fail is None:
            first_fail = who
        if who == "c1":
            s = re.match(r"rxhdr\|HTTP/\d\.\d (\d{3})", rest)
            if s:
                statuses.append(s.group(1))
            elif "EOF, as expected" in rest:
                closed = True
            elif fail and client_fail is None:
                client_fail = rest
        elif who == "s1":
            # a request line: the first token has no colon (a field line's name does); varnishtest
            # cuts long lines short, so the version may be missing
            r = re.match(r"rxhdr\|([!-9;-~]+) ([^:\s]\S*)", rest)
            if r:
                forwarded.append([r.group(2), "pending"])
                chunked = last_zero = False
            elif forwarded and forwarded[-1][1] == "pending":
                if re.match(r"rxhdr\|transfer-encoding:.*chunked", rest, re.I):
                    chunked = True
                elif re.match(r"len\|0+\\r$", rest):
                    last_zero = True
                elif rest.startswith("bodylen = "):
                    cut = "<undef>" in rest or (chunked and not last_zero)
                    forwarded[-1][1] = "cut" if cut else "complete"
    forwarded = [f for f in forwarded if f[0] != "/sentinel"]
    parts = []
    if statuses:
        parts.append("+".join(statuses))
    # When the origin's checks fail first, varnishtest's server stops without answering and the
    # client's timeout that follows says nothing about the proxy.
    if client_fail is not None and first_fail == "c1":
        if "timeout" in client_fail:
            parts.append("no answer" if not statuses else "hang")
        elif "Write error" in client_fail:
            parts.append("reset while sending")
        elif "Expecting close" in client_fail:
            parts.append("more bytes")
        elif re.search(r"EOF|incomplete|failed \(fd", client_fail):
            parts.append("closed")
    if closed:
        parts.append("close")
    client = ", ".join(parts) if parts else "—"
    if forwarded:
        seen = []
        for url, state in forwarded[:3]:
            seen.append(url[:40] + (" (cut)" if state == "cut" else ""))
        origin = "forwarded " + " ".join(seen)
    else:
        origin = "nothing forwarded"
    return "%s; %s" % (client, origin)


RFC_NOTES = """
## Where the rules go beyond the RFCs

The cases follow Ringway's rules. Where a rule is stricter than RFC 9110/9112 require, or picks
one of several answers they allow:

- **Empty list elements in Transfer-Encoding** (`,chunked`, `chunked,`; rule 5): RFC 9110
  §5.6.1.2 says a recipient MUST parse and ignore a reasonable number of empty list elements, so
  both values mean `chunked`. Ringway refuses them with 400 (fail closed).
- **A request coding list whose last coding is not chunked** (`chunked, identity`, `identity`,
  `xchunked`; rule 5): RFC 9112 §6.3 (4) requires 400 and a close for a request in which chunked
  is not the final coding; the 501 of RFC 9112 §6.1 (a SHOULD, for a coding the server does not
  understand) fits `gzip, chunked`. The rule answers 501 for all four. Either way nothing is
  forwarded and the connection closes.
- **Chunk sizes of 17 or more hex digits** (rule 6): RFC 9112 §7.1 allows leading zeros
  (`chunk-size = 1*HEXDIG`), so `000000000000000005` is 5. The rule refuses any size longer
  than 16 digits; `06-chunk-size-leading-zeros` checks that part on its own.
- **Bare LF line endings, obs-fold, other control characters** (rule 7): RFC 9112 §2.2 and §5.2
  and RFC 9110 §5.5 let a recipient accept or repair these; rejecting them is one of the allowed
  answers.
- **`..` above the root, `%2F`, `%5C`, `%00` in paths** (rule 10): RFC 3986 §5.2.4 would resolve
  `/../x` to `/x`, and an encoded slash is simply not equivalent to `/` (§2.4). Refusing them is
  Ringway's policy, so that routing and the upstream see one unambiguous path.
- **Request trailers** (rule 6): RFC 9112 §7.1.2 lets a recipient that removes the chunked
  coding keep or discard trailer fields. The rule keeps them, except the framing and hop-by-hop
  ones (RFC 9110 §6.5.1, §7.6.1).
- **405 for CONNECT** (rule 11): RFC 9110 §15.5.6 says a 405 response MUST carry an `Allow`
  field; the case checks the status only.
"""


def explain(err):
    """A short reading of varnishtest's first failure line, for the document."""
    if not err:
        return ""
    who = {"c1": "client", "c2": "sentinel client", "s1": "origin", "top": "check"}
    m = re.match(r"(\S+) EXPECT (\S+) \((.*)\) (==|!=|~|!~|<|>|<=|>=) \"(.*)\" (failed|match)", err)
    if m and m.group(2) == "resp.chunklen" and m.group(4) == "!=":
        return "origin: got the rejected request complete, up to its last chunk"
    if m and m.group(2) == "req.http.content-length" and m.group(5) == "<undef>":
        return "origin: got the body complete, re-framed with Content-Length: %s" % m.group(3)
    if m:
        var = re.sub(r"^(req|resp)\.(http\.)?", "", m.group(2))
        return "%s: %s is %s, expected %s %s" % (
            who.get(m.group(1), m.group(1)), var, m.group(3) or "empty", m.group(4), m.group(5))
    if "Multiple Content-Length" in err:
        return "origin: got two Content-Length fields"
    if "MAX_HDR" in err:
        return "origin: got more fields than varnishtest holds"
    if "shell_exit not as expected" in err:
        cmd = err.split(" :: ")[0] if " :: " in err else ""
        cmd = re.sub(r"^shell\s*", "", cmd)
        cmd = re.sub(r"\s*\$\{tm.*$", "", cmd).strip("{} ")
        return "origin.log check failed: %s" % (cmd or "see the case")
    m = re.match(r"(\S+) (.*)", err)
    if m:
        return "%s: %s" % (who.get(m.group(1), m.group(1)), m.group(2))
    return err


def read_tsv(path):
    meta, rows = {}, {}
    if not os.path.exists(path):
        return None, None
    with open(path, encoding="utf-8") as f:
        header = None
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# "):
                k, _, v = line[2:].partition("\t")
                meta[k] = v
                continue
            cols = line.split("\t")
            if header is None:
                header = cols
                continue
            rows[cols[0]] = dict(zip(header, cols))
    return meta, rows


def merge(old, new):
    _, old_rows = read_tsv(old)
    meta, new_rows = read_tsv(new)
    rows = dict(old_rows or {})
    rows.update(new_rows or {})
    for k, v in (meta or {}).items():
        print("# %s\t%s" % (k, v))
    print("case\tresult\tseconds\tobserved\tfirst_error")
    for name in sorted(rows):
        r = rows[name]
        print("\t".join(r.get(k, "") for k in ("case", "result", "seconds", "observed", "first_error")))


def case_meta(path):
    meta = {"title": "", "rule": "", "rfc": "", "expect": ""}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r'^varnishtest\s+"(.*)"\s*$', line)
            if m:
                meta["title"] = m.group(1)
                continue
            m = re.match(r"^#\s*(rule|rfc|expect):\s*(.*)$", line)
            if m:
                meta[m.group(1)] = m.group(2).strip()
    return meta


def cell(text):
    return text.replace("|", "\\|")


def doc(cases_dir, results_dir, out):
    cases = sorted(glob.glob(os.path.join(cases_dir, "*.vtc")))
    columns = [
        ("ringway-uring", "Ringway (io_uring)"),
        ("ringway-epoll", "Ringway (epoll)"),
        ("nginx", "nginx"),
        ("haproxy", "HAProxy"),
    ]
    results = {}
    for key, _ in columns:
        meta, rows = read_tsv(os.path.join(results_dir, key + ".tsv"))
        if rows is not None:
            results[key] = (meta, rows)
    ringway_key = "ringway-uring" if "ringway-uring" in results else (
        "ringway-epoll" if "ringway-epoll" in results else None)
    w = []
    w.append("# HTTP/1 framing conformance")
    w.append("")
    w.append(
        "Generated by `scripts/vtc.sh --report` from the cases in `tests/vtc/` and the latest "
        "results in `target/vtc/`. Do not edit by hand: change a case or rerun the suite."
    )
    w.append("")
    w.append(
        "Each case is a varnishtest script: a client (`c1`) sends exact bytes to the proxy under "
        "test, an origin (`s1`, or `scripts/vtc/origin.py` where chunk extensions, trailers or "
        "`Expect` are involved) asserts "
        "what was forwarded, and the client asserts the answer. A rejected request must leave "
        "nothing at the origin: the case then sends a second, valid request (`/sentinel`) on a new "
        "connection and the origin insists that this is the first request it sees. Where the "
        "error is in a chunked body and the head may already have gone, the origin may instead see "
        "that request cut short, never completed. The same bytes are replayed against nginx and "
        "HAProxy (`scripts/vtc.sh --contender nginx|haproxy --report`), each configured as "
        "`scripts/bench.sh` runs them (one worker, upstream keep-alive, forwarding headers); "
        "`--max-body-bytes` is mapped to `client_max_body_size` and to an HAProxy "
        "`req.body_size` deny rule. Default limits are left as they are."
    )
    w.append("")
    w.append(
        "How to read a result: ✓ means the contender did what the rule requires. After it: the "
        "status line(s) the client received (`100+200` is an interim then a final response; "
        "`close` means the proxy closed the connection after answering; `closed` means it closed "
        "without an answer; `no answer` means the client timed out; `—` means the case stopped at "
        "the origin's checks before the client got anything), then what reached the origin "
        "(`forwarded /path`, with `(cut)` when the origin saw the connection end mid-request). "
        "For a ✗, the first failed check follows in parentheses. A ✗ for nginx or HAProxy is "
        "a difference from Ringway's rules, not necessarily a bug: several rules are stricter "
        "than the RFCs require (see below)."
    )
    w.append("")
    w.append("| contender | version | run |")
    w.append("|---|---|---|")
    for key, label in columns:
        if key in results:
            meta, rows = results[key]
            passed = sum(1 for r in rows.values() if r["result"] == "pass")
            w.append("| %s | %s | %s: %d/%d as the rules require |" % (
                label, cell(meta.get("contender", "?")), meta.get("date", "?"), passed, len(rows)))
        else:
            w.append("| %s | — | not run |" % label)
    w.append("")
    w.append(
        "| case | rule | RFC | Ringway must | Ringway now | nginx | HAProxy |"
    )
    w.append("|---|---|---|---|---|---|---|")

    def show(key, name):
        if key is None or key not in results:
            return "not run"
        row = results[key][1].get(name)
        if row is None:
            return "not run"
        if row["result"] == "pass":
            return "✓ %s" % cell(row["observed"])
        why = explain(row.get("first_error", ""))
        if why.startswith("client: status is") or why.endswith("expected == /sentinel"):
            why = ""  # the status or the forwarded request shown already says it
        return "✗ %s%s" % (cell(row["observed"]), (" (%s)" % cell(why)) if why else "")

    for path in cases:
        name = os.path.basename(path)[:-4]
        m = case_meta(path)
        w.append("| [`%s`](../tests/vtc/%s.vtc) | %s | %s | %s | %s | %s | %s |" % (
            name, name, m["rule"], cell(m["rfc"]), cell(m["expect"]),
            show(ringway_key, name), show("nginx", name), show("haproxy", name)))
    w.append("")
    if "ringway-epoll" in results and ringway_key == "ringway-uring":
        diff = [n for n, r in results["ringway-epoll"][1].items()
                if n in results["ringway-uring"][1]
                and results["ringway-uring"][1][n]["result"] != r["result"]]
        if diff:
            w.append("On epoll, these cases give a different result than on io_uring: %s." % ", ".join(
                "`%s`" % d for d in sorted(diff)))
        else:
            w.append("The epoll run gives the same result as the io_uring run for every case.")
        w.append("")
    w.extend(RFC_NOTES.strip("\n").splitlines())
    w.append("")
    w.append("## The cases")
    w.append("")
    w.append("Case titles, by rule:")
    w.append("")
    for path in cases:
        m = case_meta(path)
        w.append("- `%s` (rule %s): %s" % (os.path.basename(path), m["rule"], m["title"]))
    w.append("")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(w))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "observe":
        print(observe(sys.argv[2]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "merge":
        merge(sys.argv[2], sys.argv[3])
        return
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["doc"])
    p.add_argument("--cases", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    doc(a.cases, a.results, a.out)


if __name__ == "__main__":
    main()
