#!/usr/bin/env bash
# Slow-client attacks against Ringway: slowloris (slow headers), R-U-Dead-Yet (slow body) and
# slow read, each run with slowhttptest for a bounded time while a normal client keeps sending
# requests. Shows that Ringway keeps serving normal clients and that its deadlines close the
# attack connections. Loopback only; every loop is bounded in count and time.
#
#   scripts/slow-clients.sh                   # 3 attacks of 20 s, up to 3000 connections each (~70 s)
#   scripts/slow-clients.sh --quick           # 3 attacks of 10 s, up to 2000 connections each (~40 s)
#   scripts/slow-clients.sh --driver epoll    # Ringway's --io-driver: auto (default), uring, epoll
#   scripts/slow-clients.sh --only slowread   # a subset of: slowloris,slowbody,slowread
#   RINGWAY_BIN=... BACKEND_BIN=... scripts/slow-clients.sh   # skip the build, use these binaries
#
# Pass criteria, per attack (exit status 1 if any fails, 2 if the test could not run):
#   - the normal client (curl every 100 ms to /1k, --max-time 2) gets 200 for >= 95 % of its
#     requests, and the p99 of their latency is under 1 s;
#   - after the attack Ringway is still up, answers 200, and its VmRSS is under 200 MiB;
#   - no attack connection stays ESTABLISHED on Ringway's side longer than the deadline that
#     applies plus 3 s of slack (sampling, accept queue, timer resolution). The deadline is the
#     header timeout for slowloris; for slow body and slow read it is the grace period of the
#     minimum client rate (which is the header timeout too): each attacker moves ~20 bytes per
#     second, some fifty times under the 1 KiB/s minimum, so it is due to be cut when the grace
#     ends. Lifetimes are measured by sampling `ss` on Ringway's listening port every 0.5 s,
#     telling connections apart by socket cookie (slowhttptest reuses a client port at once).
#
# slowhttptest notes: -c is the total number of connections it opens (at -r per second), not a
# number it keeps open, so -c = -r x -l keeps the pressure on for the whole attack; its CSV
# "Closed" column counts only closures it has noticed, which a slow reader notices late (its
# data is still buffered), so Ringway's own socket table and active-connection gauge are
# what the lifetimes and the "rw active" column come from.
#
# Output: a table on stdout; raw material (slowhttptest CSV/HTML/output, the samples, the normal
# client's results, Ringway's log) in $SLOW_OUT (default: a new /tmp/ringway-slow.* folder).
# Other knobs (environment): SLOW_LOG_LEVEL (Ringway --log-level, default info),
# SLOW_HEADER_TIMEOUT / SLOW_IDLE_TIMEOUT (seconds, default 5 / 10), SLOW_MIN_RATE (default 1k),
# SLOW_WORKERS (2), SLOW_MAX_CONNECTIONS (per worker, 8000), SLOW_RINGWAY_ARGS (extra flags).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

DRIVER=auto
QUICK=0
ONLY=slowloris,slowbody,slowread
while [ $# -gt 0 ]; do
  case "$1" in
    --driver) DRIVER="${2:-}"; shift; [ $# -eq 0 ] || shift ;;
    --driver=*) DRIVER="${1#--driver=}"; shift ;;
    --quick) QUICK=1; shift ;;
    --only) ONLY="${2:-}"; shift; [ $# -eq 0 ] || shift ;;
    --only=*) ONLY="${1#--only=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "slow-clients: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$DRIVER" in auto|uring|epoll) ;; *) echo "slow-clients: --driver must be auto, uring or epoll" >&2; exit 2 ;; esac
for a in ${ONLY//,/ }; do
  case "$a" in slowloris|slowbody|slowread) ;; *) echo "slow-clients: --only takes slowloris,slowbody,slowread" >&2; exit 2 ;; esac
done
[ -n "${ONLY//,/}" ] || { echo "slow-clients: --only names no attack" >&2; exit 2; }

