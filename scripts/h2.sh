#!/usr/bin/env bash
# HTTP/2 interop and load: h2load and nghttp (nghttp2's clients) against Ringway's h2c (prior
# knowledge on the plain listener) and h2 over TLS (ALPN), Ringway in front of
# ringway-bench-backend (HTTP/1.1). Loopback only; every wait is bounded.
#
#   scripts/h2.sh                          # Ringway's --io-driver auto
#   scripts/h2.sh --driver epoll           # auto (default), uring, epoll, or both (one after the other)
#   scripts/h2.sh --quick                  # h2load -n 2000 instead of 20000
#   RINGWAY_BIN=... BACKEND_BIN=... TESTCERT_BIN=... scripts/h2.sh   # skip the build, use these binaries
#
# Exit status: 0 every check passed, 1 a check failed, 2 the test could not run (a tool could
# not be installed, a binary is missing, a server did not start: never a pass).
#
# Checks, per driver:
#   - h2load -n 20000 -c 16 -m 100, on h2c and on TLS: the summary says every request done and
#     succeeded, 0 failed, 0 errored, 0 timeout, and all of them 2xx; over TLS the application
#     protocol is h2. A run that takes over 120 s fails.
#   - nghttp -nv (GET /1k, and a 1 MiB POST) on h2c and on TLS: exit 0; its trace shows the
#     server's SETTINGS, a HEADERS frame with :status 200, DATA frames carrying the whole body
#     and END_STREAM, no RST_STREAM or GOAWAY with an error code from the server, and the
#     client's own GOAWAY(NO_ERROR) at the end (a clean end); over TLS the negotiated protocol
#     is h2.
#   - Ringway is still running afterwards; its HTTP/2 counters from /metrics are printed.
#
# Installs nghttp2-client (h2load, nghttp) with apt-get when either is missing, and curl.
# Output: a summary on stdout; raw material (h2load and nghttp output, Ringway's and the
# backend's logs, /metrics) in $H2_OUT (default: a new /tmp/ringway-h2.* folder).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

DRIVER=auto
REQUESTS=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --driver) DRIVER="${2:-}"; shift; [ $# -eq 0 ] || shift ;;
    --driver=*) DRIVER="${1#--driver=}"; shift ;;
    --quick) REQUESTS=2000; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "h2: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$DRIVER" in
  auto|uring|epoll) DRIVERS=("$DRIVER") ;;
  both) DRIVERS=(uring epoll) ;;
  *) echo "h2: --driver must be auto, uring, epoll or both" >&2; exit 2 ;;
esac
CLIENTS=16
STREAMS=100
H2LOAD_SECS=120
START=$(date +%s)

