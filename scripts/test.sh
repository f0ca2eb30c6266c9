#!/usr/bin/env bash
# Sets everything up, then runs the fast test suite, the developer's loop; `-m slow` runs only the slow tests (Ray
# cluster, two-process launch, per-family train-and-push, multi-training), `-m "slow or not slow"` all (.ci/run). Needs no root: the speech the
# tests synthesise comes from libespeak-ng in the `espeakng-loader` wheel (the `speech` extra, pulled in by `test`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
