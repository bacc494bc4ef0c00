#!/usr/bin/env bash
# Instruction counts per call of the hot paths (valgrind --tool=callgrind, repeatable).
# Usage: benches/peers/callgrind.sh [N] [SCENARIO...]   (run from anywhere; builds release)
set -euo pipefail
cd "$(dirname "$0")"
N=${1:-2000}
shift || true
SCENARIOS=${*:-"noauth hit1 hit1000 miss verify_hit verify_miss floor token bare_fn inject"}
cargo build --release -q -p hotpaths
BIN=target/release/hotpaths
OUT=${CALLGRIND_OUT:-target/callgrind}
mkdir -p "$OUT"
printf '%-12s %12s\n' scenario "Ir/call"
for s in $SCENARIOS; do
  f="$OUT/$s.out"
  valgrind --tool=callgrind --callgrind-out-file="$f" --toggle-collect='hotpaths::measure_*' \
    "$BIN" "$s" "$N" >/dev/null 2>"$OUT/$s.log"
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
  printf '%-12s %12d\n' "$s" $((total / N))
done
