#!/usr/bin/env bash
# TLS scan: checks Ringway's TLS listener against Mozilla's "intermediate" TLS profile with
# sslyze. Starts two Ringways on loopback, one with an ECDSA P-256 and one with an RSA-2048
# certificate (made at run time by ringway-testcert, each with its own throwaway CA), scans both
# with sslyze's Mozilla checker (scripts/tls/scan.py) and fails on any finding, except that the
# test CA is not a public one (see below). Loopback only; every wait is bounded.
#
#   scripts/tls-scan.sh                      # Ringway, --io-driver auto
#   scripts/tls-scan.sh --driver epoll       # Ringway's --io-driver: auto (default), uring, epoll
#   scripts/tls-scan.sh --target nginx       # the same scan of nginx set up per Mozilla's intermediate config
#   scripts/tls-scan.sh --self-test          # nginx, compliant and deliberately not: checks the checker
#   RINGWAY_BIN=... TESTCERT_BIN=... scripts/tls-scan.sh   # skip the build, use these binaries
#
# Exit status: 0 compliant, 1 a finding outside the profile (or, with --self-test, the checker
# missed a deliberate one), 2 the scan could not run (server did not start, sslyze could not
# connect or a scan command errored: never a pass).
#
# Installs what it needs, idempotently: a venv under target/pyenv-sslyze with sslyze in it (the
# system Python is left alone), python3-venv from Debian if the venv module is missing, and for
# --target nginx / --self-test, nginx-light.
#
# What is checked: everything sslyze's Mozilla checker checks (sslyze.mozilla_tls_profile, the
# profile JSON bundled with sslyze): protocol versions, TLS 1.2 and 1.3 cipher suites, key
# exchange groups and ECDH sizes, the certificate's key type, curve or RSA size, signature
# algorithm and lifespan (<= 366 days), compression, Heartbleed, CCS injection, ROBOT,
# TLS_FALLBACK_SCSV, secure renegotiation and extended master secret; plus: both TLS 1.2 and 1.3
# offered, client-initiated renegotiation refused, and the certificate type the label names.
#
# What is ignored, and why (details in scripts/tls/scan.py):
#   - certificate_path_validation: the chain does not lead to a public trust store, as the CA is
#     a private test CA. Ignored only if an OpenSSL client trusting just the test CA verifies the
#     same leaf and the host name (sslyze's own verifier, `cryptography`, also wants extensions,
#     such as the Authority Key Identifier, that ringway-testcert's leaf lacks; printed as a note).
#   - Never checked by sslyze's checker, so not here either: OCSP stapling and Certificate
#     Transparency (a private CA has neither), HSTS (an HTTP header), cipher order (the profile
#     leaves it to the client).
#
# Output: a report per certificate on stdout; raw material (certificates, server logs, sslyze's
# JSON) in $TLS_SCAN_OUT (default: a new /tmp/ringway-tls-scan.* folder).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

DRIVER=auto
TARGET=ringway
SELF_TEST=0
while [ $# -gt 0 ]; do
  case "$1" in
    --driver) DRIVER="${2:-}"; shift; [ $# -eq 0 ] || shift ;;
    --driver=*) DRIVER="${1#--driver=}"; shift ;;
    --target) TARGET="${2:-}"; shift; [ $# -eq 0 ] || shift ;;
    --target=*) TARGET="${1#--target=}"; shift ;;
    --self-test) SELF_TEST=1; TARGET=nginx; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "tls-scan: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$DRIVER" in auto|uring|epoll) ;; *) echo "tls-scan: --driver must be auto, uring or epoll" >&2; exit 2 ;; esac
case "$TARGET" in ringway|nginx) ;; *) echo "tls-scan: --target must be ringway or nginx" >&2; exit 2 ;; esac

# ---- tools ---------------------------------------------------------------------------------
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "tls-scan: $* missing, and installing it needs root (apt-get install $*)" >&2; exit 2
  fi
  echo "tls-scan: installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
}

venv=target/pyenv-sslyze
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
PY="$venv/bin/python"
if ! "$PY" -c 'import sslyze' 2>/dev/null; then
  echo "tls-scan: installing sslyze into $venv" >&2
  # Pinned to a major version: scripts/tls/scan.py uses sslyze's Mozilla checker module.
  "$PY" -m pip install -q --disable-pip-version-check 'sslyze>=6.3,<7'
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

