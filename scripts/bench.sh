#!/usr/bin/env bash
# Benchmarks Ringway side by side with nginx and HAProxy (and the direct path) on this machine:
# installs the tools if missing, builds in release mode, then runs ringway-bench-harness.
# Results: a Markdown table per scenario on stdout and in bench/results/<date>-<scenario>.md,
# plus an SVG chart per scenario.
#
#   scripts/bench.sh                    # every scenario, 3 rounds of 10 s (about 27 minutes)
#   scripts/bench.sh --quick            # every scenario, 3 rounds of 1 s (under 4 minutes)
#   scripts/bench.sh --only ka-c64,idle-10k --rounds 5
#   scripts/bench.sh --only tls-ka-c64,tls-new-conn,tls-idle-10k   # TLS termination (ECDSA P-256)
#   scripts/bench.sh --only h2c-m10,h2c-m100,h2-tls-m10,h2-tls-m100  # HTTP/2 to clients (h2load)
#   scripts/bench.sh --only lb-slow-c64,lb-rr-c64    # three backends, one 20 ms slow: p2c/least_conn/leastconn, and round robin
#   scripts/bench.sh --only cache-hit-c64,cache-hit-64k-c64  # cache hits: Ringway's cache, nginx proxy_cache, HAProxy cache
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian starts nginx and HAProxy as services on install; they would share the CPUs.
for svc in nginx haproxy; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
done
pkill -x nginx 2>/dev/null || true
pkill -x haproxy 2>/dev/null || true
# Ten thousand idle connections need that many descriptors, twice over.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

echo "bench.sh: building (release)" >&2
cargo build --release --quiet -p ringway -p ringway-bench
exec target/release/ringway-bench-harness "$@"
