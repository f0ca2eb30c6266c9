"""Bad source files fail with errors naming file, split, row and expectation; pickles load safely."""

import codecs
import os
import pickle
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy._core.multiarray import _reconstruct, scalar
from numpy._core.numeric import _frombuffer

from dataset_script import MissingSourceError, MosiDataError, UnsafePickleError, load_mosi
from dataset_script.safe_pickle import MAX_DEPTH, safe_load
from helpers import MOSI_TEXT

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1284, 229, 686)
PICKLE = "MOSI_cmu_audio_CLS.pickle"

needs_text = pytest.mark.skipif(not MOSI_TEXT.is_dir(), reason=f"MOSI transcripts not found at {MOSI_TEXT}")


@pytest.fixture
def release(tmp_path) -> Path:
    """A flat CM-BERT folder: copies of the shared TSVs (no video ids) and a valid audio pickle."""
    folder = tmp_path / "release"
    folder.mkdir()
    for stem in ("train", "dev", "test"):
        # copyfile, not copy: the shared files are read-only, and the tests rewrite their copies (as any user, not root)
        shutil.copyfile(MOSI_TEXT / f"{stem}.tsv", folder / f"{stem}.tsv")
    write_audio(folder, audio_arrays())
    return folder


def audio_arrays(sizes=SIZES, width=5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(n, 50, width)) for n in sizes]
    for a in arrays:
        a[:, 0] = 0.0
    return arrays


def write_audio(folder: Path, arrays) -> None:
    (folder / PICKLE).write_bytes(pickle.dumps(tuple(arrays) if isinstance(arrays, list) else arrays))


def edit_tsv(folder: Path, stem: str, row: int, line: str | bytes) -> None:
    line = line if isinstance(line, bytes) else line.encode()
    lines = (folder / f"{stem}.tsv").read_bytes().splitlines()
    lines[row + 1] = line
    (folder / f"{stem}.tsv").write_bytes(b"\n".join(lines))


def build(folder: Path, tmp_path: Path, config="cmbert", **kwargs):
    return load_mosi(config, data_dir=folder, cache_dir=tmp_path / "cache", **kwargs)


@needs_text
def test_flat_release_loads_without_video_ids(release, tmp_path):
    dataset = build(release, tmp_path)
    assert [dataset[s].num_rows for s in dataset] == list(SIZES)
    assert set(dataset["test"]["video_id"]) == {""}


@needs_text
@pytest.mark.parametrize(
    "arrays, message",
    [
        (audio_arrays((1283, 229, 686)), f"{PICKLE}, split 'train': 1283 rows of audio (expected 1284, as many as train.tsv)"),
        (audio_arrays(width=4), f"{PICKLE}, split 'train', row 0: audio of shape (50, 4) (expected (50, 5))"),
        ([a[:, :7] for a in audio_arrays()], f"{PICKLE}, split 'train', row 0: audio of shape (7, 5) (expected (50, 5))"),
        (audio_arrays()[:2], f"{PICKLE}: holds a tuple of 2 items (expected a tuple of 3 arrays (train, dev, test))"),
        ({"train": 1}, f"{PICKLE}: holds a dict (expected a tuple of 3 arrays"),
        ((audio_arrays()[0], 1, 2), f"{PICKLE}, split 'validation': a int of 0 dimensions (expected an (N, 50, 5) array)"),
    ],
    ids=["row-count", "width", "steps", "two-splits", "not-a-tuple", "not-arrays"],
)
def test_bad_audio_pickle(release, tmp_path, arrays, message):
    write_audio(release, arrays)
    with pytest.raises(MosiDataError) as error:
        build(release, tmp_path)
    assert message in str(error.value)


