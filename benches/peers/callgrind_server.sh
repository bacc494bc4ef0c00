#!/usr/bin/env bash
# Instructions per request of a REAL peer server (axum, hyper, tokio and the layer), counted by
# valgrind --tool=callgrind while wrk drives it; repeatable on a loaded machine.
# Usage: benches/peers/callgrind_server.sh SERVER [one|rotating]   (after a release build of
# peer-servers; e.g. noauth, tower_bearer, tower_bearer_nocache, floor). Needs wrk, valgrind.
# CACHESIM=1 adds valgrind's cache and branch simulation (I1/D1 misses, mispredicts: see the
# totals in the output files); slower, so fewer requests are served.
set -euo pipefail
cd "$(dirname "$0")"
S=$1
MODE=${2:-one}
BIN=target/release
DATA=${DATA:-target/callgrind-server/data}
OUT=target/callgrind-server
mkdir -p "$OUT" "$DATA"
[ -f "$DATA/token.txt" ] || "$BIN/gen" "$DATA" >/dev/null
PORT=$((20000 + RANDOM % 20000))
F="$OUT/$S-$MODE.out"
rm -f "$F"*
# Instrumentation off during start-up and a warm-up run; on for the measured run only.
SIM=()
[ "${CACHESIM:-0}" = 1 ] && SIM=(--cache-sim=yes --branch-sim=yes)
valgrind --tool=callgrind --instr-atstart=no "${SIM[@]}" --callgrind-out-file="$F" \
  "$BIN/$S" "$PORT" "$DATA" 2>"$OUT/$S.log" &
VPID=$!
trap 'kill $VPID 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do grep -q listening "$OUT/$S.log" && break; sleep 0.5; done
if [ "$MODE" = rotating ]; then
  ARGS=(-s rotate.lua)
else
  ARGS=(-H "authorization: Bearer $(cat "$DATA/token.txt")")
fi
URL=http://127.0.0.1:$PORT/hello
TOKENS="$DATA/tokens.txt" wrk -t1 -c4 -d4s "${ARGS[@]}" "$URL" >/dev/null
callgrind_control -i on $VPID >/dev/null
N=$(TOKENS="$DATA/tokens.txt" wrk -t1 -c4 -d8s "${ARGS[@]}" "$URL" | awk '/requests in/ {print $1}')
callgrind_control -i off $VPID >/dev/null
callgrind_control -d $VPID >/dev/null
sleep 1
kill $VPID
wait $VPID 2>/dev/null || true
trap - EXIT
TOTAL=0
for f in "$F"*; do
  t=$(awk '/^totals:/ {print $2; exit}' "$f")
  TOTAL=$((TOTAL + ${t:-0}))
done
echo "$S $MODE: $N requests, $((TOTAL / N)) Ir/request"
if [ "${CACHESIM:-0}" = 1 ]; then
  echo "per request: $(grep -h '^events:' "$F"* | head -1 | cut -d' ' -f2-)"
  for f in "$F"*; do grep -h '^totals:' "$f"; done |
    awk -v n="$N" '{for (i = 2; i <= NF; i++) t[i] += $i} END {for (i = 2; i <= NF; i++) printf "%.1f ", t[i] / n; print ""}'
fi
