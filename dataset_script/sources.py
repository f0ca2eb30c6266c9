"""Readers for the CMU-MOSI / MOSEI source formats, each validated before anything is written.

Formats (../shared/spec/cm-bert.md, "Data"): the CM-BERT release (`{train,dev,test}.tsv` with a
`text<TAB>label` header, plus `MOSI_cmu_audio_CLS.pickle`, a tuple of three `(N, 50, 5)` arrays
with a zero `[CLS]` row) and MMSA's `aligned_50.pkl` (a dict of splits, each a dict of arrays; its
`unaligned_50.pkl` holds frame-level features, which CM-BERT cannot take). Every reader raises
`MosiDataError` naming the file, split, row and what was expected, so a bad file fails before
`datasets` starts writing Arrow shards.
"""

import codecs
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_script.errors import MissingSourceError, MosiDataError
from dataset_script.facts import LABEL_RANGE
from dataset_script.safe_pickle import UnsafePickleError, safe_load

SPLITS = ("train", "validation", "test")
TSV_SPLITS = {"train": "train", "validation": "dev", "test": "test"}
MMSA_SPLITS = {"train": "train", "validation": "valid", "test": "test"}
# Token-level features (the CM-BERT pickle, MMSA's aligned_50) have one row per word-piece position of 50.
TOKEN_STEPS = 50


@dataclass
class SplitRows:
    """One split, column-wise, in source row order; `audio` / `vision` hold one 2-D array per row."""

    ids: list[str]
    video_ids: list[str]
    texts: list[str]
    labels: np.ndarray  # [N] float32
    audio: list[np.ndarray] | None = None  # N x [T, D_a] float32
    vision: list[np.ndarray] | None = None  # N x [T, D_v] float32

    def __len__(self) -> int:
        return len(self.texts)


# Source files up to this size enter the fingerprint by content too (an edit within the clock's resolution that keeps
# the size would otherwise go unseen); larger ones (audio, pickles) by size and modification time.
CONTENT_FINGERPRINT_BYTES = 1 << 20


def source_fingerprint(data_dir) -> str | None:
    """
    A digest of every file under `data_dir` (links followed): its relative path, size, modification time and, up to
    `CONTENT_FINGERPRINT_BYTES`, content. `None` without a folder. The builders key their cache by it, so any
    edit in place, removal or addition builds the data set (and validates it) again.
    """
    if data_dir is None or not Path(data_dir).is_dir():
        return None
    root, digest, seen = Path(data_dir), hashlib.sha256(), set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree
            subfolders.clear()
            continue
        seen.add(real)
        subfolders.sort()
        for name in sorted(files):
            path = Path(folder, name)
            try:
                stat = path.stat()
            except OSError:  # a dangling link: the builder says so if it needs the file
                stat = None
            digest.update(f"{path.relative_to(root).as_posix()}\0{stat and (stat.st_size, stat.st_mtime_ns)}\0".encode())
            if stat and stat.st_size <= CONTENT_FINGERPRINT_BYTES:
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def find_source(data_dir, name: str, subdirs: tuple[str, ...], instructions: str) -> Path:
    """`data_dir/<subdir>/name` for the first subdir holding it ("" = data_dir itself)."""
    candidates = [Path(data_dir, sub, name) for sub in subdirs]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise MissingSourceError(f"{name} not found (looked at {looked}).\n{instructions}")


def read_lines(path, split: str, header: bool) -> list[str]:
    """The lines of a UTF-8 text file without trailing blank ones (a BOM, CRLF and no final newline are fine);
    `header` says whether line 1 is a header, i.e. whether rows start at line 2."""
    data = Path(path).read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        line = len((data[: e.start].decode("utf-8") + "x").splitlines())  # 1-based, split as the text would be
        row = line - 1 - header
        raise MosiDataError(path, f"line {line} is not UTF-8 ({e.reason} at byte {e.start})", split=split,
                            row=row if row >= 0 else None, expected="UTF-8 text") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_tsv(path, split: str) -> tuple[list[str], np.ndarray]:
    """Transcripts and labels of a CM-BERT TSV (header `text<TAB>label`)."""
    lines = read_lines(path, split, header=True)
    if not lines or lines[0].split("\t") != ["text", "label"]:
        raise MosiDataError(path, f"bad header {lines[:1]}", split=split, expected="'text<TAB>label'")
    texts, labels = [], []
    for row, line in enumerate(lines[1:]):
        fields = line.split("\t")
        if len(fields) != 2:
            raise MosiDataError(path, f"{len(fields)} fields on line {row + 2}", split=split, row=row, expected="2")
        try:
            labels.append(float(fields[1]))
        except ValueError:
            raise MosiDataError(path, f"label {fields[1]!r} is not a number", split=split, row=row) from None
        texts.append(fields[0])
    check_texts(texts, path, split)
    labels = np.asarray(labels, dtype=np.float32)
    check_labels(labels, path, split)
    return texts, labels


