"""train.py on recordings: extract (map) -> fit normalisation on train -> normalise -> encode, and the provenance
every run records (feature extractor, COVAREP, synthetic, none)."""

import json
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from test_processor import TIMINGS, TONE, recordings, timed
from transformers import pipeline

from cmbert_hf import CMBertFeatureExtractor, CMBertSentimentPipeline
from cmbert_hf.feature_extraction_cmbert import DEFAULT_FEATURES
from cmbert_hf.pipeline_cmbert import TASK

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402


def labelled(split, seed):
    labels = np.random.default_rng(seed).uniform(-3, 3, len(split)).astype(np.float32)
    return split.add_column("label", labels.tolist())


def test_a_run_on_recordings_fits_the_extractor_on_train_and_records_it(
    tiny_checkpoint, dataset_cache, tiny_args, tmp_path, monkeypatch
):
    raw = datasets.DatasetDict(
        train=labelled(recordings(tmp_path, 6, seed=0), 0),
        validation=labelled(recordings(tmp_path, 3, seed=1), 1),
        test=labelled(recordings(tmp_path, 3, seed=2), 2),
    )
    monkeypatch.setattr(train, "load_mosi", lambda *args, **kwargs: raw)
    out = tmp_path / "run"
    train.main(tiny_args(tiny_checkpoint, dataset_cache, out, "--num_train_epochs", "1"))

    config = json.loads((out / "config.json").read_text())
    assert config["audio_feature_source"] == "extractor" and config["audio_feature_names"] == list(DEFAULT_FEATURES)
    assert config["audio_feature_size"] == len(DEFAULT_FEATURES)
    saved = json.loads((out / "processor_config.json").read_text())
    assert saved["audio_feature_source"] == "extractor"
    # The statistics are those of the train split's words only, computed here from the files directly.
    extractor = CMBertFeatureExtractor()
    train_rows = np.concatenate([extractor.word_features(row["audio"], timed(row)) for row in raw["train"]])
    np.testing.assert_allclose(saved["feature_extractor"]["feature_mean"], train_rows.mean(axis=0), rtol=1e-5)
    # The saved folder scores raw audio (the path `cmbert predict --audio` takes).
    pipe = pipeline(TASK, model=str(out), pipeline_class=CMBertSentimentPipeline, device="cpu")
    result = pipe({"text": "hello there", "audio": TONE, "sampling_rate": 16000, "word_timings": TIMINGS})
    assert -3 <= result["score"] <= 3


@pytest.mark.parametrize(
    "dataset_config, use_audio, expected",
    [
        ("synthetic", True, "synthetic"),
        ("cmbert", True, "covarep"),
        ("mmsa_aligned", True, "covarep"),
        ("mosei_aligned", True, "covarep"),
        ("cmbert", False, "none"),
    ],
)
def test_precomputed_configs_record_their_source(dataset_config, use_audio, expected):
    raw = datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": ["a"], "audio": [[[0.0] * 5]]}))
    extractor = CMBertFeatureExtractor()
    same, provenance = train.featurize_audio(raw, dataset_config, extractor, None, use_audio, None)
    assert same is raw and provenance == {"audio_feature_source": expected, "audio_feature_names": None}
    assert not extractor.is_fitted
