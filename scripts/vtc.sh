#!/usr/bin/env bash
# Runs the HTTP/1 framing conformance suite (tests/vtc/*.vtc) with varnishtest against Ringway,
# or replays it against nginx or HAProxy to document what they do with the same bytes.
#
#   scripts/vtc.sh                          # every case against Ringway on io_uring
#   scripts/vtc.sh --driver epoll           # the same on epoll
#   scripts/vtc.sh 05- 10-path              # only the cases whose file name contains 05- or 10-path
#   scripts/vtc.sh --contender nginx --report     # replay against nginx, then rewrite docs/conformance.md
#   scripts/vtc.sh --contender all --report       # Ringway, nginx and HAProxy, then the doc
#
# Options:
#   --contender ringway|nginx|haproxy|all   default ringway
#   --driver uring|epoll                    Ringway's --io-driver, default uring
#   --workers N                             Ringway worker threads, default 1
#   --timeout S                             varnishtest -t per case, default 10
#   --jobs N                                cases run at once, default 2 (each has its own ports
#                                           and its own contender process)
#   --report                                rewrite docs/conformance.md from the latest results
#   --verbose                               print the varnishtest log of every failing case
#
# Environment: RINGWAY_BIN, a Ringway binary to use instead of building target/release/ringway.
#
# For every case the runner picks two free loopback ports, starts the contender on the proxy port
# with its upstream at the origin port, waits until it accepts, runs
#   varnishtest -L -v -t T -D origin_port=O -D proxy_port=P case.vtc
# and stops the contender (its whole process group). A case may declare extra Ringway arguments on a comment line
#   # ringway-args: --max-body-bytes 1k
# (--max-body-bytes is also mapped onto nginx and HAProxy; nothing else is).
#
# Results: target/vtc/<label>.tsv and one log per case under target/vtc/<label>/, where label is
# ringway-uring, ringway-epoll, nginx or haproxy. Exit status: non-zero if any Ringway case
# failed (or a contender could not be started); a failing nginx/HAProxy case is information.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

contender=ringway
driver=uring
workers=1
timeout=10
jobs=2
report=0
verbose=0
filters=()
while [ $# -gt 0 ]; do
  case "$1" in
    --contender) contender=${2:?}; shift 2 ;;
    --contender=*) contender=${1#*=}; shift ;;
    --driver) driver=${2:?}; shift 2 ;;
    --driver=*) driver=${1#*=}; shift ;;
    --workers) workers=${2:?}; shift 2 ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    --jobs|-j) jobs=${2:?}; shift 2 ;;
    --report) report=1; shift ;;
    --verbose|-v) verbose=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "vtc.sh: unknown option $1" >&2; exit 64 ;;
    *) filters+=("$1"); shift ;;
  esac
done
case "$contender" in ringway|nginx|haproxy|all) ;; *) echo "vtc.sh: --contender ringway|nginx|haproxy|all" >&2; exit 64 ;; esac
case "$driver" in uring|epoll) ;; *) echo "vtc.sh: --driver uring|epoll" >&2; exit 64 ;; esac

# --- tools --------------------------------------------------------------------------------------
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  echo "vtc.sh: installing $*" >&2
  apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
}
# Debian starts (or tries to start) services on install; stop what this install started: the
# services, and any daemon process that was not running before.
stop_new_daemons() { # $1: process name, $2: pids that ran before the install, $3...: services
  local name=$1 before=$2 svc pid
  shift 2
  for svc in "$@"; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
  done
  for pid in $(pgrep -x "$name" 2>/dev/null); do
    case " $before " in *" $pid "*) ;; *) kill "$pid" 2>/dev/null || true ;; esac
  done
}
if ! command -v varnishtest >/dev/null 2>&1; then
  before=$(pgrep -x varnishd 2>/dev/null | tr '\n' ' ')
  apt_install varnish
  stop_new_daemons varnishd "$before" varnish varnishncsa
fi
command -v varnishtest >/dev/null 2>&1 || { echo "vtc.sh: varnishtest is not available" >&2; exit 69; }
command -v python3 >/dev/null 2>&1 || apt_install python3
# The interpreter itself, not a version-manager shim (those cost ~0.3 s a call); the cases that
# start scripts/vtc/origin.py find it first on PATH too.
PY=$(python3 -c 'import sys; print(sys.executable)')
export PATH="$(dirname "$PY"):$PATH"

