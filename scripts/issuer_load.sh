#!/usr/bin/env bash
# Load run of the token endpoint (client_credentials, client_secret_basic) against
# `examples/auth_server`, per signing algorithm: req/s from wrk, and the server's CPU time per
# request from /proc/<pid>/stat (utime + stime), so the number holds on a shared machine.
# Not run by CI.
#
#   scripts/issuer_load.sh [SECONDS] [CONNECTIONS] [ALGS...]     (defaults: 10 16 RS256 ES256 EdDSA)
#
# The server runs on a tokio multi-thread runtime with TOKIO_WORKER_THREADS (default 1, so the
# rate is per core); wrk runs with one thread. Needs wrk (apt-get install -y wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS="${1:-10}"
CONNS="${2:-16}"
shift $(( $# > 2 ? 2 : $# ))
ALGS=("$@")
[ ${#ALGS[@]} -eq 0 ] && ALGS=(RS256 ES256 EdDSA)
export TOKIO_WORKER_THREADS="${TOKIO_WORKER_THREADS:-1}"

command -v wrk >/dev/null || { echo "wrk not found (apt-get install -y wrk)" >&2; exit 1; }
# AUTH_SERVER_BIN: an already built `auth_server` (else it is built here, release).
BIN="${AUTH_SERVER_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --release --example auth_server >&2
  BIN="${CARGO_TARGET_DIR:-target}/release/examples/auth_server"
fi

SECRET="test-only-load-secret"
export ISSUER_BASIC
ISSUER_BASIC="$(printf '%s' "load-client:$SECRET" | base64 -w0)"
TICK="$(getconf CLK_TCK)"
WORK="$(mktemp -d)"
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

printf '%-6s %10s %12s %14s %s\n' alg req/s requests cpu_us/req non-2xx
for ALG in "${ALGS[@]}"; do
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  cat >"$WORK/cfg.yaml" <<YAML
listen: 127.0.0.1:$PORT
security:
  authorization-server:
    issuer: http://127.0.0.1:$PORT
    signing:
      algorithm: $ALG
    access-token:
      ttl-seconds: 300
      audience: [eon-internal]
    clients:
      - client-id: load-client
        client-secret: $SECRET
        auth-method: client_secret_basic
        grant-types: [client_credentials]
        scopes: [internal-service]
        audiences: [service-system]
YAML
  # One log line per token goes to a file (a deployment pays for its log line too).
  "$BIN" --config "$WORK/cfg.yaml" >"$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    grep -q listening "$WORK/server.log" 2>/dev/null && break
    sleep 0.1
  done
  # Warm up (the first request pays the password hash check, then the verified-secret cache).
  wrk -t1 -c"$CONNS" -d1s -s scripts/issuer_load.lua "http://127.0.0.1:$PORT" >/dev/null
  BEFORE="$(cpu_ticks "$PID")"
  OUT="$(wrk -t1 -c"$CONNS" -d"${SECS}s" -s scripts/issuer_load.lua "http://127.0.0.1:$PORT")"
  AFTER="$(cpu_ticks "$PID")"
  REQS="$(sed -n 's/^ *\([0-9][0-9]*\) requests in.*/\1/p' <<<"$OUT")"
  RPS="$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$OUT")"
  NON2XX="$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' <<<"$OUT")"
  CPU_US="$(awk -v t=$((AFTER - BEFORE)) -v hz="$TICK" -v n="$REQS" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
  printf '%-6s %10s %12s %14s %s\n' "$ALG" "$RPS" "$REQS" "$CPU_US" "${NON2XX:-0}"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
done