TESTCERT_BIN="${TESTCERT_BIN:-target/release/ringway-testcert}"
if [ "$TARGET" = ringway ] && [ -z "${RINGWAY_BIN:-}" ]; then
  echo "tls-scan: building (release)" >&2
  cargo build --release --quiet -p ringway -p ringway-bench
elif [ ! -x "$TESTCERT_BIN" ]; then
  echo "tls-scan: building ringway-testcert (release)" >&2
  cargo build --release --quiet -p ringway-bench --bin ringway-testcert
fi
RINGWAY_BIN="${RINGWAY_BIN:-target/release/ringway}"
[ -x "$TESTCERT_BIN" ] || { echo "tls-scan: $TESTCERT_BIN is not an executable" >&2; exit 2; }
RW_EXTRA=()
if [ "$TARGET" = ringway ]; then
  [ -x "$RINGWAY_BIN" ] || { echo "tls-scan: $RINGWAY_BIN is not an executable" >&2; exit 2; }
  HELP=$("$RINGWAY_BIN" --help 2>&1) || { echo "tls-scan: $RINGWAY_BIN --help failed: $HELP" >&2; exit 2; }
  grep -q -- '--listen-tls' <<<"$HELP" || { echo "tls-scan: $RINGWAY_BIN has no --listen-tls: no TLS to scan" >&2; exit 2; }
  if grep -q -- '--io-driver' <<<"$HELP"; then
    RW_EXTRA+=(--io-driver "$DRIVER")
  elif [ "$DRIVER" != auto ]; then
    echo "tls-scan: this Ringway has no --io-driver flag" >&2; exit 2
  fi
  if grep -q -- '--drain-timeout' <<<"$HELP"; then RW_EXTRA+=(--drain-timeout 1s); fi
fi

OUT="${TLS_SCAN_OUT:-$(mktemp -d /tmp/ringway-tls-scan.XXXXXX)}"
mkdir -p "$OUT"

# ---- cleanup -------------------------------------------------------------------------------
PIDS=()     # every server this script started
RW_PIDS=()  # the Ringways that started
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
trap 'echo "tls-scan: interrupted" >&2; exit 130' INT
trap 'echo "tls-scan: terminated" >&2; exit 143' TERM

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
make_cert() { # dir ecdsa|rsa [ringway-testcert flags] -> $OUT/<dir>/{ca.pem,localhost.pem,localhost.key}
  local dir=$1 alg=--ec
  [ "$2" = rsa ] && alg=--rsa
  shift 2
  rm -rf "${OUT:?}/$dir"
  "$TESTCERT_BIN" "$OUT/$dir" "$alg" "$@" localhost,127.0.0.1 >/dev/null
}

# Starts Ringway for the certificate in $OUT/$1 and sets PORT; up to 5 tries on fresh ports.
start_ringway() {
  local label=$1 upstream pid
  for _ in 1 2 3 4 5; do
    read -r PORT upstream <<<"$(free_ports 2)"
    # Nothing listens on the upstream port: a request would get 502, a TLS scan sends none.
    "$RINGWAY_BIN" --listen-tls "127.0.0.1:$PORT" --tls-cert "$OUT/$label/localhost.pem" \
      --tls-key "$OUT/$label/localhost.key" --upstream "127.0.0.1:$upstream" --workers 1 \
      --log-level info "${RW_EXTRA[@]}" >"$OUT/ringway-$label.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if wait_listening "$PORT" "$pid"; then RW_PIDS+=("$pid"); return 0; fi
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  echo "tls-scan: Ringway ($label) did not start (see $OUT/ringway-$label.log):" >&2
  tail -5 "$OUT/ringway-$label.log" >&2
  exit 2
}

