"""Speech without a transcript, measured: the evidence of README's "Speech without a transcript".

`evidence` builds long recordings from the `spoken` corpus's test split (several utterances each, pauses of
varied length, the corpus's voices; WAV and MP4) and reports, with a model trained by the demo recipe:

- word boundaries: Whisper's word timestamps vs pocketsphinx aligning Whisper's words, against espeak's own word
  events (`true_timings`), over the words Whisper heard right;
- test MAE / Acc2 scored from (a) the true transcripts and clips (pocketsphinx alignment, as evaluation does),
  (b) Whisper's transcripts of the true clips, (c) the full pipeline on the long files (each true utterance scored
  by the row overlapping it most);
- utterance segmentation of (c): a row matches an utterance when both its start and end lie within 0.5 s of
  the utterance's (first word's start, last word's end); precision and recall; word error rate of (b) and (c);
- speed of (c) in x real time (wall time / audio duration), on this machine's cores.

`long` measures time and peak RSS of one long recording (`--minutes`, built by repeating test clips), to show
memory stays bounded: run it at two lengths in two processes.

    python bench/bench_timeline.py evidence --model /tmp/asr_demo --corpus outputs/spoken-corpus
    python bench/bench_timeline.py boundaries --model /tmp/asr_demo --limit 48
    python bench/bench_timeline.py long --model /tmp/asr_demo --corpus outputs/spoken-corpus --minutes 30
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from recording import word_errors, write_mp4, write_wav  # noqa: E402

from cmbert_hf import CMBertSentimentPipeline  # noqa: E402
from cmbert_hf.alignment_cmbert import AlignmentError, align_words, normalize_word  # noqa: E402
from cmbert_hf.metrics import sentiment_metrics  # noqa: E402
from cmbert_hf.pipeline_cmbert import TASK  # noqa: E402
from cmbert_hf.transcription_cmbert import SAMPLING_RATE, transcribe_file  # noqa: E402
from dataset_script.recordings import decode_audio  # noqa: E402

TOLERANCE_S = 0.5


def test_rows(corpus: Path, limit: int | None):
    rows = [json.loads(line) for line in (corpus / "metadata.jsonl").read_text().splitlines()]
    rows = [row for row in rows if row["split"] == "test"][:limit]
    for row in rows:
        row["waveform"] = decode_audio({"path": str(corpus / row["file_name"])})
    return rows


def load(model):
    from transformers import pipeline

    return pipeline(TASK, model=model, pipeline_class=CMBertSentimentPipeline, device="cpu")


def score(pipe, text, waveform, timings=None):
    example = {"text": text, "audio": waveform, "sampling_rate": SAMPLING_RATE}
    if timings is not None:
        example["word_timings"] = timings
    return pipe(example)["score"]


def boundary_errors(timings, truth):
    """Absolute start and end errors (s) of the words that Whisper heard right (matched in order to the true
    words, so one misheard word leaves the others counted)."""
    from difflib import SequenceMatcher

    heard, said = [normalize_word(w) for w, _, _ in timings], [normalize_word(w) for w, _, _ in truth]
    errors = []
    for block in SequenceMatcher(a=heard, b=said, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            (_, a, b), (_, ta, tb) = timings[block.a + k], truth[block.b + k]
            errors += [abs(a - ta), abs(b - tb)]
    return errors


def per_clip(pipe, rows):
    """(a) and (b) and the word-boundary comparison, clip by clip."""
    out = {"a": [], "b": [], "errors": [0, 0], "whisper": [], "aligned": [], "unaligned": 0}
    folder = Path(os.environ.get("TMPDIR", "/tmp"), "bench_timeline_clips")
    folder.mkdir(exist_ok=True)
    for i, row in enumerate(rows):
        out["a"].append(score(pipe, row["text"], row["waveform"]))
        words, aligned = heard(row, folder / f"{i}.wav", out)
        text = " ".join(w for w, _, _ in words)
        errors = word_errors(row["text"], text)
        out["errors"] = [out["errors"][0] + errors[0], out["errors"][1] + errors[1]]
        # Nothing heard: no text to score, so the empty prediction 0.
        out["b"].append(score(pipe, text, row["waveform"], aligned) if words else 0.0)
    return out


def heard(row, path: Path, out: dict):
    """Whisper's words of one clip with their timestamps, and the same words aligned by pocketsphinx (Whisper's
    times where it fails, counted in `out["unaligned"]`); each boundary's error is added to `out`."""
    words = [w for u, _ in transcribe_file(write_wav(path, row["waveform"], SAMPLING_RATE), word_timing="whisper")
             for w in u.words]  # fmt: skip
    if not words:
        return words, words
    try:
        aligned = align_words(row["waveform"], [w for w, _, _ in words], SAMPLING_RATE)
    except AlignmentError:
        aligned, out["unaligned"] = words, out["unaligned"] + 1
    truth = [tuple(t) for t in row["true_timings"]]
    for name, timings in (("whisper", words), ("aligned", aligned)):
        out[name] += boundary_errors(timings, truth)
    return words, aligned