need_ringway=0; need_nginx=0; need_haproxy=0
case "$contender" in
  ringway) need_ringway=1 ;; nginx) need_nginx=1 ;; haproxy) need_haproxy=1 ;;
  all) need_ringway=1; need_nginx=1; need_haproxy=1 ;;
esac
if [ $need_nginx = 1 ] && ! command -v nginx >/dev/null 2>&1; then
  before=$(pgrep -x nginx 2>/dev/null | tr '\n' ' '); apt_install nginx-light; stop_new_daemons nginx "$before" nginx
fi
if [ $need_haproxy = 1 ] && ! command -v haproxy >/dev/null 2>&1; then
  before=$(pgrep -x haproxy 2>/dev/null | tr '\n' ' '); apt_install haproxy; stop_new_daemons haproxy "$before" haproxy
fi
if [ $need_ringway = 1 ]; then
  if [ -n "${RINGWAY_BIN:-}" ]; then
    BIN=$RINGWAY_BIN
  else
    echo "vtc.sh: building (release)" >&2
    cargo build --release --quiet -p ringway || exit 1
    BIN=$ROOT/target/release/ringway
  fi
  [ -x "$BIN" ] || { echo "vtc.sh: $BIN is not executable" >&2; exit 1; }
fi

# --- cases --------------------------------------------------------------------------------------
cases=()
for f in "$ROOT"/tests/vtc/*.vtc; do
  [ -e "$f" ] || continue
  if [ ${#filters[@]} -gt 0 ]; then
    hit=0
    for pat in "${filters[@]}"; do case "$(basename "$f")" in *"$pat"*) hit=1 ;; esac; done
    [ $hit = 1 ] || continue
  fi
  cases+=("$f")
done
[ ${#cases[@]} -gt 0 ] || { echo "vtc.sh: no case matches" >&2; exit 64; }

free_ports() { # two distinct free loopback ports
  "$PY" - <<'EOF'
import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])
EOF
}

size_bytes() { # 1k -> 1024, 2m -> 2097152, 512 -> 512
  local v=${1,,}
  case "$v" in
    *k) echo $(( ${v%k} * 1024 )) ;; *m) echo $(( ${v%m} * 1024 * 1024 )) ;;
    *g) echo $(( ${v%g} * 1024 * 1024 * 1024 )) ;; *) echo "$v" ;;
  esac
}

# Extra Ringway arguments a case declares ("# ringway-args: ...").
case_args() { sed -n 's/^#[[:space:]]*ringway-args:[[:space:]]*//p' "$1" | tr '\n' ' '; }
# The value of --max-body-bytes among a case's extra arguments, in bytes ("" if none).
case_max_body() {
  local args; read -r -a args <<<"$(case_args "$1")"
  local i
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
      --max-body-bytes) size_bytes "${args[$((i + 1))]}"; return ;;
      --max-body-bytes=*) size_bytes "${args[$i]#*=}"; return ;;
    esac
  done
}

nginx_conf() { # $1 proxy port, $2 origin port, $3 dir, $4 max body bytes or ""
  local body="client_max_body_size 0;"
  [ -n "$4" ] && body="client_max_body_size $4;"
  cat <<EOF
# Written by scripts/vtc.sh: one worker, upstream keep-alive, as scripts/bench.sh runs nginx.
worker_processes 1;
pid $3/nginx.pid;
error_log $3/nginx-error.log error;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $3/body;
  proxy_temp_path $3/proxy;
  fastcgi_temp_path $3/fastcgi;
  uwsgi_temp_path $3/uwsgi;
  scgi_temp_path $3/scgi;
  upstream backend { server 127.0.0.1:$2; keepalive 16; }
  server {
    listen 127.0.0.1:$1;
    $body
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header Via "1.1 nginx";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
    }
  }
}
EOF
}