# ---- settings ------------------------------------------------------------------------------
HEADER_TIMEOUT=${SLOW_HEADER_TIMEOUT:-5}  # seconds, Ringway --header-timeout (also the min-rate grace)
IDLE_TIMEOUT=${SLOW_IDLE_TIMEOUT:-10}     # seconds, Ringway --idle-timeout
WORKERS=${SLOW_WORKERS:-2}
MIN_RATE=${SLOW_MIN_RATE:-1k}             # Ringway --min-client-rate, where this Ringway has the flag
MAX_CONNS_PER_WORKER=${SLOW_MAX_CONNECTIONS:-8000} # above the attack's size: the deadlines are under test
SLACK=3                   # seconds allowed past a deadline
OK_PCT_MIN=95
P99_MS_MAX=1000
RSS_MIB_MAX=200
if [ "$QUICK" = 1 ]; then
  ATTACK_SECS=10; CONNS=2000; RATE=200
else
  ATTACK_SECS=20; CONNS=3000; RATE=150
fi
LOG_LEVEL="${SLOW_LOG_LEVEL:-info}"
START_NS=$(date +%s%N)

# ---- tools ---------------------------------------------------------------------------------
need=()
command -v slowhttptest >/dev/null 2>&1 || need+=(slowhttptest)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v timeout >/dev/null 2>&1 || need+=(coreutils)
if [ ${#need[@]} -gt 0 ]; then
  echo "slow-clients: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

BUILD_NOTE=""
if [ -z "${RINGWAY_BIN:-}" ] || [ -z "${BACKEND_BIN:-}" ]; then
  echo "slow-clients: building (release)" >&2
  cargo build --release --quiet -p ringway -p ringway-bench
  BUILD_NOTE=" (of which $(( ($(date +%s%N) - START_NS) / 1000000000 )) s building)"
fi
RINGWAY_BIN="${RINGWAY_BIN:-target/release/ringway}"
BACKEND_BIN="${BACKEND_BIN:-target/release/ringway-bench-backend}"
for b in "$RINGWAY_BIN" "$BACKEND_BIN"; do
  [ -x "$b" ] || { echo "slow-clients: $b is not an executable" >&2; exit 2; }
done

# Thousands of attack sockets on both ends need descriptors: raise the soft limit to the hard one.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

OUT="${SLOW_OUT:-$(mktemp -d /tmp/ringway-slow.XXXXXX)}"
mkdir -p "$OUT"

# ---- cleanup -------------------------------------------------------------------------------
BACKEND_PID=""
RINGWAY_PID=""
cleanup() {
  local rc=$?
  # A subshell caught by the signal before it reset its traps exits; the main shell cleans up.
  [ "$BASHPID" = "$$" ] || exit "$rc"
  trap - EXIT INT TERM
  set +e
  if [ -e "$OUT/.interrupted" ]; then
    rm -f "$OUT/.interrupted"
    echo "slow-clients: interrupted; stopping everything it started" >&2
    [ "$rc" -gt 128 ] || rc=143
  fi
  # Every background job of this shell: samplers, client loops, slowhttptest, the two servers.
  local pids
  pids=$(jobs -pr 2>/dev/null || true)
  # shellcheck disable=SC2086 # one pid a word
  [ -n "$pids" ] && kill $pids 2>/dev/null
  if [ -n "$RINGWAY_PID" ] && kill -0 "$RINGWAY_PID" 2>/dev/null; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$RINGWAY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$RINGWAY_PID" 2>/dev/null
  fi
  [ -n "$BACKEND_PID" ] && kill -KILL "$BACKEND_PID" 2>/dev/null
  wait 2>/dev/null
  exit "$rc"
}
trap cleanup EXIT
# A signal may land inside a command substitution, whose subshell is what exits: leave a mark
# so that the main shell's cleanup still reports the interruption.
trap 'touch "$OUT/.interrupted"; exit 130' INT
trap 'touch "$OUT/.interrupted"; exit 143' TERM

# ---- helpers -------------------------------------------------------------------------------
now_ns() { date +%s%N; }
pick_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 12000))   # below the ephemeral range (32768+)
    if [ -z "$(ss -Htan "( sport = :$p )")" ]; then echo "$p"; return 0; fi
  done
  return 1
}
http_code() { curl -s -o /dev/null --max-time "${2:-2}" -w '%{http_code}' "$1" 2>/dev/null || true; }
wait_200() { # url pid
  for _ in $(seq 1 50); do
    kill -0 "$2" 2>/dev/null || return 1
    [ "$(http_code "$1" 1)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
# The kernel's memory for all TCP sockets (system-wide; socket buffers are not in anyone's RSS).
tcp_mem_kib() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) * 4 }' /proc/net/sockstat 2>/dev/null || echo 0; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
metric() { # file key -> the value of the series key (e.g. ringway_x{worker="all"}), 0 if absent
  awk -v k="$2" '$1 == k {v = $2} END {print v + 0}' "$1"
}
active_conns() { # Ringway's active-connection gauge, or -1
  curl -s --max-time "${1:-1}" "http://127.0.0.1:$APORT/metrics" 2>/dev/null \
    | awk '$1 == "ringway_connections_active{worker=\"all\"}" {v = $2} END {print (v == "" ? -1 : v)}'
}

