#!/usr/bin/env bash
# The whole test suite: unit, integration (real servers on 127.0.0.1), examples, doctests.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Redis tests (tests/redis.rs) start their own redis-server on a free port; they fail, never
# skip, without one. Install it when missing.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found on PATH: installing it" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  fi
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y redis-server \
      || ($SUDO apt-get update && $SUDO apt-get install -y redis-server) || true
  elif command -v brew >/dev/null 2>&1; then
    brew install redis || true
  elif command -v dnf >/dev/null 2>&1; then
    $SUDO dnf install -y redis || true
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "could not install redis-server: install it (e.g. apt-get install redis-server) and run again" >&2
    exit 1
  fi
fi
# The browser test (tests/browser.rs) drives the Debian chromium with playwright-core; it fails,
# never skips, without them. Install them when missing.
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "chromium not found: installing chromium and chromium-driver" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y chromium chromium-driver \
    || ($SUDO apt-get update && $SUDO apt-get install -y chromium chromium-driver) || true
fi
if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-features --all-targets --no-fail-fast
else
  cargo test --all-features --all-targets --no-fail-fast
fi
cargo test --all-features --doc
# The demo checks its own answers and exits non-zero on any surprise.
cargo run --example demo
