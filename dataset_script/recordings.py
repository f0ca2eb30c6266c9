"""A folder of recordings with a metadata file, read and validated for the `recordings` / `spoken` configs.

The layout is `datasets`' AudioFolder one: audio files anywhere under a folder and, at its top,
`metadata.csv` or `metadata.jsonl` with one row per file:

- `file_name` (required): the audio file, relative to the folder. Any format libsndfile reads (WAV, FLAC, OGG,
  MP3, ...), any rate and channel count: `decode_audio` gives 16 kHz mono.
- `text` (required column): the transcript, words separated by spaces. An empty one is transcribed when the data
  set is built, by the `transcribe(path, asr_model)` function its reader is given (`cmbert_hf.transcription_cmbert.
  transcript`, Whisper; passed in because this package does not import `cmbert_hf`); a given one is never replaced.
  Each row's `transcript` says which: `"given"` or `"asr:<model>"`.
- `label` (required): sentiment in [-3, 3].
- `split` (optional): "train", "validation" or "test". Without the column every row is `train` (as in
  AudioFolder); with it, every row needs one.
- `video_id` (optional): the source video or speaker, "" when absent.
- `word_timings` (optional): a JSON list `[[word, start_s, end_s], ...]`, one per word of `text` in order (in
  CSV, the JSON as a string). Empty / absent: none (the feature extraction aligns the words).
- `true_timings` (optional): the same format, reference timings kept for evaluating an aligner (the `spoken`
  corpus writes espeak's own word events here).

Everything is read and checked before anything is written: a missing, empty, truncated, silent or unreadable file,
a bad label or split, or timings outside the clip, out of order or naming other words than the text each raise
`MosiDataError` naming the metadata file, the row, the audio file and the word.
"""

import csv
import io
import json
import math
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from dataset_script.sources import LABEL_RANGE, SPLITS, MissingSourceError, MosiDataError

METADATA_FILES = ("metadata.csv", "metadata.jsonl")
REQUIRED = ("file_name", "text", "label")
OPTIONAL = ("split", "video_id", "word_timings", "true_timings")
SAMPLING_RATE = 16000
# A clip whose peak stays below this (-80 dBFS) holds no speech.
SILENCE_PEAK = 1e-4
# Timings may end up to one 10 ms aligner frame past the last sample.
TIMING_TOLERANCE_S = 0.01


def find_metadata(folder) -> Path:
    """The folder's one metadata file."""
    found = [Path(folder, name) for name in METADATA_FILES if Path(folder, name).is_file()]
    if len(found) != 1:
        problem = "both" if found else "neither"
        raise MissingSourceError(f"{folder}: found {problem} of {' / '.join(METADATA_FILES)}; put exactly one at the folder's top.")
    return found[0]


