"""Speech the tests synthesise with libespeak-ng (no system package needed; see dataset_script/espeak.py)."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

ESPEAK_RATE = 22050  # espeak-ng always writes 22.05 kHz
# (word, espeak pitch, espeak amplitude): one high-pitched word, one loud word.
WORDS = [("movie", 50, 60), ("wonderful", 95, 60), ("really", 50, 200), ("terrible", 50, 60)]


def speak(text: str, **kwargs):
    """`dataset_script.espeak.synthesize`, failing the test (not skipping it) when espeak-ng cannot run."""
    try:
        from dataset_script.espeak import synthesize

        return synthesize(text, **kwargs)
    except (ImportError, RuntimeError) as error:  # EspeakError is a RuntimeError
        pytest.fail(f"espeak-ng synthesis is required for these tests ({error}): pip install -e '.[test]'")


def write_folder(folder, rows, metadata="metadata.jsonl"):
    """Writes a recordings folder: each row's `speech` (a `Speech`) to its `file_name`, the rest as metadata.

    Rows without `speech` name files the test writes itself. Returns the metadata path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for row in rows:
        row = dict(row)
        speech = row.pop("speech", None)
        if speech is not None:
            (folder / row["file_name"]).parent.mkdir(parents=True, exist_ok=True)
            sf.write(folder / row["file_name"], speech.waveform, speech.sampling_rate)
        records.append(row)
    path = folder / metadata
    if metadata.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=sorted(set().union(*records)))
            writer.writeheader()
            writer.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in records)
    return path


def join(clips, pause_after=None, pause_s=0.4):
    """Joins clips with 0.2 s of faint noise around them (and a pause after clip `pause_after`).

    Returns the waveform and the timings `(word, start_s, end_s)`, the pause included as the word `"<sil>"`.
    """
    rng = np.random.default_rng(0)
    edge = np.zeros(int(0.2 * ESPEAK_RATE), np.float32)
    parts, timings, t = [edge], [], len(edge) / ESPEAK_RATE
    for i, clip in enumerate(clips):
        parts.append(clip)
        timings.append((WORDS[i][0], t, t + len(clip) / ESPEAK_RATE))
        t += len(clip) / ESPEAK_RATE
        if i == pause_after:
            parts.append(np.zeros(int(pause_s * ESPEAK_RATE), np.float32))
            timings.append(("<sil>", t, t + pause_s))
            t += pause_s
    parts.append(edge)
    waveform = np.concatenate(parts)
    return waveform + 1e-4 * rng.standard_normal(len(waveform)).astype(np.float32), timings
