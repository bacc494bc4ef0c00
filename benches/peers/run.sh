#!/usr/bin/env bash
# The peer load benchmark: builds the servers (release), writes one JWKS and the tokens,
# starts one server per contender (axum, one tokio worker thread each), runs the correctness
# gate, then interleaved wrk rounds (-t1 -c16 --latency) per scenario, reads each server's CPU
# time from /proc/<pid>/stat, and writes the report to docs/benchmarks.md.
#
# Usage: benches/peers/run.sh            (ROUNDS=3 SECONDS_PER_RUN=5 by default)
#        ROUNDS=5 SECONDS_PER_RUN=10 benches/peers/run.sh
#        REPORT=/tmp/x.md benches/peers/run.sh   (somewhere else than docs/benchmarks.md)
#        PIN=0 benches/peers/run.sh    (do not pin; by default, with taskset and >= 2 CPUs, every
#                                       server runs on CPU 1 and wrk on CPU 0, so the two never
#                                       share or swap a core between rounds)
set -euo pipefail
cd "$(dirname "$0")"
ROUNDS=${ROUNDS:-3}
DUR=${SECONDS_PER_RUN:-5}
CONN=16
REPORT=${REPORT:-../../docs/benchmarks.md}
CONTENDERS=${CONTENDERS:-"noauth floor jsonwebtoken jwt_authorizer axum_jwt_auth tower_bearer tower_bearer_nocache ideal_cache"}
SCENARIOS="one rotating"
BASE_PORT=${BASE_PORT:-38180}
PIN=${PIN:-1}
SERVER_CPU=()
CLIENT_CPU=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER_CPU=(taskset -c 1)
  CLIENT_CPU=(taskset -c 0)
else
  PIN=0
fi

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install -y wrk)" >&2; exit 1; }
cargo build --release -q -p peer-servers
BIN=target/release
DATA=target/peers
rm -rf "$DATA" && mkdir -p "$DATA"
"$BIN/gen" "$DATA"
TOKEN=$(cat "$DATA/token.txt")
TICK=$(getconf CLK_TCK)

declare -A PID PORT
cleanup() { for c in "${!PID[@]}"; do kill "${PID[$c]}" 2>/dev/null || true; done; }
trap cleanup EXIT
i=0
for c in $CONTENDERS; do
  PORT[$c]=$((BASE_PORT + i)); i=$((i + 1))
  "${SERVER_CPU[@]}" "$BIN/$c" "${PORT[$c]}" "$DATA" 2>"$DATA/$c.log" &
  PID[$c]=$!
done
for c in $CONTENDERS; do
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:${PORT[$c]}/hello" && break
    sleep 0.1
  done
done

# The gate: every contender but noauth must answer the valid tokens and refuse the rest
# (any status but 2xx/3xx; a contender that lets one through is not measured).
GATE="$DATA/gate.tsv"
: >"$GATE"
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
# Refused: no 2xx/3xx (the table shows which status each contender answers).
refused() { case $1 in 2??|3??|000) return 1 ;; *) return 0 ;; esac; }
declare -A OK
for c in $CONTENDERS; do
  url="http://127.0.0.1:${PORT[$c]}/hello"
  OK[$c]=1
  body=$(curl -s -H "authorization: Bearer $TOKEN" "$url")
  if [ "$c" = noauth ]; then
    [ "$body" = "hello anonymous" ] || OK[$c]=0
    printf '%s\tvalid\t%s\n' "$c" "$(status "$url")" >>"$GATE"
    continue
  fi
  [ "$body" = "hello user-0" ] || OK[$c]=0
  printf '%s\tvalid\t%s\n' "$c" "$(status -H "authorization: Bearer $TOKEN" "$url")" >>"$GATE"
  t500=$(sed -n 500p "$DATA/tokens.txt")
  [ "$(curl -s -H "authorization: Bearer $t500" "$url")" = "hello user-499" ] || OK[$c]=0
  code=$(status "$url")
  printf '%s\tno-token\t%s\n' "$c" "$code" >>"$GATE"
  refused "$code" || OK[$c]=0
  for f in "$DATA"/gate-*.txt; do
    name=$(basename "$f" .txt); name=${name#gate-}
    code=$(status -H "authorization: Bearer $(cat "$f")" "$url")
    printf '%s\t%s\t%s\n' "$c" "$name" "$code" >>"$GATE"
    refused "$code" || { OK[$c]=0; echo "GATE: $c accepted $name ($code)" >&2; }
  done
  [ "${OK[$c]}" = 1 ] || echo "GATE: $c failed the gate; not measured" >&2
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
RESULTS="$DATA/results.tsv"
: >"$RESULTS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
read -ra LIST <<<"$CONTENDERS"
n=${#LIST[@]}
for round in $(seq "$ROUNDS"); do
  for s in $SCENARIOS; do
    for k in $(seq 0 $((n - 1))); do
      c=${LIST[$(((k + round - 1) % n))]}
      [ "${OK[$c]}" = 1 ] || continue
      url="http://127.0.0.1:${PORT[$c]}/hello"
      args=(-t1 -c"$CONN" -d"${DUR}s" --latency)
      if [ "$s" = rotating ]; then
        args+=(-s rotate.lua)
      else
        args+=(-H "authorization: Bearer $TOKEN")
      fi
      before=$(cpu "${PID[$c]}")
      out=$(TOKENS="$DATA/tokens.txt" "${CLIENT_CPU[@]}" wrk "${args[@]}" "$url")
      after=$(cpu "${PID[$c]}")
      echo "$out" >"$DATA/wrk-$round-$s-$c.txt"
      printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$s" "$c" $((after - before)) "$TICK" \
        | paste - <(echo "$out" | "$BIN/report" parse-wrk) >>"$RESULTS"
      echo "round $round $s $c: $(tail -1 "$RESULTS" | cut -f6-)" >&2
    done
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$(dirname "$REPORT")"
"$BIN/report" write "$RESULTS" "$GATE" "$REPORT" \
  "rounds=$ROUNDS seconds=$DUR connections=$CONN pinned=$PIN load_start=$LOAD_START load_end=$LOAD_END"
# The last callgrind table (benches/peers/callgrind.sh; kept by hand in callgrind.md).
cat callgrind.md >>"$REPORT"
echo "report: $REPORT" >&2
