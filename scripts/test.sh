#!/usr/bin/env bash
# Sets everything up, then runs the default test suite (slow tests: add `-m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
# Real speech for the feature-extractor tests comes from espeak-ng (a Debian package).
if ! command -v espeak-ng >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
