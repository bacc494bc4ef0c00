#!/usr/bin/env bash
# The whole test suite: unit, integration (real servers on 127.0.0.1), examples, doctests.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-features --all-targets --no-fail-fast
else
  cargo test --all-features --all-targets --no-fail-fast
fi
cargo test --all-features --doc
# The demo checks its own answers and exits non-zero on any surprise.
cargo run --example demo