@needs_text
def test_audio_values_are_checked(release, tmp_path):
    arrays = audio_arrays()
    arrays[2][5, 0, 1] = 0.5  # audio on the [CLS] row: not this format, or misaligned
    write_audio(release, arrays)
    with pytest.raises(MosiDataError, match=r"split 'test', row 5: row 0 of the audio is not zero"):
        build(release, tmp_path)
    arrays = audio_arrays()
    arrays[0][9, 4, 4] = np.inf
    write_audio(release, arrays)
    with pytest.raises(MosiDataError, match=r"split 'train', row 9: audio holds NaN or \+inf \(expected finite values\)"):
        build(release, tmp_path)
    arrays[0][9, 4, 4] = -1e300  # finite in float64, -inf in float32: not to be zeroed like MMSA's -inf
    write_audio(release, arrays)
    with pytest.raises(MosiDataError, match=r"split 'train', row 9: audio holds values beyond float32"):
        build(release, tmp_path)


@needs_text
def test_truncated_pickle(release, tmp_path):
    data = (release / PICKLE).read_bytes()
    (release / PICKLE).write_bytes(data[: len(data) // 2])
    with pytest.raises(MosiDataError, match=rf"{PICKLE}: truncated or corrupt pickle"):
        build(release, tmp_path)


@needs_text
@pytest.mark.parametrize(
    "stem, row, line, message",
    [
        ("dev", 5, "SO GOOD\t3.5", "dev.tsv, split 'validation', row 5: label 3.5 (expected a number in [-3, 3])"),
        ("test", 7, "SO GOOD\tnan", "test.tsv, split 'test', row 7: label nan"),
        ("train", 3, "SO GOOD\tgreat", "train.tsv, split 'train', row 3: label 'great' is not a number"),
        ("train", 2, "SO\tGOOD\t1.0", "train.tsv, split 'train', row 2: 3 fields on line 4 (expected 2)"),
        ("dev", -1, "sentence\tscore", "dev.tsv, split 'validation': bad header"),
        ("train", 4, "\t1.0", "train.tsv, split 'train', row 4: empty text '' (expected a transcript of at least one word)"),
        ("test", 0, " \t -1.0", "test.tsv, split 'test', row 0: empty text ' '"),
    ],
    ids=["label-range", "label-nan", "label-text", "fields", "header", "empty-text", "blank-text"],
)
def test_bad_tsv(release, tmp_path, stem, row, line, message):
    edit_tsv(release, stem, row, line)
    with pytest.raises(MosiDataError) as error:
        build(release, tmp_path, config="text")
    assert message in str(error.value)


@needs_text
def test_text_that_is_not_utf8(release, tmp_path):
    edit_tsv(release, "dev", 5, "CAF\xc9 GOOD\t1.0".encode("latin-1"))
    offset = (release / "dev.tsv").read_bytes().index(b"\xc9")
    with pytest.raises(MosiDataError) as error:
        build(release, tmp_path, config="text")
    assert str(error.value) == (
        f"{release / 'dev.tsv'}, split 'validation', row 5: line 7 is not UTF-8 (invalid continuation byte at byte {offset})"
        " (expected UTF-8 text)"
    )
    shutil.copyfile(MOSI_TEXT / "dev.tsv", release / "dev.tsv")
    for stem in ("train", "dev", "test"):
        shutil.copyfile(MOSI_TEXT / f"{stem}.video_ids.txt", release / f"{stem}.video_ids.txt")
    ids = (release / "test.video_ids.txt").read_bytes().splitlines()
    ids[2] += b"\xff"
    (release / "test.video_ids.txt").write_bytes(b"\r\n".join(ids))
    with pytest.raises(MosiDataError, match=r"test.video_ids.txt, split 'test', row 2: line 3 is not UTF-8 \(invalid start byte"):
        build(release, tmp_path, config="text")


@needs_text
def test_missing_and_short_files(release, tmp_path):
    for stem in ("train", "test"):
        shutil.copyfile(MOSI_TEXT / f"{stem}.video_ids.txt", release / f"{stem}.video_ids.txt")
    (release / "dev.video_ids.txt").write_text("a\nb\n")
    with pytest.raises(MosiDataError, match=r"dev.video_ids.txt, split 'validation': 2 video ids \(expected 229"):
        build(release, tmp_path)
    (release / "dev.video_ids.txt").unlink()
    with pytest.raises(MissingSourceError, match=r"video-id files \['.*release/dev.video_ids.txt'\] not found"):
        build(release, tmp_path)
    for stem in ("train", "test"):  # video ids are optional, all three or none: the next failure is the pickle's
        (release / f"{stem}.video_ids.txt").unlink()
    (release / PICKLE).unlink()
    with pytest.raises(MissingSourceError, match=rf"^{PICKLE} not found \(looked at .*release/{PICKLE}"):
        build(release, tmp_path)
    (release / "test.tsv").unlink()
    with pytest.raises(MissingSourceError, match=r"^test.tsv not found \(looked at .*release/test.tsv"):
        build(release, tmp_path)


def test_mmsa_rows_of_different_widths(tmp_path):
    audio = np.empty(3, dtype=object)  # per-row arrays, as a ragged pickle would hold them
    audio[:] = [np.zeros((50, 5)), np.zeros((50, 5)), np.zeros((50, 6))]
    part = {"id": np.array(["v$_$0", "v$_$1", "v$_$2"]), "raw_text": np.array(["A", "B", "C"]), "audio": audio}
    part.update(vision=np.zeros((3, 50, 20)), regression_labels=np.zeros(3, dtype=np.float32))
    (tmp_path / "aligned_50.pkl").write_bytes(pickle.dumps({"train": part, "valid": part, "test": part}))
    with pytest.raises(MosiDataError, match=r"aligned_50.pkl, split 'train', row 2: audio of shape \(50, 6\) \(expected \(50, 5\)\)"):
        build(tmp_path, tmp_path, config="mmsa_aligned")
    part["regression_labels"] = np.zeros(2, dtype=np.float32)
    with pytest.raises(MosiDataError, match=r"split 'train': 2 rows of 'regression_labels' \(expected 3, as many as 'id'\)"):
        (tmp_path / "aligned_50.pkl").write_bytes(pickle.dumps({"train": part, "valid": part, "test": part}))
        build(tmp_path, tmp_path, config="mmsa_aligned")


def _mmsa_part():
    return {
        "id": np.array(["v$_$0", "v$_$1"]), "raw_text": np.array(["A", "B"]),
        "audio": np.ones((2, 50, 5)), "vision": np.ones((2, 50, 20)),
        "regression_labels": np.array([0.5, -1.0], dtype=np.float32),
    }  # fmt: skip


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p.pop("vision"), "split 'train': missing arrays ['vision'] (expected keys"),
        (lambda p: p.update(regression_labels=np.array(["x", "y"])), "split 'train': regression_labels are not numbers"),
        (lambda p: p.update(audio=7), "split 'train': 0 rows of 'audio' (expected 2, as many as 'id')"),
        (lambda p: p.update(raw_text=np.array(["A", " \t"], dtype=object)), "split 'train', row 1: empty text ' \\t' (expected a transcript"),
        (lambda p: p.update(raw_text=np.array([b"A", b"CAF\xc9"])), "split 'train', row 1: 'raw_text' b'CAF\\xc9' is not UTF-8 (unexpected end of data at byte 3) (expected UTF-8 text)"),
        (lambda p: p.update(id=np.array([b"v$_$0", 1], dtype=object)), "split 'train', row 1: 'id' is a int (expected a string)"),
        (lambda p: p.update(id=np.array([["v$_$0", "v$_$1"]])), "split 'train': 'id' of 2 dimensions (expected one string per row)"),
    ],
    ids=["no-vision", "text-labels", "scalar", "empty-text", "text-not-utf8", "id-not-string", "id-2d"],
)
def test_bad_mmsa_pickle(tmp_path, edit, message):
    part = _mmsa_part()
    edit(part)
    (tmp_path / "aligned_50.pkl").write_bytes(pickle.dumps({"train": part, "valid": _mmsa_part(), "test": _mmsa_part()}))
    with pytest.raises(MosiDataError) as error:
        build(tmp_path, tmp_path, config="mmsa_aligned")
    assert f"aligned_50.pkl, {message}" in str(error.value)


