#!/usr/bin/env bash
# HTTP/2 conformance and abuse suite: runs RFC 9113 / RFC 7541 conformance cases (the server-side
# cases of h2spec's "generic" and "http2" groups, written from the RFCs, plus what a proxy in
# front of HTTP/1.1 upstreams must get right) and bounded flood probes against Ringway's h2c
# listener (HTTP/2 by prior knowledge on a plain port). Loopback only; every wait is bounded.
#
#   scripts/h2-conformance.sh                    # Ringway, --io-driver auto
#   scripts/h2-conformance.sh --driver epoll     # Ringway's --io-driver: auto (default), uring, epoll
#   scripts/h2-conformance.sh --target nginx     # the same suite against nginx (listen ... http2), for comparison
#   scripts/h2-conformance.sh --only floods      # one part: conformance or floods
#   scripts/h2-conformance.sh --cases 6.9,hpack  # only cases whose id or title contains one of these
#   scripts/h2-conformance.sh --strict           # count WARN (RFC-allowed, not the target behaviour) as failures
#   scripts/h2-conformance.sh --no-known         # ignore scripts/h2/known-deviations.txt: its cases FAIL
#   RINGWAY_BIN=... BACKEND_BIN=... scripts/h2-conformance.sh   # skip the build, use these binaries
#
# Verdicts: PASS; WARN (allowed by the RFC, not the target behaviour); KNOWN (against Ringway: a
# case listed in scripts/h2/known-deviations.txt, a deviation of the h2 crate, that answered
# exactly as listed there; any other answer is a FAIL); XPASS (a listed case that now passes: drop
# its line); FAIL; SKIP; INFO (floods against nginx: measured, not judged).
# Exit status: 0 no FAIL (KNOWN, XPASS and WARN are not failures; with --strict WARN is), 1 a case
# failed (a finding), 2 the suite could not run (a server did not start, Ringway does not speak
# h2c, the venv could not be made, the known-deviations file is malformed: never a pass).
#
# Installs what it needs, idempotently: a venv under target/pyenv-h2 with the PyPI packages h2,
# hyperframe and hpack (the system Python is left alone), python3-venv from Debian if the venv
# module is missing, and for --target nginx, nginx-light.
#
# What runs (details in scripts/h2/*.py):
#   - scripts/h2/upstream.py: a small threaded HTTP/1.1 upstream (echo, request-field dump, delays,
#     hop-by-hop response fields) that remembers which tagged requests reached it, so a case can
#     check that a malformed request was not forwarded;
#   - Ringway A (defaults, --workers 1) in front of it: scripts/h2/conformance.py, one line per
#     case, PASS / WARN / FAIL / SKIP, with what was expected, what came back and what was sent;
#   - Ringway B (--workers 1, low flood limits, short HTTP/2 timers) in front of
#     ringway-bench-backend: scripts/h2/floods.py, rapid reset, MadeYouReset, CONTINUATION (with
#     and without payload), PING, SETTINGS, empty DATA, WINDOW_UPDATE and PRIORITY floods and a
#     zero-window hold, each bounded in frames and time, with a normal client served meanwhile,
#     RSS bounded, Ringway alive; then the idle, keepalive-PING and header timers. The
#     zero-window hold (4 connections x 128 streams whose window stays 0, PINGs answered) expects
#     every stream reset (CANCEL) about --header-timeout after its response head, which frees the
#     upstream connection it held, no GOAWAY meanwhile, and a normal client queued behind them
#     served 200 within --header-timeout + 5 s; it stops when every stream has ended (or at 15 s).
#   Against nginx the floods are recorded, not judged (nginx has its own limits).
#
# Output: the case lines and a summary on stdout; raw material (server logs, the suites' output)
# in $H2_OUT (default: a new /tmp/ringway-h2.* folder).
# Knobs (environment): H2_TIMEOUT (seconds per read, default 3), H2_FLOOD_SECS (each flood's length,
# default 2.5), H2_RINGWAY_ARGS (extra flags for both Ringways).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

