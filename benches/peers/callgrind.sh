#!/usr/bin/env bash
# Instruction counts per call of the hot paths (valgrind --tool=callgrind, repeatable).
# Usage: benches/peers/callgrind.sh [N] [SCENARIO...]   (run from anywhere; builds release)
set -euo pipefail
cd "$(dirname "$0")"
N=${1:-2000}
shift || true
SCENARIOS=${*:-"noauth hit1 hit1000 miss verify_hit verify_miss floor arcswap arcswap_clock token bare_fn inject"}
cargo build --release -q -p hotpaths
BIN=target/release/hotpaths
OUT=${CALLGRIND_OUT:-target/callgrind}
mkdir -p "$OUT"
# valgrind does not offer SHA-NI, so aws-lc runs its AVX SHA-256 there (~10x the native
# instruction count): the second column leaves the SHA-256 block function out.
printf '%-12s %12s %18s\n' scenario "Ir/call" "Ir/call w/o SHA256"
for s in $SCENARIOS; do
  f="$OUT/$s.out"
  valgrind --tool=callgrind --callgrind-out-file="$f" --toggle-collect='hotpaths::measure_*' \
    "$BIN" "$s" "$N" >/dev/null 2>"$OUT/$s.log"
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
  sha=$(callgrind_annotate --inclusive=no "$f" 2>/dev/null | awk '/sha256_block_data_order/ {gsub(",","",$1); s += $1} END {print s + 0}')
  printf '%-12s %12d %18d\n' "$s" $((total / N)) $(((total - sha) / N))
done