def test_mmsa_split_that_is_not_a_dict(tmp_path):
    (tmp_path / "aligned_50.pkl").write_bytes(pickle.dumps({"train": [1], "valid": _mmsa_part(), "test": _mmsa_part()}))
    with pytest.raises(MosiDataError, match=r"aligned_50.pkl, split 'train': split 'train' is a list \(expected a dict"):
        build(tmp_path, tmp_path, config="mmsa_aligned")


@pytest.mark.parametrize("kind", ["S", "object-bytes", "object-str"])
def test_mmsa_strings_of_bytes_are_decoded(tmp_path, kind):
    ids, texts = ["v1$_$0", "v2$_$7"], ["CAFÉ GOOD", "NOT BAD"]
    parts = {}
    for split in ("train", "valid", "test"):
        part = _mmsa_part()
        if kind == "object-str":
            part.update(id=np.array(ids, dtype=object), raw_text=np.array(texts, dtype=object))
        else:
            encoded = {name: [v.encode() for v in values] for name, values in (("id", ids), ("raw_text", texts))}
            part.update({name: np.array(values, dtype="S" if kind == "S" else object) for name, values in encoded.items()})
        parts[split] = part
    (tmp_path / "aligned_50.pkl").write_bytes(pickle.dumps(parts))
    dataset = build(tmp_path, tmp_path, config="mmsa_aligned")
    for split in ("train", "validation", "test"):
        assert dataset[split]["id"] == ids and dataset[split]["text"] == texts
        assert dataset[split]["video_id"] == ["v1", "v2"]