haproxy_conf() { # $1 proxy port, $2 origin port, $3 max body bytes or ""
  local limit=""
  if [ -n "$3" ]; then
    limit="  option http-buffer-request
  http-request deny deny_status 413 if { req.body_size gt $3 }"
  fi
  cat <<EOF
# Written by scripts/vtc.sh: http mode, one thread, connection reuse, as scripts/bench.sh runs HAProxy.
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
  timeout http-keep-alive 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$1
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request add-header Via "1.1 haproxy"
$limit
  default_backend be
backend be
  server b1 127.0.0.1:$2
EOF
}

PID=""
start_contender() { # $1 contender, $2 proxy port, $3 origin port, $4 case file, $5 work dir
  local who=$1 pp=$2 op=$3 vtc=$4 dir=$5 max
  max=$(case_max_body "$vtc")
  case "$who" in
    ringway)
      local extra; read -r -a extra <<<"$(case_args "$vtc")"
      setsid "$BIN" --listen "127.0.0.1:$pp" --upstream "127.0.0.1:$op" --workers "$workers" \
        --io-driver "$driver" --log-level error "${extra[@]}" >"$dir/stdout" 2>"$dir/stderr" </dev/null &
      ;;
    nginx)
      nginx_conf "$pp" "$op" "$dir" "$max" >"$dir/nginx.conf"
      setsid nginx -c "$dir/nginx.conf" >"$dir/stdout" 2>"$dir/stderr" </dev/null &
      ;;
    haproxy)
      haproxy_conf "$pp" "$op" "$max" >"$dir/haproxy.cfg"
      setsid haproxy -db -f "$dir/haproxy.cfg" >"$dir/stdout" 2>"$dir/stderr" </dev/null &
      ;;
  esac
  PID=$!
  local i
  for ((i = 0; i < 200; i++)); do # up to 10 s
    kill -0 "$PID" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$pp") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

stop_contender() { # stops the process group started by start_contender
  [ -n "$PID" ] || return 0
  kill -TERM -- "-$PID" 2>/dev/null
  local i
  for ((i = 0; i < 40; i++)); do # up to 2 s, then SIGKILL
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL -- "-$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
  PID=""
}

# One case, in a subshell of its own: contender up, varnishtest, contender down. Writes
# $out/$name.row (one TSV row) and $out/$name.log; exit status 2 if the contender did not start.
run_case() { # $1 contender, $2 case file, $3 output dir
  local who=$1 vtc=$2 out=$3 name dir log op pp t0 rc attempt
  trap 'stop_contender' EXIT
  name=$(basename "$vtc" .vtc)
  dir=$out/$name.d; rm -rf "$dir"; mkdir -p "$dir"
  log=$out/$name.log
  for attempt in 1 2 3; do # a port taken between picking and binding: pick again
    read -r op pp <<<"$(free_ports)"
    t0=$EPOCHREALTIME
    start_contender "$who" "$pp" "$op" "$vtc" "$dir" && break
    stop_contender
    if [ $attempt = 3 ]; then
      { echo "vtc.sh: $who did not start for $name:"; tail -n 5 "$dir/stderr"; } >&2
      exit 2
    fi
  done
  # -L keeps varnishtest's temporary directory, where origin.py writes its log.
  varnishtest -L -v -t "$timeout" -D "origin_port=$op" -D "proxy_port=$pp" "$vtc" >"$log" 2>&1
  rc=$?
  local died=""
  kill -0 "$PID" 2>/dev/null || died=" ($who exited during the case)"
  stop_contender
  [ -n "$died" ] && rc=1
  local tmp
  tmp=$(sed -n 's/^\*\+ \+top \+macro def tmpdir=//p' "$log" | head -n1)
  if [ -n "$tmp" ] && [ -d "$tmp" ]; then
    [ -f "$tmp/origin.log" ] && sed 's/^/origin.log|/' "$tmp/origin.log" >>"$log"
    case "$tmp" in /tmp/vtc.*) rm -rf -- "$tmp" ;; esac
  fi
  local seconds observed err result
  seconds=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
  observed=$("$PY" "$ROOT/scripts/vtc/report.py" observe "$log")
  # the first failure; a failed shell check is prefixed with its command ("shell {...} :: ")
  err=$(awk '/^\*\* +top +=== shell /{ cmd = $0; sub(/^.*=== /, "", cmd) }
             /^---- /{ if (index($0, "shell_exit")) printf "%s :: ", cmd; print; exit }' "$log" |
    sed -E 's/---- +//; s/[[:space:]]+/ /g' | cut -c1-240)
  [ -n "$died" ] && err="$err$died"
  result=pass; [ $rc = 0 ] || result=FAIL
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$result" "$seconds" "$observed" "$err" >"$out/$name.row"
  printf '%-4s %-42s %6ss  %s\n' "$result" "$name" "$seconds" "$observed" >&2
  if [ $rc != 0 ] && [ $verbose = 1 ]; then sed 's/^/    /' "$log" >&2; fi
  exit 0
}

