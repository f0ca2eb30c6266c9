"""A folder of recordings with a metadata file, read and validated for the `recordings` / `spoken` configs.

The layout is `datasets`' AudioFolder one: audio files anywhere under a folder and, at its top,
`metadata.csv` or `metadata.jsonl` with one row per file:

- `file_name` (required): the audio file, relative to the folder and inside it (no absolute path, no `..` or link
  leading out of it), each file once. Any format libsndfile reads (WAV, FLAC, OGG,
  MP3, ...), any rate and channel count: `decode_audio` gives 16 kHz mono.
- `text` (required column): the transcript, words separated by spaces. An empty one is transcribed when the data
  set is built, by the `transcribe(path, asr_model)` function its reader is given (`cmbert_hf.transcription_cmbert.
  transcript`, Whisper; passed in because this package does not import `cmbert_hf`); a given one is never replaced.
  Each row's `transcript` says which: `"given"` or `"asr:<model>"`.
- `label` (required): sentiment in [-3, 3], a number (in JSON Lines not `true` / `false`).
- `split` (optional): "train", "validation" or "test". With the column every row needs one. Without it the folder is
  split for training: a permutation of the rows drawn with the config's `seed` (default 0) holds out
  `round(holdout_fraction * N)` rows (default 10%, at least one) for validation and as many for test, the rest
  train; each split keeps the metadata's row order. A folder of fewer than 3 rows needs the column.
- `video_id` (optional): the source video or speaker, "" when absent.
- `word_timings` (optional): a JSON list `[[word, start_s, end_s], ...]`, one per word of `text` in order (in
  CSV, the JSON as a string). Empty / absent: none (the feature extraction aligns the words).
- `true_timings` (optional): the same format, reference timings kept for evaluating an aligner (the `spoken`
  corpus writes espeak's own word events here).

Everything is read and checked before anything is written: metadata that is not UTF-8, a file outside the folder or
named twice, a missing, empty, truncated or unreadable file, a clip the feature extraction would refuse (silent, or
too short for its words: the config's `silence_dbfs` and `min_seconds_per_word`), a bad label, text or split, or
timings outside the clip, out of order or naming other words than the text each raise `MosiDataError` naming the
metadata file, the row, the audio file and the word.
"""

import csv
import io
import json
import math
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from dataset_script.errors import MissingSourceError, MosiDataError
from dataset_script.facts import LABEL_RANGE, SAMPLING_RATE, TIMING_COLUMNS
from dataset_script.sources import SPLITS, read_lines

METADATA_FILES = ("metadata.csv", "metadata.jsonl")
REQUIRED = ("file_name", "text", "label")
OPTIONAL = ("split", "video_id", *TIMING_COLUMNS)
# Timings may end up to one 10 ms aligner frame past the last sample.
TIMING_TOLERANCE_S = 0.01
# The loudness of a clip is that of its loudest frame, framed as the feature extraction frames it at 16 kHz:
# RMS over 512-sample windows (the 25 ms spectral window rounded up to a power of two) every 160 samples (10 ms).
FRAME_LENGTH, HOP_LENGTH = 512, 160


def find_metadata(folder) -> Path:
    """The folder's one metadata file."""
    if not Path(folder).is_dir():
        raise MissingSourceError(f"{folder}: no such folder (expected the recordings folder with {' or '.join(METADATA_FILES)})")
    found = [Path(folder, name) for name in METADATA_FILES if Path(folder, name).is_file()]
    if len(found) != 1:
        problem = "both" if found else "neither"
        raise MissingSourceError(f"{folder}: found {problem} of {' / '.join(METADATA_FILES)}; put exactly one at the folder's top.")
    return found[0]


def read_metadata(path: Path) -> list[dict]:
    """Rows of `metadata.csv` / `metadata.jsonl` as dicts of the known columns (unknown columns are an error)."""
    lines = read_lines(path, split=None, header=path.suffix == ".csv")  # names the file and line that is not UTF-8
    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO("\n".join(lines), newline="")))
    else:
        rows = []
        for line_no, line in enumerate(lines, start=1):
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


