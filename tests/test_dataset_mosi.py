"""The MOSI builder on the real transcripts (../shared) and on fixture pickles in each source format."""

import csv
import importlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets.exceptions import ManualDownloadError

from dataset_script import Mosi, MosiDataError, UnsafePickleError, UnknownConfigError, audio_facts, load_mosi
from dataset_script.mosi import MosiRecordings
from dataset_script.sources import MissingSourceError
from helpers import MOSI_TEXT

STEMS = {"train": "train", "validation": "dev", "test": "test"}
SIZES = {"train": 1284, "validation": 229, "test": 686}

pytestmark = pytest.mark.skipif(not MOSI_TEXT.is_dir(), reason=f"MOSI transcripts not found at {MOSI_TEXT}")


def read_reference(split: str):
    """Independent read of a TSV and its video ids: (texts, float32 labels, video ids)."""
    with open(MOSI_TEXT / f"{STEMS[split]}.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    video_ids = (MOSI_TEXT / f"{STEMS[split]}.video_ids.txt").read_text().split()
    return [r[0] for r in rows], np.array([float(r[1]) for r in rows], dtype=np.float32), video_ids


def write_cmbert_release(root: Path, rng, nan_at=None, protocol=4) -> list[np.ndarray]:
    """The CM-BERT release layout: data/text -> the shared TSVs, data/audio/<pickle> of float64 (N, 50, 5)."""
    (root / "data" / "audio").mkdir(parents=True, exist_ok=True)
    if not (root / "data" / "text").exists():
        (root / "data" / "text").symlink_to(MOSI_TEXT)
    arrays = []
    for split in SIZES:
        audio = rng.normal(size=(SIZES[split], 50, 5))
        audio[:, 0] = 0.0  # the [CLS] row
        arrays.append(audio)
    if nan_at is not None:
        arrays[1][nan_at, 3, 2] = np.nan
    (root / "data" / "audio" / "MOSI_cmu_audio_CLS.pickle").write_bytes(pickle.dumps(tuple(arrays), protocol=protocol))
    return arrays


def write_mmsa(path: Path, aligned: bool, rng, audio_dim=5, vision_dim=20, sizes=(40, 20, 30)) -> dict:
    """An MMSA pickle over a prefix of the real rows, with -inf audio values and MMSA's extra keys."""
    data = {}
    for (split, stem), n in zip(STEMS.items(), sizes):
        texts, labels, video_ids = read_reference(split)
        frames = 50 if aligned else 120
        part = {
            "id": np.array([f"{v}$_${i}" for i, v in enumerate(video_ids[:n])]),
            "raw_text": np.array(texts[:n]),
            "text_bert": np.zeros((n, 3, 50), dtype=np.int64),
            "audio": rng.normal(size=(n, frames, audio_dim)),
            "vision": rng.normal(size=(n, frames, vision_dim)),
            "regression_labels": labels[:n],
            "classification_labels": np.sign(labels[:n]),
        }
        part["audio"][::3, 1, 2] = -np.inf
        if not aligned:
            part["audio_lengths"] = rng.integers(1, frames, size=n)
            part["vision_lengths"] = rng.integers(1, frames, size=n)
        data[{"validation": "valid"}.get(split, split)] = part
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=4))
    return data


def test_text_config_matches_the_tsvs(tmp_path):
    dataset = load_mosi("text", data_dir=MOSI_TEXT, cache_dir=tmp_path)
    assert list(dataset) == ["train", "validation", "test"]
    for split, size in SIZES.items():
        texts, labels, video_ids = read_reference(split)
        part = dataset[split]
        assert part.num_rows == size == len(texts)
        assert part["text"] == texts
        np.testing.assert_array_equal(np.array(part["label"], dtype=np.float32), labels)
        assert part["video_id"] == video_ids
        assert part["label7"] == [int(np.round(y)) + 3 for y in labels]
        assert part["id"][:2] == [f"{split}-0", f"{split}-1"]
        assert "audio_features" not in part.column_names and "audio" not in part.column_names
    assert audio_facts(dataset) == {"level": "none", "source": "none", "width": None, "feature_names": None,
                                    "column": None, "sampling_rate": None}


def test_video_ids_option(tmp_path):
    ids_dir = tmp_path / "ids"
    ids_dir.mkdir()
    for stem in STEMS.values():
        n = len((MOSI_TEXT / f"{stem}.video_ids.txt").read_text().split())
        (ids_dir / f"{stem}.video_ids.txt").write_text("\n".join(f"v{i}" for i in range(n)))
    dataset = load_mosi("text", data_dir=MOSI_TEXT, cache_dir=tmp_path / "c", video_ids_dir=str(ids_dir))
    assert dataset["test"]["video_id"][:3] == ["v0", "v1", "v2"]
    with pytest.raises(MissingSourceError, match="train.video_ids.txt"):
        load_mosi("text", data_dir=MOSI_TEXT, cache_dir=tmp_path / "c", video_ids_dir=str(tmp_path))


