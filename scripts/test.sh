#!/usr/bin/env bash
# Runs every Ringway test on a fresh machine: installs what the tests need (idempotently), checks
# formatting, lints and the sans-IO boundary, then runs the whole suite on io_uring and again
# (the end-to-end part) on the epoll fallback, then the differential framing test against h11,
# the HTTP/1 conformance cases, the slow-client attacks, HTTP/2 interop (h2load, nghttp), the
# HTTP/2 conformance and flood probes and the TLS profile scan (those on both drivers).
set -euo pipefail
cd "$(dirname "$0")/.."

need_debs=()
command -v curl >/dev/null 2>&1 || need_debs+=(curl)
command -v openssl >/dev/null 2>&1 || need_debs+=(openssl)
if [ ${#need_debs[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_debs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_debs[@]}" >/dev/null
fi
# 1,000-connection tests need more descriptors than the usual default of 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

echo "test.sh: formatting"
cargo fmt --all -- --check
echo "test.sh: clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "test.sh: sans-IO boundary"
scripts/check-sans-io.sh

if cargo nextest --version >/dev/null 2>&1; then
  run() { cargo nextest run --no-fail-fast --failure-output final "$@"; }
else
  run() { cargo test --no-fail-fast "$@"; }
fi

status=0
# The load-balancing tests run this backend as a real process (tests/common/lb.rs builds it on
# demand too; built here first, in the tests' debug profile, that build is a no-op).
cargo build --quiet -p ringway-bench --bin ringway-test-backend
echo "test.sh: whole workspace, io_uring"
RINGWAY_TEST_IO_DRIVER=uring run --workspace || status=1
echo "test.sh: end-to-end suite again on epoll"
RINGWAY_TEST_IO_DRIVER=epoll run -p ringway || status=1
echo "test.sh: differential framing against h11"
scripts/differential.sh || status=1
cargo build --release --quiet -p ringway -p ringway-bench
export RINGWAY_BIN=target/release/ringway BACKEND_BIN=target/release/ringway-bench-backend
export TESTCERT_BIN=target/release/ringway-testcert
echo "test.sh: HTTP/1 conformance cases (varnishtest), io_uring and epoll"
scripts/vtc.sh --driver uring || status=1
scripts/vtc.sh --driver epoll || status=1
echo "test.sh: slow-client attacks (slowhttptest), io_uring and epoll"
scripts/slow-clients.sh --quick --driver uring || status=1
scripts/slow-clients.sh --quick --driver epoll || status=1
echo "test.sh: HTTP/2 interop and load (h2load, nghttp), io_uring and epoll"
scripts/h2.sh --driver uring || status=1
scripts/h2.sh --driver epoll || status=1
echo "test.sh: HTTP/2 conformance and flood probes (Python h2/hyperframe), io_uring and epoll"
scripts/h2-conformance.sh --driver uring || status=1
scripts/h2-conformance.sh --driver epoll || status=1
echo "test.sh: TLS profile scan (sslyze, Mozilla intermediate), io_uring and epoll, and its self-test"
scripts/tls-scan.sh --driver uring || status=1
scripts/tls-scan.sh --driver epoll || status=1
scripts/tls-scan.sh --self-test || status=1
if [ "$status" -ne 0 ]; then
  echo "test.sh: FAILED (see above)"
fi
exit "$status"