def read_recordings(
    folder, seed: int = 0, holdout_fraction: float = 0.1, silence_dbfs: float = -60.0, min_seconds_per_word: float = 0.05,
    transcribe=None, asr_model: str | None = None,
) -> dict[str, list[dict]]:
    """
    Reads and validates a recordings folder (the arguments are `RecordingsConfig`'s).

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
    splits = [row.get("split") for row in rows] if has_split else holdout_splits(len(rows), seed, holdout_fraction, path)
    seen = {}
    out = {}
    for number, (row, split) in enumerate(zip(rows, splits)):
        where = {"split": None, "row": number}
        file_name, audio_path = _file_in_folder(folder, row.get("file_name"), path, where)
        if audio_path in seen:
            raise MosiDataError(path, f"{file_name}: the same file as row {seen[audio_path]}", **where,
                                expected="each audio file once, with one label")
        seen[audio_path] = number
        if split not in SPLITS:
            raise MosiDataError(path, f"{file_name}: split {split!r}", **where, expected=f"one of {list(SPLITS)}")
        text, transcript = given_text(row, file_name, path, where, transcribable=transcribe is not None), "given"
        label = _label(row["label"], file_name, path, where)
        data, waveform = _read_audio(audio_path, path, where)
        duration = len(waveform) / SAMPLING_RATE
        if not text:
            text, transcript = transcribe(str(audio_path), asr_model), f"asr:{asr_model}"
            if not text.split():
                raise MosiDataError(path, f"{file_name}: {asr_model} heard no words in it", **where)
        _check_speech(waveform, len(text.split()), audio_path, path, where, silence_dbfs, min_seconds_per_word)
        timings = {
            column: _parse_timings(row.get(column), text.split(), duration, f"{file_name}: {column}", path, where)
            for column in TIMING_COLUMNS
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


def holdout_splits(num_rows: int, seed: int, holdout_fraction: float, path: Path) -> list[str]:
    """The split of each row of a folder without a `split` column: a permutation drawn with `seed` puts
    `round(holdout_fraction * num_rows)` rows (at least one) in validation, as many in test, the rest in train."""
    held = max(1, round(holdout_fraction * num_rows))
    if not 0 < holdout_fraction < 0.5 or num_rows < 2 * held + 1:
        raise MosiDataError(path, f"no split column, {num_rows} rows and holdout_fraction {holdout_fraction}",
                            expected="a split column, or at least 3 rows and a holdout_fraction in (0, 0.5)")
    order = np.random.default_rng(seed).permutation(num_rows)
    splits = np.full(num_rows, "train", dtype=object)
    splits[order[:held]] = "validation"
    splits[order[held : 2 * held]] = "test"
    return list(splits)


def given_text(row: dict, file_name: str, path: Path, where: dict, transcribable: bool = False) -> str:
    """The row's transcript: a string of at least one word, or "" for a row without one that will be transcribed."""
    text = row.get("text")
    if text is None and transcribable:
        return ""
    if not isinstance(text, str):
        raise MosiDataError(path, f"{file_name}: text is a {type(text).__name__}", **where, expected="a string of words")
    if not text.split():
        if transcribable:
            return ""
        expected = "a transcript (or a transcriber: train.py transcribes empty texts with --dataset_options asr_model)"
        raise MosiDataError(path, f"{file_name}: empty text", **where, expected=expected)
    return text


def _label(value, file_name: str, path: Path, where: dict) -> float:
    if isinstance(value, bool):  # JSON true / false: float() would read them as 1 / 0
        raise MosiDataError(path, f"{file_name}: label {json.dumps(value)}", **where, expected="a number in [-3, 3]")
    try:
        label = float(value)
    except (TypeError, ValueError):
        raise MosiDataError(path, f"{file_name}: label {value!r} is not a number", **where) from None
    if not LABEL_RANGE[0] <= label <= LABEL_RANGE[1]:  # NaN fails too
        raise MosiDataError(path, f"{file_name}: label {label}", **where, expected="a number in [-3, 3]")
    return label