def test_module_loads_standalone(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "dataset_script"))
    try:
        module = importlib.import_module("mosi")
        assert module.__name__ == "mosi" and module.Mosi is not Mosi
        builder = module.Mosi(config_name="text", data_dir=str(MOSI_TEXT), cache_dir=str(tmp_path))
        builder.download_and_prepare()
    finally:
        sys.modules.pop("mosi", None)
    assert builder.as_dataset("validation")["text"] == read_reference("validation")[0]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cmbert_release(tmp_path, protocol):
    arrays = write_cmbert_release(tmp_path / "release", np.random.default_rng(0), protocol=protocol)
    dataset = load_mosi("cmbert", data_dir=tmp_path / "release", cache_dir=tmp_path / "cache")
    for (split, size), audio in zip(SIZES.items(), arrays):
        part = dataset[split].with_format("numpy", columns=["audio_features"])
        assert part.num_rows == size
        np.testing.assert_array_equal(np.stack(list(part["audio_features"])), audio.astype(np.float32))
        assert dataset[split]["text"] == read_reference(split)[0]
    assert audio_facts(dataset) == {"level": "token", "source": "covarep", "width": 5, "feature_names": None,
                                    "column": "audio_features", "sampling_rate": None}


def test_mmsa_pickles(tmp_path):
    source = write_mmsa(tmp_path / "MOSI" / "Processed" / "aligned_50.pkl", True, np.random.default_rng(1))
    dataset = load_mosi("mmsa_aligned", data_dir=tmp_path / "MOSI", cache_dir=tmp_path / "c")
    for split, key in (("train", "train"), ("validation", "valid"), ("test", "test")):
        part, src = dataset[split], source[key]
        texts, labels, video_ids = read_reference(split)
        n = len(src["id"])
        assert part["text"] == texts[:n] and part["video_id"] == video_ids[:n] and part["id"] == list(src["id"])
        np.testing.assert_array_equal(np.array(part["label"], dtype=np.float32), labels[:n])
        for i in (0, 1, 3, n - 1):
            audio = src["audio"][i].astype(np.float32)
            audio[np.isneginf(audio)] = 0.0  # MMSA's replacement
            vision = src["vision"][i].astype(np.float32)
            np.testing.assert_array_equal(np.array(part[i]["audio_features"], dtype=np.float32), audio)
            np.testing.assert_array_equal(np.array(part[i]["vision"], dtype=np.float32), vision)
    assert audio_facts(dataset)["level"] == "token" and audio_facts(dataset)["source"] == "covarep"


def test_configs_that_cannot_train_are_not_offered_and_unknown_ones_list_all(tmp_path):
    configs = [*Mosi.builder_configs, *MosiRecordings.builder_configs]
    assert configs == ["text", "cmbert", "mmsa_aligned", "mosei_aligned", "synthetic", "recordings", "spoken"]
    for name in ("mmsa_unaligned", "mosei_unaligned", "recording"):  # frame-level MMSA features: no model takes them
        with pytest.raises(UnknownConfigError) as error:
            load_mosi(name, data_dir=tmp_path, cache_dir=tmp_path / "c")
        assert str(error.value) == f"unknown data set config {name!r}; the configs are {', '.join(configs)}"


def test_mosei_uses_its_own_widths(tmp_path):
    write_mmsa(tmp_path / "aligned_50.pkl", True, np.random.default_rng(2), audio_dim=74, vision_dim=35, sizes=(4, 2, 3))
    dataset = load_mosi("mosei_aligned", data_dir=tmp_path, cache_dir=tmp_path / "c")
    assert np.array(dataset["test"][0]["audio_features"]).shape == (50, 74)
    assert audio_facts(dataset)["width"] == 74 and audio_facts(dataset["test"])["width"] == 74
    assert np.array(dataset["test"][0]["vision"]).shape == (50, 35)
    with pytest.raises(MosiDataError, match=r"aligned_50.pkl, split 'train', row 0: audio of shape \(50, 74\)"):
        load_mosi("mmsa_aligned", data_dir=tmp_path, cache_dir=tmp_path / "c")


def test_manual_configs_need_data_dir(tmp_path):
    with pytest.raises(ManualDownloadError, match="MOSI_cmu_audio_CLS.pickle"):
        load_mosi("cmbert", cache_dir=tmp_path)
    with pytest.raises(MissingSourceError, match="aligned_50.pkl not found"):
        load_mosi("mmsa_aligned", data_dir=tmp_path, cache_dir=tmp_path)


