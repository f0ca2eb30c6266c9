#!/usr/bin/env bash
# The main job on the offline default: set up, fine-tune CM-BERT (MiniLM backbone, synthetic data),
# then reload the saved Hub-ready folder in a fresh process as remote code and print its test metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-outputs/demo}
.venv/bin/python train.py --config configs/demo.yaml --output_dir "$OUT" "$@"
# A new process reloads the folder from its own code (the classes its auto_map names, as
# AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True) loads them) and scores it.
.venv/bin/cmbert evaluate --model "$OUT" --trust-remote-code --data synthetic --split test
