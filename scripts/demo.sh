#!/usr/bin/env bash
# The main job, offline: set up, then train CM-BERT (MiniLM backbone) from the audio files of the `spoken` corpus
# (espeak-ng speech written once to $CORPUS: pocketsphinx alignment, word features, normalisation fitted on train,
# training), reload the saved Hub-ready folder in a fresh process as remote code and evaluate it on the test split
# (extracting the features from the files as training did), then score one test clip from its file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-outputs/demo}
CORPUS=${CORPUS:-outputs/spoken-corpus}
.venv/bin/python train.py --config configs/demo.yaml --output_dir "$OUT" --data_dir "$CORPUS" "$@"
# A new process reloads the folder from its own code (the classes its auto_map names, as
# AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True) loads them) and scores it.
.venv/bin/cmbert evaluate --model "$OUT" --trust-remote-code --data spoken --data-dir "$CORPUS" --split test
# The first test clip, from its file and transcript; training scored it as test_predictions.json's first value.
CLIP=test/00000.flac
TEXT=$(.venv/bin/python -c 'import json, sys
print(next(r["text"] for r in map(json.loads, open(sys.argv[1])) if r["file_name"] == sys.argv[2]))' \
    "$CORPUS/metadata.jsonl" "$CLIP")
echo "$CLIP: $TEXT (scored in training: $(.venv/bin/python -c 'import json, sys
print(json.load(open(sys.argv[1]))[0])' "$OUT/test_predictions.json"))"
.venv/bin/cmbert predict --model "$OUT" --trust-remote-code --audio "$CORPUS/$CLIP" --text "$TEXT"