# ---- start the backend and Ringway ---------------------------------------------------------
for _ in 1 2 3 4 5; do
  BPORT=$(pick_port)
  "$BACKEND_BIN" "127.0.0.1:$BPORT" >"$OUT/backend.log" 2>&1 &
  BACKEND_PID=$!
  if wait_200 "http://127.0.0.1:$BPORT/0" "$BACKEND_PID"; then break; fi
  kill "$BACKEND_PID" 2>/dev/null; wait "$BACKEND_PID" 2>/dev/null || true; BACKEND_PID=""
done
[ -n "$BACKEND_PID" ] || { echo "slow-clients: the backend did not start (see $OUT/backend.log)" >&2; exit 2; }

HELP=$("$RINGWAY_BIN" --help)
rw_extra=()
if grep -q -- '--min-client-rate' <<<"$HELP"; then
  rw_extra+=(--min-client-rate "$MIN_RATE")
  RATE_NOTE="--min-client-rate $MIN_RATE"
else
  RATE_NOTE="no --min-client-rate in this Ringway: slow body and slow read meet only the idle timeout"
fi
if grep -q -- '--io-driver' <<<"$HELP"; then
  rw_extra+=(--io-driver "$DRIVER")
elif [ "$DRIVER" != auto ]; then
  echo "slow-clients: this Ringway has no --io-driver flag" >&2; exit 2
fi
grep -q -- '--drain-timeout' <<<"$HELP" && rw_extra+=(--drain-timeout 1s)
# shellcheck disable=SC2206
[ -n "${SLOW_RINGWAY_ARGS:-}" ] && rw_extra+=(${SLOW_RINGWAY_ARGS})

for _ in 1 2 3 4 5; do
  RPORT=$(pick_port); APORT=$(pick_port)
  [ "$RPORT" != "$APORT" ] || continue
  RW_ARGS=(--listen "127.0.0.1:$RPORT" --upstream "127.0.0.1:$BPORT" --admin "127.0.0.1:$APORT"
    --workers "$WORKERS" --header-timeout "${HEADER_TIMEOUT}s" --idle-timeout "${IDLE_TIMEOUT}s"
    --max-connections "$MAX_CONNS_PER_WORKER" --log-level "$LOG_LEVEL" "${rw_extra[@]}")
  "$RINGWAY_BIN" "${RW_ARGS[@]}" >"$OUT/ringway.log" 2>&1 &
  RINGWAY_PID=$!
  if wait_200 "http://127.0.0.1:$RPORT/1k" "$RINGWAY_PID"; then break; fi
  kill "$RINGWAY_PID" 2>/dev/null; wait "$RINGWAY_PID" 2>/dev/null || true; RINGWAY_PID=""
