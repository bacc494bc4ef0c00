#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 600), on the nightly
# toolchain, and prints one line per target:
#   fuzz <target>: <execs> execs, <crashes> crashes
# Exits non-zero when a target fails to build or any target crashes (the crashing input is
# left in fuzz/artifacts/<target>/).
#
# Corpora: fuzz/seeds/<target>/ (checked in, read only) seeds fuzz/corpus/<target>/ (grown
# by the runs, not checked in).
#
# Environment: FUZZ_TARGETS (space-separated subset), FUZZ_SANITIZER (default `none`: the
# crate forbids `unsafe`; `address` for ASan), FUZZ_BUILD (`release`, the default, or `dev`:
# half the build time from scratch, slower runs; the CI smoke uses it), FUZZ_NICE (default
# 15), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${1:-600}"
SANITIZER="${FUZZ_SANITIZER:-none}"
case "${FUZZ_BUILD:-release}" in
  release) BUILD=() ;;
  dev) BUILD=(--dev) ;;
  *) echo "FUZZ_BUILD must be release or dev" >&2; exit 2 ;;
esac
NICE="nice -n ${FUZZ_NICE:-15}"
# The fuzz crate is its own workspace with its own target dir (fuzz/target).
unset CARGO_TARGET_DIR

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz not found: installing it" >&2
  $NICE cargo install cargo-fuzz --locked
fi

if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

start=$(date +%s)
$NICE cargo +nightly fuzz build "${BUILD[@]}" -s "$SANITIZER"
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - start)) s"

logdir="fuzz/target/logs"
mkdir -p "$logdir"
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  log="$logdir/$t.log"
  status=0
  # shellcheck disable=SC2086
  $NICE cargo +nightly fuzz run "${BUILD[@]}" -s "$SANITIZER" "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  crashes=$(($(find "fuzz/artifacts/$t" -type f | wc -l) - before))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1
  fi
  echo "fuzz $t: ${execs:-0} execs, $crashes crashes"
  if [ "$crashes" -ne 0 ]; then
    failed=1
    echo "---- last lines of $log ----" >&2
    tail -40 "$log" >&2
  fi
done
echo "fuzz: done in $(($(date +%s) - start)) s"
exit "$failed"
