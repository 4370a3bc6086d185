#!/usr/bin/env bash
# proxy-core must stay sans-IO: no runtime, socket or TLS crate anywhere in its normal
# dependency tree. Fails, naming the crates, if one creeps in.
set -euo pipefail
cd "$(dirname "$0")/.."
banned=$(cargo tree -p proxy-core -e normal --prefix none 2>/dev/null \
  | grep -E -o '^(monoio[a-z0-9_-]*|tokio[a-z0-9_-]*|socket2|rustls[a-z0-9_-]*|mio|libc|io-uring|async-std) ' \
  | sort -u | tr '\n' ' ' || true)
if [ -n "$banned" ]; then
  echo "check-sans-io: proxy-core depends on I/O crates: $banned" >&2
  exit 1
fi
echo "check-sans-io: proxy-core is free of runtime, socket and TLS crates"