def read_video_ids(path, split: str, num_rows: int) -> list[str]:
    """One video id per line, as many lines as the split has rows."""
    ids = read_lines(path, split, header=False)
    if len(ids) != num_rows:
        raise MosiDataError(path, f"{len(ids)} video ids", split=split, expected=f"{num_rows}, one per transcript")
    return [i.strip() for i in ids]


def check_texts(texts: list[str], file, split: str) -> None:
    for row, text in enumerate(texts):
        if not text.strip():  # the tokenizer would give CM-BERT no word to align audio with
            raise MosiDataError(file, f"empty text {text!r}", split=split, row=row, expected="a transcript of at least one word")


def check_labels(labels: np.ndarray, file, split: str) -> None:
    bad = np.flatnonzero(~((labels >= LABEL_RANGE[0]) & (labels <= LABEL_RANGE[1])))  # NaN fails both
    if bad.size:
        row = int(bad[0])
        raise MosiDataError(file, f"label {labels[row]}", split=split, row=row, expected="a number in [-3, 3]")


def check_features(samples, file, split: str, name: str, width: int, steps: int | None = None) -> list[np.ndarray]:
    """Per-row `[T, width]` float32 arrays (`T == steps` when given); `-inf` becomes 0 (as MMSA does),
    NaN, +inf and values beyond float32 are errors."""
    shape = f"({steps or 'T'}, {width})"
    out = []
    for row, sample in enumerate(samples):
        try:
            sample = np.array(sample, dtype=np.float64)  # a copy: the -inf fix must not touch the source
        except (ValueError, TypeError) as e:
            raise MosiDataError(file, f"{name} is not a numeric matrix ({e})", split=split, row=row, expected=f"{shape} floats") from None
        if sample.ndim != 2 or sample.shape[1] != width or steps not in (None, sample.shape[0]):
            raise MosiDataError(file, f"{name} of shape {sample.shape}", split=split, row=row, expected=shape)
        sample[np.isneginf(sample)] = 0.0
        # Checked before and after the cast: a finite float64 beyond float32's range would become +-inf.
        if not np.isfinite(sample).all():
            raise MosiDataError(file, f"{name} holds NaN or +inf", split=split, row=row, expected="finite values")
        with np.errstate(over="ignore"):
            sample = sample.astype(np.float32)
        if not np.isfinite(sample).all():
            raise MosiDataError(file, f"{name} holds values beyond float32", split=split, row=row, expected="|x| < 3.4e38")
        out.append(sample)
    return out


def _unpickle(path):
    """Safe unpickling with truncated / corrupt files reported as `MosiDataError`."""
    try:
        return safe_load(path)
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise MosiDataError(path, f"truncated or corrupt pickle ({type(e).__name__}: {e})") from e