# nginx, one server block per case, | separated: name (ending in the certificate type), the
# certificate's folder, the folder of the CA the scan trusts, protocols, ciphers, groups, and the
# findings expected (none for the compliant cases). The compliant case is Mozilla's generated intermediate config for nginx 1.22 / OpenSSL 3
# (https://ssl-config.mozilla.org/), minus the DHE suites (no dhparam file, so nginx offers none).
MOZ_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
MOZ_CURVES=X25519:prime256v1:secp384r1
NGINX_CASES=(
  "ok-ecdsa|ecdsa|ecdsa|TLSv1.2 TLSv1.3|$MOZ_CIPHERS|$MOZ_CURVES|"
  "ok-rsa|rsa|rsa|TLSv1.2 TLSv1.3|$MOZ_CIPHERS|$MOZ_CURVES|"
)
if [ "$SELF_TEST" = 1 ]; then
  # Deliberately outside the profile, each with the findings the checker must report.
  # TLS 1.0/1.1 need SHA-1 CBC suites and OpenSSL 3's security level 0. The last three check the
  # one finding that may be ignored: it must stand when the chain is wrong, not just private.
  NGINX_CASES+=(
    "tls10-ecdsa|ecdsa|ecdsa|TLSv1 TLSv1.1 TLSv1.2 TLSv1.3|$MOZ_CIPHERS:ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0|$MOZ_CURVES|tls_versions ciphers"
    "cbc-rsa|rsa|rsa|TLSv1.2 TLSv1.3|$MOZ_CIPHERS:ECDHE-RSA-AES128-SHA256:AES128-GCM-SHA256|$MOZ_CURVES|ciphers"
    "curve-ecdsa|ecdsa|ecdsa|TLSv1.2 TLSv1.3|$MOZ_CIPHERS|$MOZ_CURVES:secp521r1|tls_curves"
    "tls13only-ecdsa|ecdsa|ecdsa|TLSv1.3|$MOZ_CIPHERS|$MOZ_CURVES|tls_versions_missing"
    "long-ecdsa|long|long|TLSv1.2 TLSv1.3|$MOZ_CIPHERS|$MOZ_CURVES|maximum_certificate_lifespan"
    "expired-ecdsa|expired|expired|TLSv1.2 TLSv1.3|$MOZ_CIPHERS|$MOZ_CURVES|certificate_path_validation"
    "wrongca-ecdsa|ecdsa|other|TLSv1.2 TLSv1.3|$MOZ_CIPHERS|$MOZ_CURVES|certificate_path_validation"
  )
