"""Speech the tests synthesise with libespeak-ng (no system package needed; see dataset_script/espeak.py)."""

import csv
import json

import pytest
import soundfile as sf


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
