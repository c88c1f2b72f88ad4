#!/usr/bin/env bash
# The main job on the bundled defaults: sets up .venv, then animates a held-out synthetic figure with
# the motion of another held-out figure using the bundled default model (no footage, no download).
# Results land in out/demo/ (see the README's Quick start).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
exec .venv/bin/python -m directanimator_core demo --out out/demo "$@"