def read_metadata(path: Path) -> list[dict]:
    """Rows of `metadata.csv` / `metadata.jsonl` as dicts of the known columns (unknown columns are an error)."""
    if path.suffix == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise MosiDataError(path, f"line {line_no} is not JSON ({e})") from None
                if not isinstance(row, dict):
                    raise MosiDataError(path, f"line {line_no} holds a {type(row).__name__}", expected="a JSON object")
                rows.append(row)
    if not rows:
        raise MosiDataError(path, "no rows", expected="one row per audio file")
    columns = set().union(*rows)
    missing = [c for c in REQUIRED if c not in columns]
    unknown = sorted(columns - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        expected = f"{list(REQUIRED)} plus any of {list(OPTIONAL)}"
        raise MosiDataError(path, f"missing columns {missing}, unknown columns {unknown}", expected=expected)
    return rows


def read_recordings(folder, transcribe=None, asr_model: str | None = None) -> dict[str, list[dict]]:
    """
    Reads and validates a recordings folder.

    Args:
        folder: the folder.
        transcribe (`Callable[[str, str], str]`, *optional*): `transcribe(audio_path, asr_model)` -> the words heard,
            for rows without a transcript (without it, such a row is an error).
        asr_model (`str`, *optional*): the speech recogniser `transcribe` runs.

    Returns:
        `dict[str, list[dict]]`: split -> rows with `id`, `video_id`, `text`, `transcript` (`"given"` or
        `"asr:<asr_model>"`), `label`, `audio` (`{"bytes", "path"}` of the file as it is), `word_timings` and
        `true_timings` (lists of `{"word", "start", "end"}` or `None`). Only splits that have rows are present.
    """
    folder = Path(folder)
    path = find_metadata(folder)
    rows = read_metadata(path)
    has_split = any("split" in row for row in rows)
    out = {}
    for number, row in enumerate(rows):
        where = {"split": None, "row": number}
        file_name = str(row.get("file_name") or "")
        if not file_name:
            raise MosiDataError(path, "empty file_name", **where)
        split = row.get("split") if has_split else "train"
        if split not in SPLITS:
            raise MosiDataError(path, f"{file_name}: split {split!r}", **where, expected=f"one of {list(SPLITS)}")
        text, transcript = str(row.get("text") or ""), "given"
        if not text.split() and transcribe is None:
            expected = "a transcript (or a transcriber: train.py transcribes empty texts with --asr_model)"
            raise MosiDataError(path, f"{file_name}: empty text", **where, expected=expected)
        try:
            label = float(row["label"])
        except (TypeError, ValueError):
            raise MosiDataError(path, f"{file_name}: label {row['label']!r} is not a number", **where) from None
        if not LABEL_RANGE[0] <= label <= LABEL_RANGE[1]:  # NaN fails too
            raise MosiDataError(path, f"{file_name}: label {label}", **where, expected="a number in [-3, 3]")
        data, duration = _read_audio(folder, file_name, path, where)
        if not text.split():
            text, transcript = transcribe(str(folder / file_name), asr_model), f"asr:{asr_model}"
            if not text.split():
                raise MosiDataError(path, f"{file_name}: {asr_model} heard no words in it", **where)
        timings = {
            column: _parse_timings(row.get(column), text.split(), duration, f"{file_name}: {column}", path, where)
            for column in ("word_timings", "true_timings")
        }
        out.setdefault(split, []).append(
            {
                "id": file_name,
                "video_id": str(row.get("video_id") or ""),
                "text": text,
                "transcript": transcript,
                "label": label,
                "audio": {"bytes": data, "path": file_name},
                **timings,
            }
        )
    return {split: out[split] for split in SPLITS if split in out}


def decode_audio(audio, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """
    A stored audio value (`{"bytes", "path"}`, what `datasets.Audio(decode=False)` gives) as a mono float32 waveform
    at `sampling_rate`: channels averaged, resampled with librosa. `datasets` itself decodes `Audio` columns only with
    torchcodec; this does it with soundfile.
    """
    import librosa  # only decoding needs it

    source = io.BytesIO(audio["bytes"]) if audio.get("bytes") is not None else audio["path"]
    waveform, rate = sf.read(source, dtype="float32", always_2d=True)
    waveform = waveform.mean(axis=1)
    if rate != sampling_rate:
        waveform = librosa.resample(waveform, orig_sr=rate, target_sr=sampling_rate)
    return waveform.astype(np.float32)


def _read_audio(folder: Path, file_name: str, path: Path, where: dict) -> tuple[bytes, float]:
    """The file's bytes and duration in seconds, after checking that it decodes to a non-silent clip."""
    audio_path = folder / file_name
    if not audio_path.is_file():
        raise MosiDataError(path, f"audio file {audio_path} not found", **where)
    data = audio_path.read_bytes()
    if not data:
        raise MosiDataError(path, f"audio file {audio_path} is empty", **where)
    if _wav_truncated(data):
        raise MosiDataError(path, f"audio file {audio_path} is truncated (shorter than its WAV header says)", **where)
    try:
        waveform, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MosiDataError(path, f"audio file {audio_path} is not readable audio ({e})", **where) from None
    if waveform.size == 0:
        raise MosiDataError(path, f"audio file {audio_path} holds no samples (empty or truncated)", **where)
    if not np.isfinite(waveform).all():
        raise MosiDataError(path, f"audio file {audio_path} holds NaN or inf samples", **where)
    if np.abs(waveform).max() < SILENCE_PEAK:
        raise MosiDataError(path, f"audio file {audio_path} is silent (peak below -80 dBFS)", **where)
    return data, len(waveform) / rate


def _wav_truncated(data: bytes) -> bool:
    """Whether a RIFF/WAVE file's `data` chunk claims more bytes than the file holds (libsndfile reads it anyway)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return False
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        if chunk == b"data":
            return offset + 8 + size > len(data)
        offset += 8 + size + (size & 1)
    return False  # no data chunk: libsndfile reports it


def _parse_timings(value, words: list[str], duration: float, what: str, path: Path, where: dict):
    """`[[word, start, end], ...]` (or its JSON) -> `[{"word", "start", "end"}, ...]`, checked against the text."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise MosiDataError(path, f"{what} is not JSON ({e})", **where) from None
    if not isinstance(value, list) or len(value) != len(words):
        count = len(value) if isinstance(value, list) else type(value).__name__
        expected = f"{len(words)} [word, start_s, end_s], one per word of the text"
        raise MosiDataError(path, f"{what} has {count} entries", **where, expected=expected)
    out, previous_start = [], 0.0
    for i, (entry, word) in enumerate(zip(value, words)):
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)):
            raise MosiDataError(path, f"{what} entry {i} is {entry!r}", **where, expected="[word, start_s, end_s]")
        name, start, end = entry
        if name != word:
            raise MosiDataError(path, f"{what} entry {i} names {name!r} but word {i} of the text is {word!r}", **where)
        try:
            start, end = float(start), float(end)
        except (TypeError, ValueError):
            problem = f"{what} word {i} {word!r} has times {entry[1:]!r}"
            raise MosiDataError(path, problem, **where, expected="numbers") from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end <= duration + TIMING_TOLERANCE_S):
            expected = f"0 <= start < end <= the clip's {duration:.3f} s"
            raise MosiDataError(path, f"{what} word {i} {word!r} spans [{start}, {end}] s", **where, expected=expected)
        if start < previous_start:
            problem = f"{what} word {i} {word!r} starts at {start} s, before the previous word"
            raise MosiDataError(path, problem, **where, expected="words in spoken order")
        previous_start = start
        out.append({"word": word, "start": start, "end": end})
    return out


__all__ = ["read_recordings", "read_metadata", "find_metadata", "decode_audio", "METADATA_FILES"]