DRIVER=auto
TARGET=ringway
ONLY=conformance,floods
CASES=""
STRICT=()
KNOWN_FILE=scripts/h2/known-deviations.txt
while [ $# -gt 0 ]; do
  case "$1" in
    --driver) DRIVER="${2:-}"; shift; [ $# -eq 0 ] || shift ;;
    --driver=*) DRIVER="${1#--driver=}"; shift ;;
    --target) TARGET="${2:-}"; shift; [ $# -eq 0 ] || shift ;;
    --target=*) TARGET="${1#--target=}"; shift ;;
    --only) ONLY="${2:-}"; shift; [ $# -eq 0 ] || shift ;;
    --only=*) ONLY="${1#--only=}"; shift ;;
    --cases) CASES="${2:-}"; shift; [ $# -eq 0 ] || shift ;;
    --cases=*) CASES="${1#--cases=}"; shift ;;
    --strict) STRICT=(--strict); shift ;;
    --no-known) KNOWN_FILE=""; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "h2-conformance: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$DRIVER" in auto|uring|epoll) ;; *) echo "h2-conformance: --driver must be auto, uring or epoll" >&2; exit 2 ;; esac
case "$TARGET" in ringway|nginx) ;; *) echo "h2-conformance: --target must be ringway or nginx" >&2; exit 2 ;; esac
for p in ${ONLY//,/ }; do
  case "$p" in conformance|floods) ;; *) echo "h2-conformance: --only takes conformance,floods" >&2; exit 2 ;; esac
done
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }
TIMEOUT=${H2_TIMEOUT:-3}
START=$(date +%s)

# ---- tools ---------------------------------------------------------------------------------
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "h2-conformance: $* missing, and installing it needs root (apt-get install $*)" >&2; exit 2
  fi
  echo "h2-conformance: installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
}

venv=target/pyenv-h2
# A venv whose python no longer runs (the system Python changed underneath it) is made anew.
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "h2-conformance: could not make the venv $venv" >&2; exit 2; }
fi
PY="$venv/bin/python"
if ! "$PY" -c 'import h2, hyperframe, hpack' 2>/dev/null; then
  echo "h2-conformance: installing h2, hyperframe and hpack into $venv" >&2
  # Pinned to major versions: the suite uses h2's client state machine, hyperframe's frame parser
  # and hpack's decoder and Huffman tables.
  "$PY" -m pip install -q --disable-pip-version-check 'h2>=4.1,<5' 'hyperframe>=6,<7' 'hpack>=4,<5' \
    || { echo "h2-conformance: pip could not install h2, hyperframe, hpack" >&2; exit 2; }
fi

if [ "$TARGET" = nginx ] && ! command -v nginx >/dev/null 2>&1; then
  # Debian starts nginx on install: stop what this install started.
  before=$(pgrep -x nginx 2>/dev/null | tr '\n' ' ' || true)
  apt_install nginx-light
  if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1 || true; fi
  if command -v service >/dev/null 2>&1; then service nginx stop >/dev/null 2>&1 || true; fi
  for pid in $(pgrep -x nginx 2>/dev/null || true); do
    case " $before " in *" $pid "*) ;; *) kill "$pid" 2>/dev/null || true ;; esac
  done
fi

OUT="${H2_OUT:-$(mktemp -d /tmp/ringway-h2.XXXXXX)}"
mkdir -p "$OUT"

# cargo's output goes to $OUT/build.log; its last lines are shown if the build fails.
build() {
  cargo build --release "$@" >"$OUT/build.log" 2>&1 || {
    echo "h2-conformance: the build failed (cargo build --release $*; $OUT/build.log):" >&2
    tail -20 "$OUT/build.log" >&2
    exit 2
  }
}
BUILD_NOTE=""
if [ "$TARGET" = ringway ] && { [ -z "${RINGWAY_BIN:-}" ] || [ -z "${BACKEND_BIN:-}" ]; }; then
  echo "h2-conformance: building (release)" >&2
  t0=$(date +%s)
  build -p ringway -p ringway-bench
  BUILD_NOTE=" (of which $(( $(date +%s) - t0 )) s building)"
elif [ -z "${BACKEND_BIN:-}" ] && [ ! -x target/release/ringway-bench-backend ]; then
  echo "h2-conformance: building ringway-bench-backend (release)" >&2
  build -p ringway-bench --bin ringway-bench-backend
