#!/usr/bin/env bash
# Sets everything up, then runs the default test suite (slow tests: add `-m slow`). Needs no root: the speech the
# tests synthesise comes from libespeak-ng in the `espeakng-loader` wheel (the `speech` extra, pulled in by `test`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