done
[ -n "$RINGWAY_PID" ] || { echo "slow-clients: Ringway did not start (see $OUT/ringway.log):" >&2; tail -5 "$OUT/ringway.log" >&2; exit 2; }
ACTUAL_DRIVER=$(grep -o 'driver="[a-z_]*"' "$OUT/ringway.log" | sort -u | tr -d '"' | sed 's/driver=//' | paste -sd, -)

echo "slow-clients: ringway ${RW_ARGS[*]}"
echo "slow-clients: pid $RINGWAY_PID, driver ${ACTUAL_DRIVER:-?} (asked: $DRIVER); backend 127.0.0.1:$BPORT; ulimit -n $(ulimit -n)"
echo "slow-clients: $RATE_NOTE"
echo "slow-clients: attacks of ${ATTACK_SECS} s, -c $CONNS -r $RATE; raw output in $OUT"

# ---- one attack ----------------------------------------------------------------------------
# Samples every 0.5 s, until $1 (ns): Ringway's own socket table on its port (every state, with
# the peer and socket cookie), its active-connection gauge and its RSS.
sampler() {
  local end=$1 file=$2 t
  while [ "$(now_ns)" -lt "$end" ]; do
    t=$(date +%s.%N)
    echo "S $t $(active_conns 0.4) $(rss_kib "$RINGWAY_PID") $(tcp_mem_kib)"
    # The socket cookie (sk:) tells connections apart: the attacker reuses a client port as
    # soon as Ringway has closed the connection on it.
    ss -Htne "( sport = :$RPORT )" \
      | awk -v t="$t" '{ sk = "-"; for (i = 6; i <= NF; i++) if ($i ~ /^sk:/) sk = $i; print "C", t, $1, $5 "/" sk, $3 }'
    sleep 0.5
  done >"$file"
}
# The normal client: a request every 100 ms to /1k until $1 (ns), at most $3 requests.
normal_client() {
  local end=$1 file=$2 max=$3 n=0
  : >"$file"
  while [ "$(now_ns)" -lt "$end" ] && [ "$n" -lt "$max" ]; do
    curl -s -o /dev/null --max-time 2 -w '%{http_code} %{time_total}\n' \
      "http://127.0.0.1:$RPORT/1k" >>"$file" 2>/dev/null || true
    n=$((n + 1))
    sleep 0.1
  done
}

RESULTS=()   # one line per attack: fields for the table
NOTES=()     # observations that are not pass criteria
FAILS=()     # one line per failed criterion

