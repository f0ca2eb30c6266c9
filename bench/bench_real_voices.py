"""Real voices beside espeak: the aligner's word boundaries, the f0 feature against Praat, and the transcript check.

On tests/fixtures/real_voices (recordings of human speech with reference word timings, see its README) and on
the `spoken` corpus's test split (espeak-ng; reference timings are espeak's word events):

- aligner: |aligned - reference| over every word start and end (median, share within 50 ms), and at the clip edges,
  and where the boundaries off by more than 50 ms lie; on the real clips also without the transcript check, by who
  made the reference (a person, or an aligner);
- f0 (real voices): the extractor's per-word f0 (median of its voiced frames) against Praat's median f0 over the same
  span (`praat-parselmouth`, GPL: a reference here only, never a dependency of the package), on the reference spans
  and on the aligned ones: share of voiced words within one semitone, octave errors; on every word Praat calls
  voiced, on the words Praat and a second tracker (librosa's pYIN) both call voiced, and on those where the two
  agree within a semitone;
- transcript check: how many true transcripts `align_words` refuses (`TranscriptMismatchError` or a lost word), and
  how many wrong ones it catches: another clip's sentence, the first two words only, the words shuffled, two extra
  words.

    pip install praat-parselmouth
    python bench/bench_real_voices.py                       # writes the spoken test split (200 rows, seed 0) first
    python bench/bench_real_voices.py --spoken DIR --rows 50
"""

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402

from cmbert_hf.alignment_cmbert import SAMPLING_RATE, AlignmentError, align_words, resample  # noqa: E402
from cmbert_hf.feature_extraction_cmbert import CMBertFeatureExtractor  # noqa: E402

REAL = REPO / "tests" / "fixtures" / "real_voices"
OUT = Path(__file__).resolve().parent / "results" / "real_voices.json"