def read_cmbert_audio(path, num_rows: dict[str, int], width: int) -> dict[str, list[np.ndarray]]:
    """The CM-BERT audio pickle: a tuple of three `(N, 50, width)` arrays, split order train/dev/test."""
    data = _unpickle(path)
    if not isinstance(data, (tuple, list)) or len(data) != 3:
        items = f" of {len(data)} items" if isinstance(data, (tuple, list)) else ""
        raise MosiDataError(path, f"holds a {type(data).__name__}{items}", expected="a tuple of 3 arrays (train, dev, test)")
    audio = {}
    for split, array in zip(SPLITS, data):
        if np.ndim(array) != 3:
            raise MosiDataError(path, f"a {type(array).__name__} of {np.ndim(array)} dimensions", split=split,
                                expected=f"an (N, {TOKEN_STEPS}, {width}) array")
        if len(array) != num_rows[split]:
            raise MosiDataError(path, f"{len(array)} rows of audio", split=split, expected=f"{num_rows[split]}, as many as {TSV_SPLITS[split]}.tsv")
        audio[split] = check_features(array, path, split, "audio", width, TOKEN_STEPS)
        for row, sample in enumerate(audio[split]):
            if sample[0].any():  # the [CLS] position carries no audio in this format
                raise MosiDataError(path, "row 0 of the audio is not zero", split=split, row=row, expected="a zero [CLS] row")
    return audio


def read_mmsa(path, audio_dim: int, vision_dim: int | None) -> dict[str, SplitRows]:
    """MMSA's `aligned_50.pkl`: token-level audio (and vision) of `TOKEN_STEPS` rows per utterance."""
    data = _unpickle(path)
    if not isinstance(data, dict) or not set(MMSA_SPLITS.values()) <= set(data):
        raise MosiDataError(path, f"holds a {type(data).__name__}", expected="a dict with keys train, valid, test")
    out = {}
    for split, key in MMSA_SPLITS.items():
        part = data[key]
        if not isinstance(part, dict):
            raise MosiDataError(path, f"split '{key}' is a {type(part).__name__}", split=split, expected="a dict of arrays")
        modalities = ["audio"] + (["vision"] if vision_dim else [])
        required = ["id", "raw_text", "regression_labels", *modalities]
        missing = [k for k in required if k not in part]
        if missing:
            raise MosiDataError(path, f"missing arrays {missing}", split=split, expected=f"keys {required}")
        ids = _strings(part["id"], path, split, "id")
        for name in required[1:]:
            count = len(part[name]) if np.ndim(part[name]) else 0  # a scalar holds no rows
            if count != len(ids):
                raise MosiDataError(path, f"{count} rows of '{name}'", split=split, expected=f"{len(ids)}, as many as 'id'")
        try:
            labels = np.asarray(part["regression_labels"], dtype=np.float32).reshape(len(ids), -1)
        except (ValueError, TypeError) as e:
            raise MosiDataError(path, f"regression_labels are not numbers ({e})", split=split) from None
        if labels.shape[1] != 1:
            raise MosiDataError(path, f"regression_labels of shape {labels.shape}", split=split, expected="one label per row")
        labels = labels[:, 0]
        texts = _strings(part["raw_text"], path, split, "raw_text")
        check_texts(texts, path, split)
        check_labels(labels, path, split)
        widths = {"audio": audio_dim, "vision": vision_dim}
        features = {
            m: check_features(part[m], path, split, m, widths[m], TOKEN_STEPS) for m in modalities
        }
        out[split] = SplitRows(
            ids=ids,
            video_ids=[i.split("$_$")[0] for i in ids],
            texts=texts,
            labels=labels,
            audio=features["audio"],
            vision=features.get("vision"),
        )
    return out


def _strings(values, path, split: str, name: str) -> list[str]:
    """`id` / `raw_text` as str: numpy `U` / `S` arrays or object arrays of str / bytes; bytes must be UTF-8."""
    if np.ndim(values) != 1:
        raise MosiDataError(path, f"'{name}' of {np.ndim(values)} dimensions", split=split, expected="one string per row")
    out = []
    for row, value in enumerate(values):
        if isinstance(value, bytes):  # numpy `S` items are `np.bytes_`, a bytes subclass
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as e:
                raise MosiDataError(path, f"'{name}' {bytes(value)!r} is not UTF-8 ({e.reason} at byte {e.start})", split=split,
                                    row=row, expected="UTF-8 text") from None
        if not isinstance(value, str):
            raise MosiDataError(path, f"'{name}' is a {type(value).__name__}", split=split, row=row, expected="a string")
        out.append(str(value))  # np.str_ -> str
    return out


__all__ = ["MosiDataError", "MissingSourceError", "SplitRows", "SPLITS", "read_tsv", "read_video_ids", "read_cmbert_audio", "read_mmsa"]
