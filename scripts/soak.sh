#!/usr/bin/env bash
# Soak run (examples/soak.rs): the layer stack behind axum at a fixed rate for SECONDS (default 600),
# mixed valid / forbidden / forged / expired / outdated-policy / missing tokens, the server's RSS
# sampled throughout. Fails on any unexpected status or an RSS drift beyond ±10 % after warm-up.
#
#   ./scripts/soak.sh            # the full run: 600 s, 100,000 users, release build; writes the
#                                # results into docs/reliability.md
#   ./scripts/soak.sh 20         # a short run (CI): dev build, 2,000 users, nothing written
#
# Environment: SOAK_RATE (req/s, default 5000), SOAK_USERS, SOAK_PROFILE (release | dev),
# RECORD=1 (write docs/reliability.md after a short run too), NICE (e.g. NICE=10 on a shared machine).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_ARG="${1:-600}"
if [ "$SECONDS_ARG" -ge 600 ]; then
  PROFILE="${SOAK_PROFILE:-release}"
  USERS="${SOAK_USERS:-100000}"
  RECORD="${RECORD:-1}"
else
  PROFILE="${SOAK_PROFILE:-dev}"
  USERS="${SOAK_USERS:-2000}"
  RECORD="${RECORD:-0}"
fi
RATE="${SOAK_RATE:-5000}"

# The dev build uses the feature set of scripts/test.sh (its build of the examples is reused);
# the release build the `full` feature set.
if [ "$PROFILE" = "release" ]; then
  BUILD=(--release --features full)
else
  BUILD=(--all-features)
fi
ARGS=("$SECONDS_ARG" --rate "$RATE" --users "$USERS")
if [ "$RECORD" = "1" ]; then
  ARGS+=(--record docs/reliability.md)
fi
cargo build "${BUILD[@]}" --example soak
exec ${NICE:+nice -n "$NICE"} cargo run -q "${BUILD[@]}" --example soak -- "${ARGS[@]}"