fi
start_nginx() { # sets TARGETS (label=port:ca ...)
  local ports i name cert ca protos ciphers curves expect conf="$OUT/nginx.conf" pid
  for _ in 1 2 3 4 5; do
    read -r -a ports <<<"$(free_ports "${#NGINX_CASES[@]}")"
    TARGETS=()
    {
      echo "# Written by scripts/tls-scan.sh: one process, one TLS server per case."
      echo "daemon off; master_process off; worker_processes 1;"
      echo "pid $OUT/nginx.pid; error_log $OUT/nginx-error.log warn;"
      echo "events { worker_connections 256; }"
      echo "http {"
      echo "  access_log off;"
      for d in client_body proxy fastcgi uwsgi scgi; do echo "  ${d}_temp_path $OUT/nginx-$d;"; done
      for i in "${!NGINX_CASES[@]}"; do
        IFS='|' read -r name cert ca protos ciphers curves expect <<<"${NGINX_CASES[$i]}"
        TARGETS+=("$name=${ports[$i]}:$OUT/$ca/ca.pem")
        cat <<EOF
  server {  # $name
    listen 127.0.0.1:${ports[$i]} ssl;
    ssl_certificate $OUT/$cert/localhost.pem;
    ssl_certificate_key $OUT/$cert/localhost.key;
    ssl_protocols $protos;
    ssl_ciphers $ciphers;
    ssl_ecdh_curve $curves;
    ssl_prefer_server_ciphers off;
    ssl_session_tickets off;
    location / { return 200 "ok\n"; }
  }
EOF
      done
      echo "}"
    } >"$conf"
    nginx -e "$OUT/nginx-error.log" -p "$OUT" -c "$conf" >"$OUT/nginx.log" 2>&1 </dev/null &
    pid=$!
    PIDS+=("$pid")
    local up=1
    for i in "${!ports[@]}"; do wait_listening "${ports[$i]}" "$pid" || { up=0; break; }; done
    [ "$up" = 1 ] && return 0
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  echo "tls-scan: nginx did not start (see $OUT/nginx.log, $OUT/nginx-error.log):" >&2
  tail -5 "$OUT/nginx.log" "$OUT/nginx-error.log" >&2 2>/dev/null
  exit 2
}

# ---- certificates and servers --------------------------------------------------------------
START=$(date +%s)
make_cert ecdsa ecdsa
make_cert rsa rsa
if [ "$SELF_TEST" = 1 ]; then
  make_cert long ecdsa --days 400     # lifespan 430 days (ringway-testcert backdates by 30)
  make_cert expired ecdsa --days -1
  make_cert other ecdsa               # a CA that did not sign the ecdsa certificate
fi
TARGETS=()
if [ "$TARGET" = ringway ]; then
  for label in ecdsa rsa; do
    start_ringway "$label"
    TARGETS+=("$label=$PORT:$OUT/$label/ca.pem")
  done
  ACTUAL_DRIVER=$(grep -ho 'driver="[a-z_]*"' "$OUT"/ringway-*.log | sort -u | tr -d '"' | sed 's/driver=//' | paste -sd, -)
  echo "tls-scan: $RINGWAY_BIN, driver ${ACTUAL_DRIVER:-?} (asked: $DRIVER), one worker per certificate; raw output in $OUT"
else
  start_nginx
  echo "tls-scan: $(nginx -v 2>&1 | sed 's/^nginx version: //'), $([ "$SELF_TEST" = 1 ] && echo "self-test, ")${#TARGETS[@]} servers; raw output in $OUT"
fi

# ---- scan ----------------------------------------------------------------------------------
# In the background, so that a signal reaches the traps at once (and the cleanup stops the scan).
rc=0
timeout -k 5 120 "$PY" -B -W ignore scripts/tls/scan.py --host localhost --ip 127.0.0.1 \
  --json-out "$OUT/sslyze.json" --issues-out "$OUT/issues.txt" "${TARGETS[@]}" &
PIDS+=("$!")
wait "$!" || rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "tls-scan: sslyze took over 120 s; stopped" >&2; rc=2; fi

if [ "$TARGET" = ringway ]; then
  # Ringway must have survived the scan (sslyze sends malformed and hostile handshakes).
  for p in "${RW_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "tls-scan: FAIL: a Ringway process died during the scan (see $OUT/ringway-*.log)" >&2; rc=1; }
  done
fi

if [ "$SELF_TEST" = 1 ]; then
  # The checker must pass the compliant servers and report each deliberate finding.
  st=0
  [ -f "$OUT/issues.txt" ] || { echo "tls-scan: self-test: the scan wrote no findings file (rc $rc)" >&2; exit 2; }
  if grep -q ' scan_error$' "$OUT/issues.txt"; then echo "tls-scan: self-test: scan errors (see above)" >&2; st=2; fi
  for c in "${NGINX_CASES[@]}"; do
    IFS='|' read -r name _ _ _ _ _ expect <<<"$c"
    got=$(awk -v n="$name" '$1 == n {print $2}' "$OUT/issues.txt" | sort | paste -sd' ' -)
    missing=""
    for k in $expect; do grep -qx "$name $k" "$OUT/issues.txt" || missing+=" $k"; done
    if [ -z "$expect" ] && [ -n "$got" ]; then
      echo "tls-scan: self-test: FAIL: $name is Mozilla's own config, yet reported: $got"; st=1
    elif [ -n "$missing" ]; then
      echo "tls-scan: self-test: FAIL: $name: the checker missed:$missing (reported: ${got:-nothing})"; st=1
    else
      echo "tls-scan: self-test: ok: $name -> ${got:-compliant}"
    fi
  done
  [ "$st" != 0 ] || [ "$rc" = 1 ] || { echo "tls-scan: self-test: FAIL: the scan exited $rc, not 1, with deliberate findings"; st=1; }
  echo "tls-scan: self-test took $(( $(date +%s) - START )) s: $([ "$st" = 0 ] && echo PASS || echo FAIL)"
  exit "$st"
fi

echo "tls-scan: took $(( $(date +%s) - START )) s"
case "$rc" in
  0) echo "tls-scan: PASS: every certificate's listener is within Mozilla's intermediate profile" ;;
  1) echo "tls-scan: FAIL: outside Mozilla's intermediate profile (findings above)" ;;
  *) echo "tls-scan: ERROR: the scan could not be completed (exit $rc, see above and $OUT)"; rc=2 ;;
esac
exit "$rc"