@pytest.mark.parametrize("protocol, spelling", [(0, "numpy.core"), (2, "numpy.core"), (2, "numpy._core"), (4, None), (5, None)])
def test_pickles_of_numpy_1_and_2(tmp_path, protocol, spelling):
    arrays = {
        "audio": np.random.default_rng(0).normal(size=(3, 50, 5)),
        "text": np.array(["a b", "c"]),
        "ragged": np.array([np.zeros((1, 2)), np.ones((2, 2), dtype=np.float32)], dtype=object),
        "scalar": np.float32(1.5),
        "raw_text": np.array(["A B", "CAFÉ"], dtype=object),  # MMSA's id / raw_text: str objects, or bytes
        "id": np.array([b"v$_$0", b"v$_$1"]),
        "lengths": np.array([3, 50], dtype=np.int64),
        "flags": np.array([True, False]),
        "empty": np.zeros((0, 50, 5)),
    }
    data = pickle.dumps(arrays, protocol=protocol)
    if spelling:  # numpy 1.x wrote `numpy.core.multiarray`, 2.x `numpy._core.multiarray`; protocols <= 2 name globals in text lines
        for old in (b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"):
            data = data.replace(old, spelling.encode() + b".multiarray\n")
        assert spelling.encode() + b".multiarray\n" in data
    (tmp_path / "a.pkl").write_bytes(data)
    loaded = safe_load(tmp_path / "a.pkl")
    for key, value in arrays.items():
        if key == "ragged":
            assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(loaded[key], value))
        else:
            assert np.array_equal(loaded[key], value) and loaded[key].dtype == value.dtype


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_safe_load_refuses_code_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps((np.zeros((2, 50, 5)), _RunsShell(marker))))
    with pytest.raises(pickle.UnpicklingError, match=r"evil\.pkl: refused to load global '(posix|os)\.system'"):
        safe_load(path)
    assert not marker.exists()


class Reduce:
    """Pickles as `function(*args)`, then `__setstate__(state)` if a state is given: any call a pickle can make."""

    def __init__(self, function, args, state=None):
        self.reduce = (function, args) if state is None else (function, args, state)

    def __reduce__(self):
        return self.reduce


def forged_dtype(spec: str, state: tuple, copy=True) -> Reduce:
    return Reduce(np.dtype, (spec, False, copy), state)


def forged_array(dtype, shape: tuple, data) -> Reduce:
    """What numpy's own `ndarray.__reduce__` writes, with any dtype, shape and data."""
    return Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, data))


def nested_shared(width: int, depth: int) -> list:
    """`depth` levels of lists of `width` references to one list below: width ** depth floats once expanded."""
    nested = [0.0] * width
    for _ in range(depth - 1):
        nested = [nested] * width
    return nested


def tuple_bomb() -> tuple:
    """Like `nested_shared`, of tuples (built in a pickle only: hashing it here would never finish)."""
    nested = (0.0,) * 52
    for _ in range(6):
        nested = (nested,) * 52
    return nested


