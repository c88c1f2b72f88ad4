#!/usr/bin/env bash
# The whole test suite from nothing: the venv, a real ComfyUI (built by the tests into .cache/),
# Debian's Chromium and playwright-core for the browser tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's chromium for the browser tests"
    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
  else
    echo "setup: chromium is missing; install Debian's package 'chromium' (the browser tests need it)" >&2
  fi
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

.venv/bin/python scripts/fetch_test_assets.py

exec .venv/bin/python -m pytest "$@"