# ---- tools ---------------------------------------------------------------------------------
need=()
{ command -v h2load >/dev/null 2>&1 && command -v nghttp >/dev/null 2>&1; } || need+=(nghttp2-client)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v timeout >/dev/null 2>&1 || need+=(coreutils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "h2: ${need[*]} missing, and installing it needs root (apt-get install ${need[*]})" >&2; exit 2
  fi
  echo "h2: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; } \
    || { echo "h2: could not install ${need[*]}" >&2; exit 2; }
fi

if [ -z "${RINGWAY_BIN:-}" ] || [ -z "${BACKEND_BIN:-}" ] || [ -z "${TESTCERT_BIN:-}" ]; then
  echo "h2: building (release)" >&2
  cargo build --release --quiet -p ringway -p ringway-bench || { echo "h2: the build failed" >&2; exit 2; }
fi
RINGWAY_BIN="${RINGWAY_BIN:-target/release/ringway}"
BACKEND_BIN="${BACKEND_BIN:-target/release/ringway-bench-backend}"
TESTCERT_BIN="${TESTCERT_BIN:-target/release/ringway-testcert}"
for b in "$RINGWAY_BIN" "$BACKEND_BIN" "$TESTCERT_BIN"; do
  [ -x "$b" ] || { echo "h2: $b is not an executable" >&2; exit 2; }
done
HELP=$("$RINGWAY_BIN" --help 2>&1) || { echo "h2: $RINGWAY_BIN --help failed: $HELP" >&2; exit 2; }
for flag in --listen-tls --no-http2; do
  grep -q -- "$flag" <<<"$HELP" || { echo "h2: $RINGWAY_BIN has no $flag: no HTTP/2 to test" >&2; exit 2; }
done

OUT="${H2_OUT:-$(mktemp -d /tmp/ringway-h2.XXXXXX)}"
mkdir -p "$OUT"

# ---- cleanup -------------------------------------------------------------------------------
BACKEND_PID=""
RINGWAY_PID=""
stop() { # pid: TERM, up to 2 s, then KILL
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 20); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  local pids
  pids=$(jobs -pr 2>/dev/null || true)
  # shellcheck disable=SC2086 # one pid a word
  [ -n "$pids" ] && kill $pids 2>/dev/null
  stop "$RINGWAY_PID"
  stop "$BACKEND_PID"
  wait 2>/dev/null
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "h2: interrupted" >&2; exit 130' INT
trap 'echo "h2: terminated" >&2; exit 143' TERM

# ---- helpers -------------------------------------------------------------------------------
# N distinct free loopback ports (bound together, then released).
free_ports() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
  else
    local ports=() p
    while [ ${#ports[@]} -lt "$1" ]; do
      p=$((20000 + RANDOM % 12000))   # below the ephemeral range (32768+)
      [[ " ${ports[*]} " == *" $p "* ]] && continue
      [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] && ports+=("$p")
    done
    echo "${ports[*]}"
  fi
}
http_code() { curl -s -o /dev/null --max-time "${2:-2}" -w '%{http_code}' "$1" 2>/dev/null || true; }
wait_200() { # url pid: up to 10 s
  for _ in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || return 1
    [ "$(http_code "$1" 1)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
FAILS=()
fail() { FAILS+=("$1"); echo "h2: FAIL: $1"; }
pass() { echo "h2: ok: $1"; }

# The certificate (ECDSA, for localhost and 127.0.0.1) and a 1 MiB request body.
rm -rf "${OUT:?}/certs"
"$TESTCERT_BIN" "$OUT/certs" localhost,127.0.0.1 >/dev/null || { echo "h2: ringway-testcert failed" >&2; exit 2; }
head -c 1048576 /dev/urandom >"$OUT/upload.bin"

# ---- the backend ---------------------------------------------------------------------------
for _ in 1 2 3 4 5; do
  read -r BPORT <<<"$(free_ports 1)"
  "$BACKEND_BIN" "127.0.0.1:$BPORT" >"$OUT/backend.log" 2>&1 &
  BACKEND_PID=$!
  if wait_200 "http://127.0.0.1:$BPORT/0" "$BACKEND_PID"; then break; fi
  stop "$BACKEND_PID"; BACKEND_PID=""
done
[ -n "$BACKEND_PID" ] || { echo "h2: the backend did not start (see $OUT/backend.log)" >&2; exit 2; }

# ---- checks --------------------------------------------------------------------------------
# h2load against URL: asserts the summary. Label, URL, then extra h2load flags.
check_h2load() {
  local label=$1 url=$2 file="$OUT/$DRV-h2load-$1.txt" rc=0
  shift 2
  timeout -k 5 "$H2LOAD_SECS" h2load -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" "$@" "$url" >"$file" 2>&1 &
  wait "$!" || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    fail "$DRV $label: h2load still running after ${H2LOAD_SECS} s (see $file)"; return
  fi
  local req codes
  req=$(grep -E '^requests: ' "$file" || true)
  codes=$(grep -E '^status codes: ' "$file" || true)
  echo "h2: $DRV $label: $(grep -E '^finished in' "$file" || echo 'no finish line')"
  echo "      $req"
  echo "      $codes"
  if [ -z "$req" ] || [ -z "$codes" ]; then
    fail "$DRV $label: no h2load summary (exit $rc; see $file)"; return
  fi
  # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
  local total ndone ok failed errored tmo x2
  total=$(sed -E 's/.* ([0-9]+) total.*/\1/' <<<"$req")
  ndone=$(sed -E 's/.* ([0-9]+) done.*/\1/' <<<"$req")
  ok=$(sed -E 's/.* ([0-9]+) succeeded.*/\1/' <<<"$req")
  failed=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$req")
  errored=$(sed -E 's/.* ([0-9]+) errored.*/\1/' <<<"$req")
  tmo=$(sed -E 's/.* ([0-9]+) timeout.*/\1/' <<<"$req")
  x2=$(sed -E 's/.* ([0-9]+) 2xx.*/\1/' <<<"$codes")
  local bad=""
  [ "$total" = "$REQUESTS" ] && [ "$ndone" = "$REQUESTS" ] && [ "$ok" = "$REQUESTS" ] || bad+=" done/succeeded $ndone/$ok of $REQUESTS;"
  [ "$failed" = 0 ] && [ "$errored" = 0 ] && [ "$tmo" = 0 ] || bad+=" $failed failed, $errored errored, $tmo timeout;"
  [ "$x2" = "$REQUESTS" ] || bad+=" $x2 of $REQUESTS 2xx;"
  if [[ "$url" == https:* ]] && ! grep -q '^Application protocol: h2$' "$file"; then
    bad+=" application protocol $(grep '^Application protocol' "$file" || echo none), not h2;"
  fi
  [ "$rc" = 0 ] || bad+=" h2load exited $rc;"
  if [ -n "$bad" ]; then fail "$DRV $label:$bad (see $file)"; else pass "$DRV $label"; fi
}

# nghttp -nv against URL: asserts the frame trace. Label, URL, expected body bytes, then extra
# nghttp flags.
check_nghttp() {
  local label=$1 url=$2 want=$3 file="$OUT/$DRV-nghttp-$1.txt" rc=0
  shift 3
  timeout -k 5 30 nghttp -nv -t 20 "$@" "$url" >"$file" 2>&1 &
  wait "$!" || rc=$?
  local bad=""
  [ "$rc" = 0 ] || bad+=" nghttp exited $rc;"
  grep -q 'recv SETTINGS frame' "$file" || bad+=" no SETTINGS from the server;"
  grep -qE 'recv \(stream_id=[0-9]+\) :status: 200' "$file" || bad+=" no :status 200;"
  grep -qE 'recv HEADERS frame' "$file" || bad+=" no HEADERS frame;"
  grep -qE 'recv DATA frame' "$file" || bad+=" no DATA frame;"
  local got
  got=$(awk '/recv DATA frame <length=/ { sub(/.*<length=/, ""); sub(/,.*/, ""); n += $0 } END { print n + 0 }' "$file")
  [ "$got" = "$want" ] || bad+=" $got body bytes in DATA frames, want $want;"
  grep -A1 'recv DATA frame' "$file" | grep -q '; END_STREAM' || bad+=" no END_STREAM on a DATA frame;"
  # RST_STREAM(NO_ERROR) after a complete response is allowed (RFC 9113 §8.1); any other is not.
  if grep -A1 'recv RST_STREAM' "$file" | grep 'error_code=' | grep -qv 'error_code=NO_ERROR'; then
    bad+=" the server reset the stream with an error;"
  fi
  # A GOAWAY from the server (Ringway may end an idle connection) must carry NO_ERROR.
  if grep -A1 'recv GOAWAY' "$file" | grep 'error_code=' | grep -qv 'error_code=NO_ERROR'; then
    bad+=" the server sent GOAWAY with an error;"
  fi
  grep -A1 'send GOAWAY' "$file" | grep -q 'error_code=NO_ERROR' || bad+=" no clean GOAWAY(NO_ERROR) at the end;"
  if [[ "$url" == https:* ]] && ! grep -q 'negotiated protocol: h2' "$file"; then
    bad+=" ALPN did not select h2;"
  fi
  if [ -n "$bad" ]; then fail "$DRV nghttp $label:$bad (see $file)"; else pass "$DRV nghttp $label"; fi
}

run_driver() {
  DRV=$1
  local rport tport aport
  RINGWAY_PID=""
  for _ in 1 2 3 4 5; do
    read -r rport tport aport <<<"$(free_ports 3)"
    RW_ARGS=(--listen "127.0.0.1:$rport" --listen-tls "127.0.0.1:$tport"
      --tls-cert "$OUT/certs/localhost.pem" --tls-key "$OUT/certs/localhost.key"
      --upstream "127.0.0.1:$BPORT" --admin "127.0.0.1:$aport" --workers 2
      --io-driver "$DRV" --drain-timeout 1s --log-level info)
    "$RINGWAY_BIN" "${RW_ARGS[@]}" >"$OUT/ringway-$DRV.log" 2>&1 &
    RINGWAY_PID=$!
    if wait_200 "http://127.0.0.1:$rport/0" "$RINGWAY_PID"; then break; fi
    stop "$RINGWAY_PID"; RINGWAY_PID=""
  done
  if [ -z "$RINGWAY_PID" ]; then
    echo "h2: Ringway ($DRV) did not start (see $OUT/ringway-$DRV.log):" >&2
    tail -5 "$OUT/ringway-$DRV.log" >&2
    exit 2
  fi
  local actual
  actual=$(grep -o 'driver="[a-z_]*"' "$OUT/ringway-$DRV.log" | sort -u | tr -d '"' | sed 's/driver=//' | paste -sd, -)
  echo "h2: ringway ${RW_ARGS[*]}"
  echo "h2: driver ${actual:-?} (asked: $DRV); backend 127.0.0.1:$BPORT; raw output in $OUT"

  check_h2load h2c "http://127.0.0.1:$rport/1k"
  check_h2load tls "https://127.0.0.1:$tport/1k"
  check_nghttp h2c-get "http://127.0.0.1:$rport/1k" 1024
  check_nghttp tls-get "https://127.0.0.1:$tport/1k" 1024
  check_nghttp h2c-post "http://127.0.0.1:$rport/64k" 65536 -d "$OUT/upload.bin"
  check_nghttp tls-post "https://127.0.0.1:$tport/64k" 65536 -d "$OUT/upload.bin"

  curl -s --max-time 2 "http://127.0.0.1:$aport/metrics" >"$OUT/metrics-$DRV.txt" || true
  if kill -0 "$RINGWAY_PID" 2>/dev/null && [ "$(http_code "http://127.0.0.1:$rport/0" 2)" = 200 ]; then
    pass "$DRV: Ringway still serving after the runs"
  else
    fail "$DRV: Ringway not serving after the runs (see $OUT/ringway-$DRV.log)"
  fi
  local counters
  counters=$(grep -E '^ringway_(h2_[a-z_]*|responses_total)\{worker="all"' "$OUT/metrics-$DRV.txt" | paste -sd' ' - || true)
  echo "h2: $DRV counters: ${counters:-none found}"
  stop "$RINGWAY_PID"; RINGWAY_PID=""
}

echo "h2: h2load -n $REQUESTS -c $CLIENTS -m $STREAMS; drivers: ${DRIVERS[*]}"
for d in "${DRIVERS[@]}"; do run_driver "$d"; done

echo "h2: took $(( $(date +%s) - START )) s"
if [ ${#FAILS[@]} -gt 0 ]; then
  echo "h2: FAIL (${#FAILS[@]}):"
  printf '  %s\n' "${FAILS[@]}"
  exit 1
fi
echo "h2: PASS"
