"""Audio feature extraction throughput: the whole training-data path on `spoken` corpus files, as a fraction of
real time.

The path is training's: `cmbert_hf.featurize.extract_word_features` (a `Dataset.map` in `--workers` processes) reads
each FLAC file (decode + resample to 16 kHz), aligns its words with pocketsphinx and computes the word features.
The headline is wall time / audio duration on `--workers` processes (target <= 0.05: 1 h of speech in 3 min). The
shares of the three steps come from timing them one after the other on one process, which also measures the
aligner's word boundaries against the corpus's `true_timings` (espeak's word events) where it has them.

    python bench/bench_extract.py                                      # 120 utterances, 2 processes (~1 min)
    python bench/bench_extract.py --corpus DIR --split test --rows 200  # a recordings folder (metadata.jsonl)
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import datasets  # noqa: E402
import soundfile as sf  # noqa: E402

from cmbert_hf import CMBertFeatureExtractor  # noqa: E402
from cmbert_hf.featurize import extract_word_features  # noqa: E402
from cmbert_hf.alignment_cmbert import align_words  # noqa: E402

TARGET = 0.05
OUT = Path(__file__).resolve().parent / "results" / "extract_cpu.json"


def corpus_rows(folder: Path, limit: int, split: str | None) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    rows = [row for row in rows if split is None or row.get("split", "train") == split]
    return [
        {"audio": str(folder / row["file_name"]), "text": row["text"], "true_timings": row.get("true_timings")}
        for row in rows[:limit]
    ]


def shares(rows: list[dict]) -> tuple[dict, list[float]]:
    """Seconds spent decoding, aligning and computing features, one step after the other in this process; and the
    aligned word boundaries' distances (s) from the true ones, starts and ends."""
    extractor = CMBertFeatureExtractor(do_normalize=False)
    align_words(*extractor._load(rows[0]["audio"], None, None)[:1], rows[0]["text"].split())  # load the decoder
    spent, errors = {"decode": 0.0, "align": 0.0, "features": 0.0}, []
    for row in rows:
        start = time.perf_counter()
        waveform, _ = extractor._load(row["audio"], None, None)
        decoded = time.perf_counter()
        try:
            timings = align_words(waveform, row["text"].split())
        except ValueError:  # unaligned: the spread fallback, whose cost is a rounding error
            continue
        aligned = time.perf_counter()
        extractor.word_features(waveform, timings, sampling_rate=extractor.sampling_rate)
        spent["decode"] += decoded - start
        spent["align"] += aligned - decoded
        spent["features"] += time.perf_counter() - aligned
        for (_, start_s, end_s), (_, true_start, true_end) in zip(timings, row["true_timings"] or []):
            errors += [abs(start_s - true_start), abs(end_s - true_end)]
    return spent, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="A recordings folder; default: a fresh spoken corpus.")
    parser.add_argument("--rows", type=int, default=120, help="Utterances to extract.")
    parser.add_argument("--split", help="Only this split's utterances (metadata `split`).")
    parser.add_argument("--workers", type=int, default=2, help="Processes of the extraction map.")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.corpus
        if folder is None:
            from dataset_script.spoken import write_corpus

            folder = write_corpus(Path(scratch, "spoken"), {"train": args.rows, "validation": 0, "test": 0}, 0, 0.3)
        rows = corpus_rows(folder, args.rows, args.split)
        audio_s = sum(sf.info(row["audio"]).duration for row in rows)
        extractor = CMBertFeatureExtractor(do_normalize=False)
        data = datasets.Dataset.from_list([{"audio": row["audio"], "text": row["text"]} for row in rows])  # in memory: the map writes no cache, so nothing is reused
        start = time.perf_counter()
        out = extract_word_features(data, extractor, spread_unaligned=True, num_proc=args.workers)
        wall = time.perf_counter() - start
        spent, errors = shares(rows)
    step_total = sum(spent.values())
    result = {
        "rows": len(rows),
        "audio_seconds": round(audio_s, 2),
        "workers": args.workers,
        "wall_seconds": round(wall, 2),
        "real_time_fraction": round(wall / audio_s, 4),
        "target": TARGET,
        "ratio_to_target": round(wall / audio_s / TARGET, 3),
        "spread": out["word_timing"].count("spread"),
        "one_process_real_time_fraction": {step: round(s / audio_s, 4) for step, s in spent.items()},
        "share": {step: round(s / step_total, 3) for step, s in spent.items()},
        "boundary_error_s": None if not errors else {
            "boundaries": len(errors),
            "median": round(float(np.median(errors)), 4),
            "mean": round(float(np.mean(errors)), 4),
            "p90": round(float(np.percentile(errors, 90)), 4),
            "within_0.05": round(float(np.mean(np.array(errors) <= 0.05)), 4),
        },  # fmt: skip
        "env": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{len(rows)} utterances, {audio_s:.1f} s of audio, {args.workers} processes: {wall:.1f} s wall, "
          f"{wall / audio_s:.4f} x real time (target {TARGET}: {wall / audio_s / TARGET:.2f} x the target)")
    print("one process, per step (x real time / share): " + ", ".join(
        f"{step} {s / audio_s:.4f} / {s / step_total:.0%}" for step, s in spent.items()))
    if errors:
        error = result["boundary_error_s"]
        print(f"aligned word boundaries vs the true ones ({error['boundaries']}): median {error['median']} s, mean "
              f"{error['mean']} s, 90th percentile {error['p90']} s, {error['within_0.05']:.1%} within 50 ms")
    print(f"{result['spread']} utterances spread (pocketsphinx could not align them); written to {args.out}")


if __name__ == "__main__":
    main()
