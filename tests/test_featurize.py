"""Featurising a data set of recordings (`cmbert_hf.featurize`): the extractor mapped over the rows, cached, the
normalisation fitted on train only."""

import datasets
import numpy as np
import pytest
import soundfile as sf
from helpers import TONE, recordings, timed

from cmbert_hf import CMBertFeatureExtractor
from cmbert_hf.featurize import extract_word_features, featurize_training_splits


@pytest.fixture
def on_disk(tmp_path):
    """Recordings as a Dataset backed by files, so that `map` caches its results."""
    recordings(tmp_path, 4, seed=0).save_to_disk(tmp_path / "data")
    return datasets.load_from_disk(tmp_path / "data")



def test_extract_word_features_maps_the_extractor_over_the_rows(tmp_path):
    data = recordings(tmp_path, 3, seed=0)
    extractor = CMBertFeatureExtractor(aligner="proportional")
    out = extract_word_features(data, extractor, timings_column="word_timings")
    assert out.column_names == ["audio", "text", "word_timings", "word_features", "word_timing"]
    assert out["word_timing"] == ["given"] * len(data)
    for row in out:
        expected = extractor.word_features(row["audio"], timed(row)).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(row["word_features"], np.float32), expected)
    # A datasets.Audio column (decoded by the extractor from the stored bytes) and two processes agree.
    typed = extract_word_features(
        data.cast_column("audio", datasets.Audio()), extractor, timings_column="word_timings", num_proc=2
    )
    np.testing.assert_allclose(np.concatenate(typed["word_features"]), np.concatenate(out["word_features"]), atol=1e-4)
    # Without timings the extractor's aligner times the text's words.
    untimed = extract_word_features(data, extractor)
    assert untimed["word_timing"] == ["proportional"] * len(data)
    for row in untimed:
        expected = extractor.word_features(row["audio"], row["text"].split()).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(row["word_features"], np.float32), expected)
    # So are the words of rows whose timings are null, row by row.
    partly = data.map(lambda row, i: {"word_timings": row["word_timings"] if i else None}, with_indices=True)
    mixed = extract_word_features(partly, extractor, timings_column="word_timings")
    assert mixed["word_timing"] == ["proportional", "given", "given"]
    assert mixed["word_features"] == untimed["word_features"][:1] + out["word_features"][1:]


def test_second_extraction_is_a_cache_hit_and_changed_settings_recompute(on_disk, monkeypatch):
    calls = []
    word_features = CMBertFeatureExtractor.word_features

    def counted(self, *args, **kwargs):
        calls.append(self.f0_max)
        return word_features(self, *args, **kwargs)

    monkeypatch.setattr(CMBertFeatureExtractor, "word_features", counted)
    extractor = CMBertFeatureExtractor()
    first = extract_word_features(on_disk, extractor, timings_column="word_timings")
    assert len(calls) == len(on_disk) and first.cache_files  # written to a cache file
    # Normalisation statistics do not change the unnormalised features: still a hit.
    extractor.fit_normalization(first["word_features"])
    again = extract_word_features(on_disk, extractor, timings_column="word_timings")
    assert len(calls) == len(on_disk) and again.cache_files == first.cache_files
    assert again["word_features"] == first["word_features"]
    extractor.f0_max = 300.0
    changed = extract_word_features(on_disk, extractor, timings_column="word_timings")
    assert calls == [500.0] * len(on_disk) + [300.0] * len(on_disk)
    assert changed.cache_files != first.cache_files


def test_training_splits_are_normalised_with_train_statistics_only(tmp_path):
    splits = datasets.DatasetDict(train=recordings(tmp_path, 3, seed=0), validation=recordings(tmp_path, 2, seed=1))
    extractor = CMBertFeatureExtractor(aligner="proportional")
    out = featurize_training_splits(splits, extractor)
    raw = {
        name: [extractor.word_features(row["audio"], row["text"].split()).astype(np.float32) for row in split]
        for name, split in splits.items()
    }
    train = np.concatenate(raw["train"]).astype(np.float64)
    std = train.std(axis=0)
    std[std == 0] = 1.0  # a constant feature keeps its scale
    np.testing.assert_allclose(extractor.feature_mean, train.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(extractor.feature_std, std, rtol=1e-6)
    for name, split in out.items():
        assert sorted(split.column_names) == ["audio_features", "text", "word_timing", "word_timings"]
        for row, features in zip(split, raw[name], strict=True):
            np.testing.assert_allclose(row["audio_features"], (features - train.mean(axis=0)) / std, atol=1e-4)


def test_extraction_errors_name_the_row_and_file(tmp_path):
    cut = tmp_path / "cut.wav"
    sf.write(cut, TONE[:10], 16000)
    data = datasets.Dataset.from_list([{"audio": str(cut), "text": "so good"}])
    data = datasets.concatenate_datasets([recordings(tmp_path, 1, seed=0).remove_columns("word_timings"), data])
    extractor = CMBertFeatureExtractor(aligner="proportional")
    with pytest.raises(ValueError, match=r"row 1 \(.*cut\.wav\) lasts 0\.001 s, too short for its 2 word"):
        extract_word_features(data, extractor)
    with pytest.raises(ValueError, match=r"needs the columns \['audio', 'transcript'\]"):
        extract_word_features(data, extractor, text_column="transcript")
    with pytest.raises(ValueError, match=r"needs the columns \['audio', 'text', 'timings'\]"):
        extract_word_features(data, extractor, timings_column="timings")