fi
RINGWAY_BIN="${RINGWAY_BIN:-target/release/ringway}"
BACKEND_BIN="${BACKEND_BIN:-target/release/ringway-bench-backend}"
[ -x "$BACKEND_BIN" ] || { echo "h2-conformance: $BACKEND_BIN is not an executable" >&2; exit 2; }
RW_EXTRA=()
if [ "$TARGET" = ringway ]; then
  [ -x "$RINGWAY_BIN" ] || { echo "h2-conformance: $RINGWAY_BIN is not an executable" >&2; exit 2; }
  HELP=$("$RINGWAY_BIN" --help 2>&1) || { echo "h2-conformance: $RINGWAY_BIN --help failed: $HELP" >&2; exit 2; }
  grep -q -- '--h2-max-concurrent-streams' <<<"$HELP" || { echo "h2-conformance: $RINGWAY_BIN has no --h2-* flags: no HTTP/2 to test" >&2; exit 2; }
  if grep -q -- '--io-driver' <<<"$HELP"; then
    RW_EXTRA+=(--io-driver "$DRIVER")
  elif [ "$DRIVER" != auto ]; then
    echo "h2-conformance: this Ringway has no --io-driver flag" >&2; exit 2
  fi
  grep -q -- '--drain-timeout' <<<"$HELP" && RW_EXTRA+=(--drain-timeout 1s)
  # shellcheck disable=SC2206 # word splitting wanted
  [ -n "${H2_RINGWAY_ARGS:-}" ] && RW_EXTRA+=(${H2_RINGWAY_ARGS})
fi

# ---- cleanup -------------------------------------------------------------------------------
PIDS=()  # every process this script started
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "h2-conformance: interrupted" >&2; exit 130' INT
trap 'echo "h2-conformance: terminated" >&2; exit 143' TERM

