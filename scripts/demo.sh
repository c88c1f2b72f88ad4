#!/usr/bin/env bash
# The main job on the bundled defaults: sets up .venv, fetches the demo footage once, runs the demo.
# Results land in out/demo/ (see the README's Quick start).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
mapfile -t media < <(.venv/bin/python scripts/fetch_media.py)
exec .venv/bin/python -m directanimator_core -v demo --driving "${media[0]}" --reference "${media[1]}" --out out/demo "$@"