def opcodes(value) -> bytes:
    """The protocol 2 opcodes that push `value`, to splice into a hand-made pickle."""
    return pickle.dumps(value, protocol=2)[2:-1]  # without PROTO and STOP


def item_into_array(value) -> bytes:
    """A pickle that sets items [0, 1] of a float array to `value` (SETITEM, as if the array were a dict)."""
    return opcodes(np.zeros(2)) + opcodes([0, 1]) + opcodes(value) + pickle.SETITEM + pickle.STOP


OBJECT_FLAGS_OFF = forged_dtype("O8", (3, "|", None, None, None, -1, -1, 0))  # numpy's own state ends in 63
FORGED = {
    # numpy would take the 16 file bytes as two object pointers and crash on the first access.
    "object-flags-off": (forged_array(OBJECT_FLAGS_OFF, (2,), b"A" * 16), "dtype state (3, '|', None, None, None, -1, -1, 0) for '|O'"),
    "scalar-object-flags-off": (Reduce(scalar, (OBJECT_FLAGS_OFF, b"A" * 8)), "dtype state (3, '|', None, None, None, -1, -1, 0) for '|O'"),
    "float-flagged-object": (
        forged_array(forged_dtype("f8", (3, "<", None, None, None, -1, -1, 63)), (2,), b"A" * 16),
        "dtype state (3, '<', None, None, None, -1, -1, 63) for '<f8'",
    ),
    "unicode-wider": (
        forged_array(forged_dtype("U2", (3, "<", None, None, None, 4000, 4, 8)), (2,), b"A" * 16),
        "dtype state (3, '<', None, None, None, 4000, 4, 8) for '<U2'",
    ),
    "structured": (
        forged_array(forged_dtype("V16", (3, "|", None, ("a", "b"), {"a": (np.dtype("O"), 0), "b": (np.dtype("O"), 8)}, 16, 8, 0)), (1,), b"A" * 16),
        "dtype 'V16'; only bool, integer, float, string and object dtypes are allowed",
    ),
    "subarray": (forged_array(forged_dtype("(2,)O", (3, "|", None, None, None, 16, 8, 0)), (1,), b"A" * 16), "dtype '(2,)O'"),
    "datetime": (forged_array(forged_dtype("M8", np.dtype("M8[ns]").__reduce__()[2]), (2,), b"A" * 16), "dtype 'M8'"),
    "shared-dtype": (forged_array(forged_dtype("f8", np.dtype("f8").__reduce__()[2], copy=False), (2,), b"A" * 16), "dtype arguments (align=False, copy=False)"),
    "object-raw-bytes": (forged_array(np.dtype("O"), (2,), b"A" * 16), "object array data of bytes; numpy writes a list of its 2 elements"),
    "object-frombuffer": (Reduce(_frombuffer, (b"A" * 16, np.dtype("O"), (2,), "C")), "buffer array of |O, shape (2,), order 'C' from a bytes"),
    # numpy would expand the shared lists (10^12 floats) to assign them.
    "item-into-array": (item_into_array(nested_shared(52, 7)), "to add items to a ndarray"),
    # Hashing a tuple hashes its items: shared nested tuples as a dict key or set item never finish.
    "tuple-key": (b"\x80\x02}" + opcodes(tuple_bomb()) + b"K\x01" + pickle.SETITEM + pickle.STOP, "a dict key of type tuple"),
    "set": (b"\x80\x04" + pickle.EMPTY_SET + pickle.MARK + opcodes(tuple_bomb()) + pickle.ADDITEMS + pickle.STOP, "a set; feature pickles hold none"),
}
# Loads each file and prints its repr (which reads every element) or the error, one line per file.
LOAD_ALL = """
import sys
from dataset_script.safe_pickle import safe_load
for path in sys.argv[1:]:
    try:
        print("loaded", repr(safe_load(path)), flush=True)
    except Exception as e:
        print(type(e).__name__, e, flush=True)
"""
BUILD_CMBERT = "import sys; from dataset_script import load_mosi; load_mosi('cmbert', data_dir=sys.argv[1], cache_dir=sys.argv[2])"