JOBS=()
trap 'for j in "${JOBS[@]}"; do kill "$j" 2>/dev/null; done; exit 130' INT TERM

run_suite() { # $1 contender; sets SUITE_FAILED
  local who=$1 label
  label=$who
  [ "$who" = ringway ] && label="ringway-$driver"
  local out=$ROOT/target/vtc/$label
  # A filtered run updates its cases' rows and keeps the others.
  [ ${#filters[@]} -eq 0 ] && rm -rf "$out"
  mkdir -p "$out"
  local tsv=$ROOT/target/vtc/$label.tsv
  local version=""
  case "$who" in
    ringway) version="$("$BIN" --version 2>&1 | head -n1) ($driver, $workers worker)" ;;
    nginx) version=$(nginx -v 2>&1 | sed 's/^nginx version: //') ;;
    haproxy) version=$(haproxy -v 2>&1 | head -n1 | awk '{print "HAProxy " $3}') ;;
  esac
  echo "vtc.sh: ${#cases[@]} cases against $version, $jobs at a time" >&2
  local started=$SECONDS vtc name infra=0 j
  JOBS=()
  for vtc in "${cases[@]}"; do
    rm -f "$out/$(basename "$vtc" .vtc).row"
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    run_case "$who" "$vtc" "$out" &
    JOBS+=($!)
  done
  for j in "${JOBS[@]}"; do wait "$j" || infra=1; done
  JOBS=()
  local pass=0 fail=0 failed=()
  {
    printf '# contender\t%s\n' "$version"
    printf '# date\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'case\tresult\tseconds\tobserved\tfirst_error\n'
    for vtc in "${cases[@]}"; do
      name=$(basename "$vtc" .vtc)
      if [ -f "$out/$name.row" ]; then cat "$out/$name.row"; else printf '%s\tFAIL\t0\tnot run\tcontender did not start\n' "$name"; fi
    done
  } >"$tsv.new"
  while IFS=$'\t' read -r name result _; do
    case "$result" in
      pass) pass=$((pass + 1)) ;;
      FAIL) fail=$((fail + 1)); failed+=("$name") ;;
    esac
  done < <(grep -v '^#' "$tsv.new" | tail -n +2)
  if [ ${#filters[@]} -gt 0 ] && [ -e "$tsv" ]; then
    "$PY" "$ROOT/scripts/vtc/report.py" merge "$tsv" "$tsv.new" >"$tsv.tmp" && mv "$tsv.tmp" "$tsv"
  else
    mv "$tsv.new" "$tsv"
  fi
  rm -f "$tsv.tmp" "$tsv.new" "$out"/*.row
  echo "vtc.sh: $label: $pass passed, $fail failed, $((SECONDS - started)) s; logs in target/vtc/$label/" >&2
  if [ $fail -gt 0 ]; then
    echo "vtc.sh: failed: ${failed[*]}" >&2
    [ "$who" = ringway ] && SUITE_FAILED=1
  fi
  [ $infra = 0 ] || SUITE_FAILED=1
}

SUITE_FAILED=0
if [ "$contender" = all ]; then
  for who in ringway nginx haproxy; do run_suite "$who"; done
else
  run_suite "$contender"
fi

if [ $report = 1 ]; then
  "$PY" "$ROOT/scripts/vtc/report.py" doc --cases "$ROOT/tests/vtc" --results "$ROOT/target/vtc" \
    --out "$ROOT/docs/conformance.md" && echo "vtc.sh: wrote docs/conformance.md" >&2
fi
exit $SUITE_FAILED
