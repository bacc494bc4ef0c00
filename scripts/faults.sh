#!/usr/bin/env bash
# Fault runs under load (examples/faults.rs): JWKS down / garbage, key rotation, token endpoint
# down / slow / flapping, Redis killed and restarted, issuer replica killed mid-rotation; each
# outcome asserted and printed as a table row. SECONDS (default 120) is the JWKS outage; the
# other faults scale with it.
#
#   ./scripts/faults.sh          # the full run (release build); writes docs/reliability.md
#   ./scripts/faults.sh 20       # a short run (CI): dev build, nothing written
#
# Environment: FAULTS_PROFILE (release | dev), RECORD=1, NICE, ONLY=<scenario>
# (jwks-down, jwks-garbage, key-rotation, token-endpoint, redis, issuer-replica).
# Needs redis-server on PATH (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_ARG="${1:-120}"
if [ "$SECONDS_ARG" -ge 120 ]; then
  PROFILE="${FAULTS_PROFILE:-release}"
  RECORD="${RECORD:-1}"
else
  PROFILE="${FAULTS_PROFILE:-dev}"
  RECORD="${RECORD:-0}"
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found on PATH: install it (apt-get install redis-server) or run ./scripts/test.sh first" >&2
  exit 1
fi
if [ "$PROFILE" = "release" ]; then
  BUILD=(--release --features full)
else
  BUILD=(--all-features)
fi
ARGS=("$SECONDS_ARG")
if [ -n "${ONLY:-}" ]; then
  ARGS+=(--only "$ONLY")
fi
if [ "$RECORD" = "1" ]; then
  ARGS+=(--record docs/reliability.md)
fi
cargo build "${BUILD[@]}" --example faults
exec ${NICE:+nice -n "$NICE"} cargo run -q "${BUILD[@]}" --example faults -- "${ARGS[@]}"