def load_rows(folder: Path, limit: int | None, split: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    rows = [row for row in rows if split is None or row.get("split") == split][:limit]
    for row in rows:
        waveform, rate = sf.read(folder / row["file_name"], dtype="float32")
        row["waveform"] = resample(waveform, rate, SAMPLING_RATE).astype(np.float32)
        row["words"] = row["text"].split()
    return rows


def boundary_summary(pairs) -> dict:
    """pairs: (aligned timings, reference timings) per utterance. Boundaries off by more than 50 ms are counted by
    where they lie: a clip edge, a word edge next to a pause of the reference (over 30 ms), or connected speech."""
    every, edges, misses = [], [], {"clip_edge": 0, "at_a_reference_pause": 0, "in_connected_speech": 0}
    for aligned, reference in pairs:
        last = len(aligned) - 1
        for i, ((_, start, end), (_, true_start, true_end)) in enumerate(zip(aligned, reference, strict=True)):
            pauses = (true_start - reference[i - 1][2] if i else None,
                      reference[i + 1][1] - true_end if i < last else None)  # fmt: skip
            for error, pause in zip((abs(start - true_start), abs(end - true_end)), pauses):
                every.append(error)
                if pause is None:
                    edges.append(error)
                if error > 0.05:
                    where = "at_a_reference_pause" if pause is not None and pause > 0.03 else "in_connected_speech"
                    misses["clip_edge" if pause is None else where] += 1
    every, edges = np.array(every), np.array(edges)
    return {
        "boundaries": len(every),
        "median_ms": round(1000 * float(np.median(every)), 1),
        "within_50ms": round(float(np.mean(every <= 0.05)), 3),
        "edges_median_ms": round(1000 * float(np.median(edges)), 1),
        "edges_within_50ms": round(float(np.mean(edges <= 0.05)), 3),
        "misses": misses,
    }


def reference_kind(row: dict) -> str:
    """Who made a real clip's reference timings (its `labels`): a person, or an aligner (festvox's, MFA, ...)."""
    return "hand_labelled" if row["labels"].startswith("hand-labelled") else "aligner_made"


def f0_summary(rows: list[dict], spans_of) -> dict:
    """The extractor's word f0 against Praat's on every word Praat calls voiced, on the words both Praat and pYIN
    (librosa) call voiced, and on those where the two agree within a semitone: the creaky cold-corpus voice splits
    the two trackers."""
    import librosa
    import parselmouth

    extractor = CMBertFeatureExtractor(features=["f0"], do_normalize=False)
    against_praat, against_voiced, against_both = [], [], []
    for row in rows:
        spans = spans_of(row)
        ours = extractor(row["waveform"], word_timings=spans, sampling_rate=SAMPLING_RATE)["word_features"][:, 0]
        waveform = row["waveform"].astype(np.float64)
        pitch = parselmouth.Sound(waveform, SAMPLING_RATE).to_pitch(time_step=0.01, pitch_floor=50, pitch_ceiling=500)
        times, hz = pitch.xs(), pitch.selected_array["frequency"]
        pyin, voiced, _ = librosa.pyin(waveform, fmin=50, fmax=500, sr=SAMPLING_RATE, frame_length=1024, hop_length=160)
        pyin_times = np.arange(len(pyin)) * 160 / SAMPLING_RATE
        for (_, start, end), f0 in zip(spans, ours):
            praat = hz[(times >= start) & (times < end) & (hz > 0)]
            other = pyin[(pyin_times >= start) & (pyin_times < end) & voiced]
            if praat.size < 3:
                continue
            semitones = abs(12 * np.log2(f0 / np.median(praat))) if f0 > 0 else np.inf
            against_praat.append(semitones)
            if other.size >= 3:
                against_voiced.append(semitones)
                if abs(12 * np.log2(np.median(other) / np.median(praat))) <= 1:
                    against_both.append(semitones)
    groups = {"praat": against_praat, "praat_and_pyin_voiced": against_voiced, "praat_and_pyin_agree": against_both}
    return {name: _agreement(np.array(values)) for name, values in groups.items()}


def _agreement(semitones: np.ndarray) -> dict:
    """semitones: |ours - reference| per word, inf where we call the word unvoiced."""
    return {
        "voiced_words": len(semitones),
        "within_1_semitone": round(float(np.mean(semitones <= 1)), 3),
        "octave_errors": int(np.sum(np.isfinite(semitones) & (semitones >= 6))),
        "unvoiced_for_us": int(np.sum(~np.isfinite(semitones))),
    }


def wrong_transcripts(rows: list[dict], i: int, rng: random.Random) -> dict[str, list[str]]:
    words = rows[i]["words"]
    shuffled = words[:]
    while len(words) > 1 and shuffled == words:
        rng.shuffle(shuffled)
    other = next(row["words"] for row in rows[i + 1 :] + rows[:i] if row["words"] != words)
    return {"another_sentence": other, "cut_to_two_words": words[:2], "shuffled": shuffled,
            "extra_words": words + ["wonderful", "story"]}  # fmt: skip


def check_summary(rows: list[dict], seed: int = 0) -> dict:
    """Aligns every true and wrong transcript; counts what `align_words` refuses."""
    rng = random.Random(seed)
    flagged, caught, totals, aligned, seconds = [], {}, {}, [], 0.0
    for i, row in enumerate(rows):
        start = time.perf_counter()
        try:
            aligned.append((align_words(row["waveform"], row["words"]), row.get("true_timings")))
        except AlignmentError as error:
            flagged.append(f"{row['file_name']}: {error}")
        seconds += time.perf_counter() - start
        for kind, words in wrong_transcripts(rows, i, rng).items():
            if words == row["words"]:
                continue
            totals[kind] = totals.get(kind, 0) + 1
            try:
                align_words(row["waveform"], words)
            except AlignmentError:
                caught[kind] = caught.get(kind, 0) + 1
    audio = sum(len(row["waveform"]) for row in rows) / SAMPLING_RATE
    return {
        "utterances": len(rows),
        "true_flagged": len(flagged),
        "true_flagged_rate": round(len(flagged) / len(rows), 4),
        "flagged": flagged,
        "wrong_caught": {kind: f"{caught.get(kind, 0)}/{n}" for kind, n in totals.items()},
        "align_and_check_real_time_fraction_one_process": round(seconds / audio, 4),
        "aligned": [pair for pair in aligned if pair[1]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spoken", type=Path, help="A spoken corpus folder; default: a fresh test split.")
    parser.add_argument("--rows", type=int, default=200, help="Spoken test-split utterances.")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.spoken
        if folder is None:
            from dataset_script.spoken import write_corpus

            # The `spoken` config's test split: 200 rows, seed 0, cross-modal fraction 0.3.
            folder = write_corpus(Path(scratch, "spoken"), {"train": 0, "validation": 0, "test": args.rows}, 0, 0.3)
        spoken = load_rows(folder, args.rows, split="test")
    real = load_rows(REAL, None)
    result = {}
    for name, rows in (("real_voices", real), ("spoken_test", spoken)):
        check = check_summary(rows)
        result[name] = {"aligner": boundary_summary(check.pop("aligned")), "transcript_check": check}
    # Every real clip aligned without the check: the boundaries by who made the reference, and the f0 on those spans.
    unchecked = {row["file_name"]: align_words(row["waveform"], row["words"], check_transcript=False) for row in real}
    by_kind = {}
    for row in real:
        by_kind.setdefault(reference_kind(row), []).append((unchecked[row["file_name"]], row["true_timings"]))
    result["real_voices"]["aligner_without_check"] = {
        "all": boundary_summary([pair for pairs in by_kind.values() for pair in pairs]),
        **{kind: boundary_summary(pairs) for kind, pairs in sorted(by_kind.items())},
    }
    result["real_voices"]["f0"] = {
        "reference_spans": f0_summary(real, lambda row: [tuple(span) for span in row["true_timings"]]),
        "aligned_spans": f0_summary(real, lambda row: unchecked[row["file_name"]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for name, section in result.items():
        aligner, check = section["aligner"], section["transcript_check"]
        print(f"{name}: aligner median {aligner['median_ms']} ms, {aligner['within_50ms']:.1%} within 50 ms "
              f"({aligner['boundaries']} boundaries; clip edges {aligner['edges_median_ms']} ms, "
              f"{aligner['edges_within_50ms']:.1%}); true transcripts refused {check['true_flagged']}/"
              f"{check['utterances']}; wrong ones caught {check['wrong_caught']}; align + check "
              f"{check['align_and_check_real_time_fraction_one_process']} x real time on one process")
    for spans, references in result["real_voices"]["f0"].items():
        for reference, f0 in references.items():
            print(f"real voices f0 ({spans}) vs {reference}: {f0['within_1_semitone']:.1%} of {f0['voiced_words']} "
                  f"voiced words within one semitone, {f0['octave_errors']} octave errors, {f0['unvoiced_for_us']} "
                  "called unvoiced")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