def test_failed_prepare_leaves_no_cache_and_a_fixed_source_builds(tmp_path):
    release, cache = tmp_path / "release", tmp_path / "cache"
    write_cmbert_release(release, np.random.default_rng(3), nan_at=17)
    with pytest.raises(MosiDataError, match=r"MOSI_cmu_audio_CLS.pickle, split 'validation', row 17: audio holds NaN"):
        load_mosi("cmbert", data_dir=release, cache_dir=cache)
    assert not list(cache.rglob("dataset_info.json")) and not list(cache.rglob("*.incomplete"))
    write_cmbert_release(release, np.random.default_rng(3))
    assert load_mosi("cmbert", data_dir=release, cache_dir=cache)["validation"].num_rows == 229


class Payload:
    """A pickle that runs `function(*args)` when loaded."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("function", ["system", "open", "exec", "eval", "call", "load", "torch.load"])
def test_pickle_code_is_refused_before_it_runs(tmp_path, function):
    marker, inner = tmp_path / "marker", tmp_path / "inner.pkl"
    inner.write_bytes(pickle.dumps(Payload(os.system, f"touch {marker}")))
    write_marker = f"open({str(marker)!r}, 'w').close()"
    payload = {
        "system": Payload(os.system, f"touch {marker}"),
        "open": Payload(open, str(marker), "w"),
        "exec": Payload(exec, write_marker),
        "eval": Payload(eval, write_marker),
        "call": Payload(subprocess.call, ["touch", str(marker)]),
        "load": Payload(np.load, str(inner), None, True),  # numpy.load(inner, allow_pickle=True)
        "torch.load": Payload(torch.load, str(inner)),
    }[function]
    release = tmp_path / "release"
    write_cmbert_release(release, np.random.default_rng(4))
    pickle_path = release / "data" / "audio" / "MOSI_cmu_audio_CLS.pickle"
    pickle_path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError) as error:
        load_mosi("cmbert", data_dir=release, cache_dir=tmp_path / "c")
    assert str(pickle_path) in str(error.value) and f".{function.split('.')[-1]}'" in str(error.value)
    assert not marker.exists()
    if function != "torch.load":  # the payload is real: a plain pickle.load runs it (torch.load's weights_only would refuse it)
        result = pickle.loads(pickle_path.read_bytes())
        if function == "open":
            result.close()
        assert marker.exists()


@pytest.mark.parametrize("config", [c.name for c in Mosi.BUILDER_CONFIGS])
def test_every_config_builds_or_names_the_files_it_needs(tmp_path, config):
    sizes = dict(train_size=8, validation_size=4, test_size=4)  # only the synthetic source reads them
    builder = Mosi(config_name=config, cache_dir=str(tmp_path), **sizes)
    instructions = builder.manual_download_instructions
    if instructions:
        with pytest.raises(ManualDownloadError) as error:
            builder.download_and_prepare()
        assert instructions in str(error.value)
        assert not list(tmp_path.rglob("dataset_info.json"))
        return
    builder = Mosi(config_name=config, data_dir=str(MOSI_TEXT), cache_dir=str(tmp_path), **sizes)  # no download
    builder.download_and_prepare()
    dataset = builder.as_dataset()
    assert list(dataset) == ["train", "validation", "test"]
    for part in dataset.values():
        assert part.num_rows > 0 and part.features == builder.info.features
        assert audio_facts(part) == audio_facts(builder)
        assert "audio" not in part.column_names  # `audio` only ever holds waveforms
        assert ("audio_features" in part.column_names) == (builder.config.audio_level != "none")


def test_every_config_declares_its_audio_in_the_shared_vocabulary():
    from cmbert_hf.configuration_cmbert import AUDIO_FEATURE_SOURCES
    from dataset_script.facts import AUDIO_LEVELS, AUDIO_SOURCES
    from dataset_script.mosi import BUILDERS

    # The model's config records the data's audio source: the two packages (which do not import each other) must
    # name the same sources.
    assert set(AUDIO_SOURCES) == set(AUDIO_FEATURE_SOURCES)
    declared = {name: config.audio_facts() for builder in BUILDERS for name, config in builder.builder_configs.items()}
    assert {facts["level"] for facts in declared.values()} == set(AUDIO_LEVELS)
    assert {facts["source"] for facts in declared.values()} == set(AUDIO_SOURCES)
    for name, facts in declared.items():  # vectors have a width, waveforms a rate, text only neither
        assert (facts["width"] is not None) == (facts["level"] in ("word", "token")), name
        assert (facts["sampling_rate"] is not None) == (facts["level"] == "waveform"), name
