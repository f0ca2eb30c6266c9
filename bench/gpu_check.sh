#!/usr/bin/env bash
# One GPU pass of the benchmarks (at most 6 minutes by its timeouts, ~3-4 expected, on an H100/H200); run from the repo root:
#     bash bench/gpu_check.sh            # on the device machine: results land in $OUT
# 1. no host-device sync in a CM-BERT training step; 2. train step time + peak memory (bf16 autocast,
# SDPA), eager then torch.compile; 3. inference latency b1/b32; 4. MOSI padding/grouping throughput.
# The GPU image has torch but an older transformers (5.17): the repo's pinned one comes as a wheel in
# .whl/ (see bench/README.md). MiniLM's weights do not travel (87 MB): the models are random-initialised
# with MiniLM's shapes, which times the same; MOSI lengths come from bench/mosi_train_lengths.json.
set -uo pipefail
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
run() { echo; echo "== $*"; timeout "$@" || echo "!! exit $? for: $*"; }
B="--backbone ${BACKBONE:-minilm}"  # BACKBONE=tiny for a quick dry run
run 45  python3 bench/sync_check.py $B --out "$OUT/sync.json"
run 60  python3 bench/bench_train.py $B --repeats 15 --steps 5 --out "$OUT/train.json"
run 45  python3 bench/bench_infer.py $B --repeats 15 --calls 20 --out "$OUT/infer.json"
run 60  python3 bench/bench_mosi.py $B --repeats 9 --batches 5 --out "$OUT/mosi.json"
# Compiled: the original reference is left out (its numpy norm breaks the graph and it would only add
# compile time); one fixed shape, so no recompiles.
run 150 python3 bench/bench_train.py $B --compile --models cmbert bert --repeats 15 --steps 5 \
    --out "$OUT/train_compile.json"