def run_python(code: str, *args, memory: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`code` in a child Python (a crash or runaway allocation ends the child, not pytest), under an address-space limit."""
    limit = memory and (lambda: resource.setrlimit(resource.RLIMIT_AS, (memory, memory)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout, preexec_fn=limit)  # fmt: skip


def test_forged_pickles_are_refused_before_numpy_sees_them(tmp_path):
    paths = []
    for name, (forged, _) in FORGED.items():
        paths.append(tmp_path / f"{name}.pkl")
        if not isinstance(forged, bytes):
            forged = pickle.dumps({"audio": np.zeros((2, 50, 5)), "forged": forged}, protocol=2)
        paths[-1].write_bytes(forged)
    child = run_python(LOAD_ALL, *paths, memory=3 << 30, timeout=60)
    assert child.returncode == 0, f"the child died ({child.returncode}): {child.stderr[-2000:]}"
    lines = child.stdout.splitlines()
    assert len(lines) == len(FORGED)
    for line, path, (_, message) in zip(lines, paths, FORGED.values()):
        assert line.startswith(f"UnsafePickleError {path}: refused {message}"), line


@needs_text
@pytest.mark.parametrize(
    "width, depth, message",
    [(52, 7, "a pickle of more items than its"), (10, 12, f"containers nested deeper than {MAX_DEPTH}")],
    ids=["wide", "deep"],
)
def test_pickle_bomb_is_refused_quickly(release, tmp_path, width, depth, message):
    bomb = nested_shared(width, depth)
    write_audio(release, (bomb, bomb, bomb))
    assert (release / PICKLE).stat().st_size < 1500
    child = run_python(BUILD_CMBERT, release, tmp_path / "cache", memory=3 << 30, timeout=60)
    assert child.returncode == 1, child.stderr[-2000:]
    assert child.stderr.splitlines()[-1].startswith(f"dataset_script.safe_pickle.UnsafePickleError: {release / PICKLE}: refused {message}")
    assert not list((tmp_path / "cache").rglob("dataset_info.json"))


SHARED = bytes(80_000)


@pytest.mark.parametrize(
    "data, message",
    [
        (Reduce(codecs.encode, (b"x", "os.path")), "_codecs.encode(bytes, 'os.path'); numpy only writes the 'latin1' encoding of a str"),
        (Reduce(codecs.encode, ("x", "utf-16")), "_codecs.encode(str, 'utf-16')"),
        (Reduce(bytes, (10**12,)), "bytes(1000000000000,); only bytes() is allowed"),
        (Reduce(np.ndarray, ((10**5, 10**5),)), "to call numpy.ndarray"),
        (Reduce(_reconstruct, (np.ndarray, (10**5, 10**5), b"b")), "array reconstruction ("),
        (forged_array(np.dtype("S0"), (10**12,), b""), "an array of shape (1000000000000,): more elements than the"),
        ([forged_array(np.dtype("f8"), (10_000,), SHARED) for _ in range(100)], "an array of shape (10000,): its arrays declare more bytes than the"),
        ({"a": [np.dtype("f8")]}, "a loaded Float64DType; only numpy arrays and plain containers are allowed"),
    ],
    ids=["codecs-module", "codecs-utf16", "bytes-alloc", "ndarray-call", "reconstruct-shape", "zero-size-items", "shared-bytes", "bare-dtype"],
)
def test_numpy_calls_are_checked(tmp_path, data, message):
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(UnsafePickleError) as error:
        safe_load(path)
    assert str(error.value).startswith(f"{path}: refused {message}")


def test_nesting_is_bounded(tmp_path):
    nested = 1.0
    for _ in range(MAX_DEPTH):
        nested = [nested]
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(nested))
    assert safe_load(tmp_path / "a.pkl") == nested
    (tmp_path / "a.pkl").write_bytes(pickle.dumps([nested]))
    with pytest.raises(UnsafePickleError, match=rf"a.pkl: refused containers nested deeper than {MAX_DEPTH}"):
        safe_load(tmp_path / "a.pkl")