def build_recordings(rows, per_recording: int, folder: Path, seed: int = 0):
    """Long recordings of `per_recording` clips each, pauses drawn from 0.6-2.0 s; WAV and MP4 alternately."""
    rng = np.random.default_rng(seed)
    recordings = []
    for first in range(0, len(rows), per_recording):
        group, parts, truth, t = rows[first : first + per_recording], [], [], 0.0
        for row in group:
            pause = np.zeros(round(rng.uniform(0.6, 2.0) * SAMPLING_RATE), np.float32)
            parts += [pause, row["waveform"]]
            t += len(pause) / SAMPLING_RATE
            timings = row["true_timings"]
            truth.append((row, t + timings[0][1], t + timings[-1][2]))
            t += len(row["waveform"]) / SAMPLING_RATE
        parts.append(np.zeros(SAMPLING_RATE, np.float32))
        waveform = np.concatenate(parts)
        name = folder / f"recording{first // per_recording:02d}"
        use_mp4 = (first // per_recording) % 2 == 1
        path = write_mp4(name.with_suffix(".mp4"), waveform, SAMPLING_RATE) if use_mp4 else write_wav(
            name.with_suffix(".wav"), waveform, SAMPLING_RATE
        )  # fmt: skip
        recordings.append((path, truth, len(waveform) / SAMPLING_RATE))
    return recordings


def full_pipeline(pipe, recordings):
    """(c): scores, segmentation and WER of the timeline rows against the true utterances."""
    scores, labels, matched, predicted, actual, errors, seconds, audio = [], [], 0, 0, 0, [0, 0], 0.0, 0.0
    for path, truth, duration in recordings:
        start = time.perf_counter()
        rows = pipe({"audio": str(path)})
        seconds, audio = seconds + time.perf_counter() - start, audio + duration
        predicted, actual = predicted + len(rows), actual + len(truth)
        for row, true_start, true_end in truth:
            overlap = [max(0.0, min(r["end"], true_end) - max(r["start"], true_start)) for r in rows]
            best = rows[int(np.argmax(overlap))] if rows and max(overlap) > 0 else None
            labels.append(row["label"])
            scores.append(best["score"] if best else 0.0)
            heard = best["text"] if best else ""
            found = word_errors(row["text"], heard)
            errors = [errors[0] + found[0], errors[1] + found[1]]
            if best and abs(best["start"] - true_start) <= TOLERANCE_S and abs(best["end"] - true_end) <= TOLERANCE_S:
                matched += 1
    return {
        "metrics": sentiment_metrics(scores, labels), "precision": matched / max(predicted, 1),
        "recall": matched / actual, "wer": errors[0] / errors[1], "x_real_time": seconds / audio,
        "audio_s": audio, "rows": predicted, "utterances": actual,
    }  # fmt: skip


def boundaries(args):
    """Only the word-boundary comparison (Whisper, then pocketsphinx on Whisper's words), on more clips."""
    summary = {"whisper": [], "aligned": [], "unaligned": 0}
    for row in test_rows(Path(args.corpus), args.limit):
        heard(row, Path(args.workdir, "clip.wav"), summary)
    report = {name: boundary_summary(summary[name]) for name in ("whisper", "aligned")}
    report.update(pocketsphinx_failed=summary["unaligned"], clips=args.limit)
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


def boundary_summary(errors):
    errors = np.array(errors)
    return {"boundaries": len(errors), "mean_abs_error_s": float(errors.mean()), "within_50ms": float(np.mean(errors <= 0.05))}


def evidence(args):
    rows = test_rows(Path(args.corpus), args.limit)
    pipe = load(args.model)
    labels = [row["label"] for row in rows]
    clips = per_clip(pipe, rows)
    folder = Path(args.workdir)
    folder.mkdir(parents=True, exist_ok=True)
    full = full_pipeline(pipe, build_recordings(rows, args.per_recording, folder))
    summary = {
        "utterances": len(rows),
        "a_true_transcripts": sentiment_metrics(clips["a"], labels),
        "b_whisper_on_true_segments": sentiment_metrics(clips["b"], labels),
        "b_wer": clips["errors"][0] / clips["errors"][1],
        "c_full_pipeline": full,
        "word_boundaries": {name: boundary_summary(clips[name]) for name in ("whisper", "aligned")},
        "pocketsphinx_failed": clips["unaligned"],
        "cpu_threads": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")


def cpu_seconds() -> float:
    """This process's CPU time (all threads): unlike wall time, what other jobs on shared cores do not inflate.
    Over two cores, wall time on an idle machine lies between half of it and all of it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def long_recording(args):
    rows = test_rows(Path(args.corpus), 40)
    rng = np.random.default_rng(0)
    path = Path(args.workdir, f"long_{args.minutes}min.wav")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    import soundfile as sf

    with sf.SoundFile(str(path), "w", SAMPLING_RATE, 1) as out:  # written piece by piece: never held whole
        written = 0
        while written < args.minutes * 60 * SAMPLING_RATE:
            row = rows[rng.integers(len(rows))]
            piece = np.concatenate([np.zeros(round(rng.uniform(0.6, 2.0) * SAMPLING_RATE), np.float32), row["waveform"]])
            out.write(piece)
            written += len(piece)
    del rows
    pipe = load(args.model)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu, count = time.perf_counter(), cpu_seconds(), 0
    for _ in pipe.timeline(str(path)):
        count += 1
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    summary = {
        "audio_s": written / SAMPLING_RATE, "utterances": count, "seconds": seconds,
        "x_real_time": seconds / (written / SAMPLING_RATE), "cpu_s": cpu, "cpu_x_real_time": cpu / (written / SAMPLING_RATE),
        "peak_rss_mb_before": baseline / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_threads": os.cpu_count(),
        "load_average": os.getloadavg(),
    }  # fmt: skip
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["evidence", "boundaries", "long"])
    parser.add_argument("--model", required=True, help="A model trained by the demo recipe (train.py's output_dir).")
    parser.add_argument("--corpus", default=str(REPO / "outputs/spoken-corpus"))
    parser.add_argument("--limit", type=int, help="evidence: only the first N test utterances.")
    parser.add_argument("--per-recording", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--workdir", default="/tmp/bench_timeline")
    parser.add_argument("--out", help="Write the summary JSON here too.")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    {"evidence": evidence, "boundaries": boundaries, "long": long_recording}[args.mode](args)


if __name__ == "__main__":
    main()