# ---- helpers -------------------------------------------------------------------------------
# N free loopback ports (bound together so they are distinct, then released).
free_ports() {
  "$PY" -c 'import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}
# Waits (up to 10 s) until 127.0.0.1:$1 accepts a connection, while pid $2 lives.
wait_listening() {
  for _ in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
# Does 127.0.0.1:$1 complete an HTTP/2 handshake (h2c, prior knowledge) within 3 s?
speaks_h2c() {
  "$PY" -B - "$1" <<'EOF' 2>/dev/null
import sys
sys.path.insert(0, "scripts/h2")
from h2wire import Conn, Target
with Conn(Target("127.0.0.1", int(sys.argv[1]), timeout=3)) as c:
    c.handshake()
EOF
}

UP_PORT="" UP_PID="" BK_PORT="" BK_PID=""
start_upstreams() {
  local pid
  for _ in 1 2 3 4 5; do
    read -r UP_PORT BK_PORT <<<"$(free_ports 2)"
    "$PY" -B scripts/h2/upstream.py "$UP_PORT" >"$OUT/upstream.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    if wait_listening "$UP_PORT" "$pid"; then UP_PID=$pid; break; fi
    kill "$pid" 2>/dev/null || true
  done
  [ -n "$UP_PID" ] || { echo "h2-conformance: the test upstream did not start (see $OUT/upstream.log)" >&2; exit 2; }
  for _ in 1 2 3 4 5; do
    "$BACKEND_BIN" "127.0.0.1:$BK_PORT" >"$OUT/backend.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    if wait_listening "$BK_PORT" "$pid"; then BK_PID=$pid; break; fi
    kill "$pid" 2>/dev/null || true
    BK_PORT=$(free_ports 1)
  done
  [ -n "$BK_PID" ] || { echo "h2-conformance: the backend did not start (see $OUT/backend.log)" >&2; exit 2; }
}

# Starts a Ringway (label, upstream port, flags...) and sets PORT and PID; 5 tries on fresh ports.
start_ringway() {
  local label=$1 up=$2 pid; shift 2
  for _ in 1 2 3 4 5; do
    PORT=$(free_ports 1)
    "$RINGWAY_BIN" --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$up" --workers 1 --log-level info \
      "${RW_EXTRA[@]}" "$@" >"$OUT/ringway-$label.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    if wait_listening "$PORT" "$pid"; then PID=$pid; return 0; fi
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  echo "h2-conformance: Ringway ($label) did not start (see $OUT/ringway-$label.log):" >&2
  tail -5 "$OUT/ringway-$label.log" >&2
  exit 2
}

# nginx with two h2c servers: the conformance one in front of the test upstream, the flood one
# in front of the backend. Sets CONF_PORT, FLOOD_PORT, CONF_PID=FLOOD_PID.
start_nginx() {
  local conf="$OUT/nginx.conf" pid d
  for _ in 1 2 3 4 5; do
    read -r CONF_PORT FLOOD_PORT <<<"$(free_ports 2)"
    {
      echo "# Written by scripts/h2-conformance.sh: h2c (prior knowledge) in front of HTTP/1.1 upstreams."
      echo "daemon off; master_process off; worker_processes 1;"
      echo "pid $OUT/nginx.pid; error_log $OUT/nginx-error.log warn;"
      echo "events { worker_connections 4096; }"
      echo "http {"
      echo "  access_log off;"
      for d in client_body proxy fastcgi uwsgi scgi; do echo "  ${d}_temp_path $OUT/nginx-$d;"; done
      cat <<EOF
  client_max_body_size 16m;
  upstream conformance_up { server 127.0.0.1:$UP_PORT; keepalive 32; }
  upstream flood_up { server 127.0.0.1:$BK_PORT; keepalive 32; }
  server {
    listen 127.0.0.1:$CONF_PORT http2;
    location / { proxy_pass http://conformance_up; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host \$http_host; }
  }
  server {
    listen 127.0.0.1:$FLOOD_PORT http2;
    location / { proxy_pass http://flood_up; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto http; }
  }
}
EOF
    } >"$conf"
    nginx -e "$OUT/nginx-error.log" -p "$OUT" -c "$conf" >"$OUT/nginx.log" 2>&1 </dev/null &
    pid=$!; PIDS+=("$pid")
    if wait_listening "$CONF_PORT" "$pid" && wait_listening "$FLOOD_PORT" "$pid"; then
      CONF_PID=$pid; FLOOD_PID=$pid; return 0
    fi
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  echo "h2-conformance: nginx did not start (see $OUT/nginx.log, $OUT/nginx-error.log):" >&2
  tail -5 "$OUT/nginx.log" "$OUT/nginx-error.log" >&2 2>/dev/null
  exit 2
}

# ---- servers -------------------------------------------------------------------------------
start_upstreams
# The flood instance's limits: low where that makes a flood quick and bounded; the rest default.
FLOOD_LIMITS=(--h2-max-pending-resets 20 --h2-max-local-error-resets 100 --h2-pings-settings-per-sec 100
  --h2-control-frames-per-sec 1000 --h2-empty-data-frames 100 --h2-max-header-list-size 16k)
FLOOD_TIMERS=(--h2-idle-timeout 3s --h2-ping-interval 1s --h2-ping-timeout 1s --header-timeout 2s)
if [ "$TARGET" = ringway ]; then
  start_ringway conformance "$UP_PORT"
  CONF_PORT=$PORT CONF_PID=$PID
  start_ringway floods "$BK_PORT" "${FLOOD_LIMITS[@]}" "${FLOOD_TIMERS[@]}"
  FLOOD_PORT=$PORT FLOOD_PID=$PID
  ACTUAL_DRIVER=$(grep -ho 'driver="[a-z_]*"' "$OUT"/ringway-*.log | sort -u | tr -d '"' | sed 's/driver=//' | paste -sd, -)
  echo "h2-conformance: $RINGWAY_BIN, driver ${ACTUAL_DRIVER:-?} (asked: $DRIVER); conformance on 127.0.0.1:$CONF_PORT (pid $CONF_PID, defaults), floods on 127.0.0.1:$FLOOD_PORT (pid $FLOOD_PID: ${FLOOD_LIMITS[*]} ${FLOOD_TIMERS[*]}); raw output in $OUT"
else
  start_nginx
  echo "h2-conformance: $(nginx -v 2>&1 | sed 's/^nginx version: //'), h2c on 127.0.0.1:$CONF_PORT (conformance) and :$FLOOD_PORT (floods), pid $CONF_PID; raw output in $OUT"
fi
for p in "$CONF_PORT" "$FLOOD_PORT"; do
  if ! speaks_h2c "$p"; then
    echo "h2-conformance: 127.0.0.1:$p does not complete an HTTP/2 (h2c, prior knowledge) handshake: nothing to test" >&2
    tail -5 "$OUT"/ringway-*.log "$OUT"/nginx-error.log 2>/dev/null >&2 || true
    exit 2
  fi
done

# ---- the suites ----------------------------------------------------------------------------
# Each in the background with a hard time limit, so that a signal reaches the traps at once.
run_suite() { # name limit-seconds command...
  local name=$1 limit=$2 rc=0; shift 2
  timeout -k 5 "$limit" "$@" > >(tee "$OUT/$name.out") 2>"$OUT/$name.err" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid" || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "h2-conformance: $name took over $limit s; stopped" >&2; rc=2
  elif [ "$rc" -gt 2 ]; then
    echo "h2-conformance: $name crashed (exit $rc):" >&2; tail -20 "$OUT/$name.err" >&2; rc=2
  fi
  return "$rc"
}

status=0
CONF_RC=-
FLOOD_RC=-
if wanted conformance; then
  echo "== conformance: $TARGET, 127.0.0.1:$CONF_PORT"
  CONF_RC=0
  KNOWN_ARGS=()
  # The known deviations are the h2 crate's: Ringway's only.
  [ "$TARGET" = ringway ] && [ -n "$KNOWN_FILE" ] && KNOWN_ARGS=(--known "$KNOWN_FILE")
  run_suite conformance 240 "$PY" -B scripts/h2/conformance.py --port "$CONF_PORT" --upstream-port "$UP_PORT" \
    --target "$TARGET" --timeout "$TIMEOUT" ${CASES:+--only "$CASES"} "${STRICT[@]}" "${KNOWN_ARGS[@]}" || CONF_RC=$?
  if [ "$CONF_RC" = 2 ]; then tail -3 "$OUT/conformance.err" >&2; fi
  if ! kill -0 "$CONF_PID" 2>/dev/null; then
    echo "h2-conformance: FAIL: the server under test died during the conformance cases (see $OUT)"; CONF_RC=1
  fi
fi
if wanted floods; then
  echo "== floods: $TARGET, 127.0.0.1:$FLOOD_PORT"
  FLOOD_RC=0
  run_suite floods 240 "$PY" -B scripts/h2/floods.py --port "$FLOOD_PORT" --pid "$FLOOD_PID" --target "$TARGET" \
    --timeout "$TIMEOUT" ${CASES:+--only "$CASES"} --limits "pending_resets=20,local_error_resets=100,pings=100,controls=1000,empty_data=100,idle=3,ping_interval=1,ping_timeout=1,header_timeout=2" || FLOOD_RC=$?
  if ! kill -0 "$FLOOD_PID" 2>/dev/null; then
    echo "h2-conformance: FAIL: the server under test died during the floods (see $OUT)"; FLOOD_RC=1
  fi
fi
for rc in $CONF_RC $FLOOD_RC; do
  [ "$rc" = - ] && continue
  if [ "$rc" = 2 ]; then status=2; elif [ "$rc" != 0 ] && [ "$status" = 0 ]; then status=1; fi
done

echo "h2-conformance: took $(( $(date +%s) - START )) s$BUILD_NOTE; raw output in $OUT"
if [ "$TARGET" = ringway ]; then
  for l in conformance floods; do
    n=$(grep -ciE 'panic|thread .* panicked' "$OUT/ringway-$l.log" || true)
    [ "$n" = 0 ] || echo "h2-conformance: note: ringway-$l.log mentions a panic $n time(s)"
  done
fi
# The counts of both suites (their "counts: K=N ..." lines), added up.
COUNTS=$(for f in "$OUT/conformance.out" "$OUT/floods.out"; do [ ! -f "$f" ] || cat "$f"; done | awk '
  /^counts: / { for (i = 2; i <= NF; i++) { split($i, kv, "="); n[kv[1]] += kv[2] } }
  END { s = ""; split("PASS WARN KNOWN XPASS FAIL INFO SKIP", order, " ")
        for (i = 1; i <= 7; i++) { k = order[i]; if (k in n && (n[k] || i <= 5)) s = s (s ? ", " : "") n[k] " " k }
        print s }')
WHAT="$TARGET${ACTUAL_DRIVER:+, driver $ACTUAL_DRIVER}"
case "$status" in
  0) echo "h2-conformance: PASS ($WHAT: ${COUNTS:-no counts})" ;;
  1) echo "h2-conformance: FAIL ($WHAT: ${COUNTS:-no counts}; findings above)" ;;
  *) echo "h2-conformance: ERROR: the suite could not be completed (see above and $OUT)" ;;
esac
exit "$status"