def _file_in_folder(folder: Path, file_name, path: Path, where: dict) -> tuple[str, Path]:
    """The row's `file_name` (as a relative POSIX path) and the file it resolves to, which must lie inside `folder`:
    no absolute path, and no `..` or link that leads out of it."""
    file_name = str(file_name or "")
    if not file_name:
        raise MosiDataError(path, "empty file_name", **where)
    resolved = (folder / file_name).resolve()
    if Path(file_name).is_absolute() or not resolved.is_relative_to(folder.resolve()):
        raise MosiDataError(path, f"file_name {file_name!r} resolves to {resolved}, outside the folder", **where,
                            expected="a path relative to the folder, inside it")
    return Path(file_name).as_posix(), resolved


def decode_audio(audio, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """
    A stored audio value (`{"bytes", "path"}`, what `datasets.Audio(decode=False)` gives) as a mono float32 waveform
    at `sampling_rate`: channels averaged, resampled as the feature extractor resamples (scipy's polyphase filter,
    `cmbert_hf.alignment_cmbert.resample`, which this package does not import), so the checks made here see the
    samples the extractor will. `datasets` itself decodes `Audio` columns only with torchcodec; this does it with
    soundfile.
    """
    from scipy.signal import resample_poly

    source = io.BytesIO(audio["bytes"]) if audio.get("bytes") is not None else audio["path"]
    waveform, rate = sf.read(source, dtype="float32", always_2d=True)
    waveform = waveform.mean(axis=1)
    if rate != sampling_rate:
        step = math.gcd(rate, sampling_rate)
        waveform = resample_poly(waveform.astype(np.float64), sampling_rate // step, rate // step)
    return waveform.astype(np.float32)


def _read_audio(audio_path: Path, path: Path, where: dict) -> tuple[bytes, np.ndarray]:
    """The file's bytes and its 16 kHz mono waveform, after checking that it decodes to finite samples."""
    if not audio_path.is_file():
        raise MosiDataError(path, f"audio file {audio_path} not found", **where)
    data = audio_path.read_bytes()
    if not data:
        raise MosiDataError(path, f"audio file {audio_path} is empty", **where)
    if _wav_truncated(data):
        raise MosiDataError(path, f"audio file {audio_path} is truncated (shorter than its WAV header says)", **where)
    try:
        waveform = decode_audio({"bytes": data})
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MosiDataError(path, f"audio file {audio_path} is not readable audio ({e})", **where) from None
    if waveform.size == 0:
        raise MosiDataError(path, f"audio file {audio_path} holds no samples (empty or truncated)", **where)
    if not np.isfinite(waveform).all():
        raise MosiDataError(path, f"audio file {audio_path} holds NaN or inf samples", **where)
    return data, waveform


def _check_speech(waveform, num_words, audio_path, path, where, silence_dbfs: float, min_seconds_per_word: float):
    """Refuses a clip the feature extraction would refuse: too short for its words, or silent (its loudest frame)."""
    import librosa

    duration = len(waveform) / SAMPLING_RATE
    if duration < min_seconds_per_word * num_words:
        raise MosiDataError(path, f"audio file {audio_path} lasts {duration:.3f} s for {num_words} words", **where,
                            expected=f"at least {min_seconds_per_word} s per word")
    rms = librosa.feature.rms(y=waveform, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH)[0]
    loudest = float(librosa.amplitude_to_db(rms, ref=1.0, amin=1e-5, top_db=None).max())
    if loudest < silence_dbfs:
        raise MosiDataError(path, f"audio file {audio_path} is silent (loudest frame {loudest:.1f} dBFS)", **where,
                            expected=f"speech louder than {silence_dbfs} dBFS")


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


__all__ = ["read_recordings", "read_metadata", "find_metadata", "decode_audio", "given_text", "holdout_splits", "METADATA_FILES"]