run_attack() {
  local name=$1 label=$2; shift 2
  local prefix="$OUT/$DRIVER-$name" t0 attack_end client_end sampler_end
  local log_before
  log_before=$(wc -l <"$OUT/ringway.log")
  curl -s --max-time 2 "http://127.0.0.1:$APORT/metrics" >"$prefix.metrics-before" || true
  echo "slow-clients: $label: slowhttptest $* -c $CONNS -r $RATE -l $ATTACK_SECS" >&2

  t0=$(now_ns)
  attack_end=$((t0 + ATTACK_SECS * 1000000000))
  sampler_end=$((attack_end + 1500000000))
  sampler "$sampler_end" "$prefix.samples" &
  local sampler_pid=$!
  timeout -k 2 $((ATTACK_SECS + 15)) slowhttptest "$@" -c "$CONNS" -r "$RATE" -l "$ATTACK_SECS" \
    -p 2 -g -o "$prefix" >"$prefix.out" 2>&1 &
  local attack_pid=$!
  # The normal client starts once the attack has ramped up for a second and stops a second
  # before the attack's end, so every one of its requests meets the attack.
  sleep 1
  client_end=$((attack_end - 1000000000))
  normal_client "$client_end" "$prefix.normal" $((ATTACK_SECS * 10)) &
  local client_pid=$!
  wait "$client_pid" || true
  local attack_rc=0
  wait "$attack_pid" || attack_rc=$?
  # Ringway after the attack: alive, answering, and its memory.
  local alive=yes after_code rss_after
  sleep 0.5
  kill -0 "$RINGWAY_PID" 2>/dev/null || alive=no
  after_code=$(http_code "http://127.0.0.1:$RPORT/1k" 2)
  [ "$after_code" = 200 ] || alive=no
  rss_after=$(rss_kib "$RINGWAY_PID")
  wait "$sampler_pid" || true
  curl -s --max-time 2 "http://127.0.0.1:$APORT/metrics" >"$prefix.metrics-after" || true
  # Wait (bounded) for the attack's connections to be gone before the next attack.
  local left=-1
  for _ in $(seq 1 15); do
    left=$(active_conns 1)
    [ "${left:-1}" -le 1 ] 2>/dev/null && break
    sleep 0.2
  done
  local secs=$(( ($(now_ns) - t0) / 1000000 ))

  # -- normal client: success rate and p99 --
  local total ok pct p99_ms
  total=$(wc -l <"$prefix.normal")
  ok=$(awk '$1 == 200' "$prefix.normal" | wc -l)
  pct=$(awk -v o="$ok" -v t="$total" 'BEGIN { if (t == 0) print "0.0"; else printf "%.1f", 100 * o / t }')
  p99_ms=$(awk '{print $2}' "$prefix.normal" | sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) { print 99999; exit }
    i = int(0.99 * NR); if (i < 0.99 * NR) i++; if (i < 1) i = 1; printf "%d", v[i] * 1000 }')
  local codes
  codes=$(awk '{c[$1]++} END {for (k in c) printf "%s%s×%d", (n++ ? " " : ""), k, c[k]}' "$prefix.normal")

  # -- Ringway's side: connection lifetimes from the ss samples, gauge and RSS peaks --
  local bound=$((HEADER_TIMEOUT + SLACK)) life
  life=$(awk -v bound="$bound" '
    $1 == "S" { if ($3 > amax) amax = $3; if ($4 > rmax) rmax = $4; if (NR == 1) k0 = $5; if ($5 > kmax) kmax = $5; next }
    $1 == "C" {
      t = $2; st = $3; k = $4; q[t] += $5
      if (st != "ESTAB") { if (st ~ /FIN-WAIT|CLOSING|LAST-ACK/) { fw[t]++ } ; next }
      if (k in last && t - last[k] > 1.6) { close1(k) }
      if (!(k in first)) first[k] = t
      last[k] = t
    }
    function close1(k,   d) { d = last[k] - first[k]; n++; if (d > max) max = d; if (d > bound) over++; sum += d; delete first[k]; delete last[k] }
    END {
      for (k in first) close1(k)
      for (t in fw) if (fw[t] > fwmax) fwmax = fw[t]
      for (t in q) if (q[t] > qmax) qmax = q[t]
      printf "%.1f %d %d %d %d %d %d %d %d\n", max, over + 0, n + 0, amax + 0, rmax + 0, fwmax + 0, k0 + 0, kmax + 0, qmax / 1024
    }' "$prefix.samples")
  local max_life over nconn active_max rss_peak finwait_max tcp_before tcp_peak sendq_peak
  read -r max_life over nconn active_max rss_peak finwait_max tcp_before tcp_peak sendq_peak <<<"$life"

  # -- slowhttptest's own view (CSV: Seconds,Closed,Pending,Connected,Service Available) --
  local csv="$prefix.csv" csv_max_connected=0 csv_series="-" csv_closed=0
  if [ -s "$csv" ]; then
    csv_max_connected=$(awk -F, 'NR > 1 && $4 > m {m = $4} END {print m + 0}' "$csv")
    csv_closed=$(awk -F, 'NR > 1 {c = $2} END {print c + 0}' "$csv")
    csv_series=$(awk -F, 'NR > 1 {printf "%s%s", (NR > 2 ? " " : ""), $4}' "$csv")
  fi
  local exit_line
  exit_line=$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$prefix.out" | grep -i 'exit status' | tail -1 | sed 's/^ *//' || true)

  # -- Ringway's counters over the attack, and what it logged --
  local mb="$prefix.metrics-before" ma="$prefix.metrics-after" deltas="" m
  for m in 'responses_total{worker="all",class="2xx"}|2xx' 'responses_total{worker="all",class="4xx"}|4xx' \
           'responses_total{worker="all",class="5xx"}|5xx' 'connections_accepted_total{worker="all"}|accepted' \
           'connections_refused_total{worker="all"}|refused' 'bad_requests_total{worker="all"}|bad_requests' \
           'upstream_connects_total{worker="all"}|upstream_connects' 'upstream_errors_total{worker="all"}|upstream_errors'; do
    local key=${m%|*} lab=${m##*|} a b
    [ -s "$ma" ] || break
    b=$(metric "$mb" "ringway_$key"); a=$(metric "$ma" "ringway_$key")
    deltas+="$lab +$((a - b)) "
  done
  local log_lines
  log_lines=$(tail -n +"$((log_before + 1))" "$OUT/ringway.log" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g')

  echo "== $label ($name), driver ${ACTUAL_DRIVER:-$DRIVER}, ${secs} ms"
  echo "   slowhttptest: ${exit_line:-no exit line} (rc $attack_rc); connected per second: $csv_series"
  echo "   slowhttptest: max connected $csv_max_connected, closed (cumulative) $csv_closed"
  echo "   ringway: max active $active_max, peak RSS $((rss_peak / 1024)) MiB, RSS after $((rss_after / 1024)) MiB, active $left once the attacker left"
  echo "   ringway side (ss): $nconn connections seen, longest ESTABLISHED ${max_life} s, $over over ${bound} s, max FIN-WAIT/closing $finwait_max"
  echo "   kernel TCP memory (system-wide): $((tcp_before / 1024)) MiB before, peak $((tcp_peak / 1024)) MiB; peak unsent bytes queued on Ringway's client sockets $((sendq_peak / 1024)) MiB"
  local pressure_kib
  pressure_kib=$(awk '{print $2 * 4}' /proc/sys/net/ipv4/tcp_mem 2>/dev/null || echo 0)
  if [ "$pressure_kib" -gt 0 ] && [ "$tcp_peak" -ge "$pressure_kib" ]; then
    NOTES+=("note: $label drove the kernel's TCP memory to $((tcp_peak / 1024)) MiB, past net.ipv4.tcp_mem's pressure threshold ($((pressure_kib / 1024)) MiB): socket buffers of held connections, not counted in Ringway's RSS")
    echo "   ${NOTES[-1]}"
  fi
  echo "   ringway counters: ${deltas:-unavailable}"
  echo "   normal client: $ok/$total 200 ($pct %), p99 ${p99_ms} ms; codes: ${codes:-none}"
  if [ -n "$log_lines" ]; then
    echo "   ringway log ($(wc -l <<<"$log_lines") new lines; most frequent messages):"
    sed -E 's/^[^ ]+ +//; s/conn=[0-9]+/conn=N/g; s/127\.0\.0\.1:[0-9]+/ADDR/g' <<<"$log_lines" \
      | sort | uniq -c | sort -rn | head -5 | sed 's/^/     /'
  else
    echo "   ringway log: nothing new at --log-level $LOG_LEVEL"
  fi

  # -- criteria --
  local verdict=PASS
  fail() { FAILS+=("FAIL: $label: $1"); verdict=FAIL; }
  [ "$csv_max_connected" -ge 100 ] || [ "$nconn" -ge 100 ] || fail "the attack never held 100 connections (slowhttptest max $csv_max_connected, ss $nconn): test invalid"
  [ "$total" -ge 10 ] || fail "the normal client made only $total requests"
  awk -v p="$pct" -v m="$OK_PCT_MIN" 'BEGIN {exit !(p >= m)}' || fail "normal client success $pct % < $OK_PCT_MIN % ($ok/$total; $codes)"
  [ "$p99_ms" -lt "$P99_MS_MAX" ] || fail "normal client p99 ${p99_ms} ms >= ${P99_MS_MAX} ms"
  [ "$alive" = yes ] || fail "Ringway not serving after the attack (process alive: $(kill -0 "$RINGWAY_PID" 2>/dev/null && echo yes || echo no), GET /1k -> ${after_code:-none})"
  [ "$rss_after" -lt $((RSS_MIB_MAX * 1024)) ] || fail "Ringway RSS after the attack $((rss_after / 1024)) MiB >= $RSS_MIB_MAX MiB"
  awk -v l="$max_life" -v b="$bound" 'BEGIN {exit !(l <= b)}' \
    || fail "attack connections held open up to ${max_life} s (> ${HEADER_TIMEOUT} s deadline + ${SLACK} s slack; $over of $nconn connections over)"
  RESULTS+=("$label|$ok/$total ($pct%)|$p99_ms|$csv_max_connected|$active_max|$max_life|$bound|$((rss_after / 1024))/$((rss_peak / 1024))|$alive|$verdict")
}

wanted() { [[ ",$ONLY," == *",$1,"* ]]; }
wanted slowloris && run_attack slowloris "slowloris" -H -i 1 -x 10 -u "http://127.0.0.1:$RPORT/1k"
wanted slowbody && run_attack slowbody "slow body" -B -i 1 -x 10 -s 65536 -u "http://127.0.0.1:$RPORT/1k"
wanted slowread && run_attack slowread "slow read" -X -k 1 -w 16 -y 64 -n 2 -z 32 -u "http://127.0.0.1:$RPORT/1m"

# ---- report --------------------------------------------------------------------------------
echo
echo "Ringway under slow clients — driver ${ACTUAL_DRIVER:-$DRIVER}, --header-timeout ${HEADER_TIMEOUT}s --idle-timeout ${IDLE_TIMEOUT}s --workers $WORKERS${RATE_NOTE:+, $RATE_NOTE}"
fmt="%-10s | %-18s | %7s | %9s | %9s | %9s | %5s | %7s | %5s | %s\n"
# shellcheck disable=SC2059
printf "$fmt" attack "normal 200s" "p99 ms" "atk conns" "rw active" "max held" "bound" "RSS MiB" alive verdict
printf "%s\n" "-----------+--------------------+---------+-----------+-----------+-----------+-------+---------+-------+--------"
for r in "${RESULTS[@]}"; do
  IFS='|' read -r a b c d e f g h i j <<<"$r"
  # shellcheck disable=SC2059
  printf "$fmt" "$a" "$b" "$c" "$d" "$e" "${f} s" "${g} s" "$h" "$i" "$j"
done
echo "(criteria: normal 200s >= ${OK_PCT_MIN} %, p99 < ${P99_MS_MAX} ms, alive, RSS after < ${RSS_MIB_MAX} MiB, max held <= bound;"
echo " RSS MiB = after the attack / peak during it,"
echo " atk conns = slowhttptest's max connected, rw active = Ringway's max active-connection gauge,"
echo " max held = longest an attack connection stayed ESTABLISHED on Ringway's port)"
echo "slow-clients: took $(( ($(now_ns) - START_NS) / 1000000000 )) s$BUILD_NOTE; raw output in $OUT"
[ ${#NOTES[@]} -eq 0 ] || printf "%s\n" "${NOTES[@]}"
if [ ${#FAILS[@]} -gt 0 ]; then
  printf "%s\n" "${FAILS[@]}"
  exit 1
fi
echo "slow-clients: PASS"
