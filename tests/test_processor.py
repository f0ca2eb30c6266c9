"""CMBertProcessor: word-to-word-piece alignment of audio, validation, batching, save/load, provenance checks,
and the data set feature steps (extraction map, its cache, normalisation fitted on train)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from huggingface_hub.errors import StrictDataclassError
import torch
from transformers import AutoProcessor, AutoTokenizer

from cmbert_hf import CMBertConfig, CMBertFeatureExtractor, CMBertProcessor
from helpers import FIVE, TIMINGS, TONE


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture
def processor(tokenizer):
    return CMBertProcessor(CMBertFeatureExtractor(features=FIVE), tokenizer)


def fitted(extractor):
    """The extractor with (arbitrary) normalisation statistics."""
    extractor.feature_mean, extractor.feature_std = [100.0] * 5, [10.0] * 5
    return extractor


def word_features(n_words, width=5):
    # Row k holds k + 1 everywhere, so an aligned row tells which word it came from.
    return np.repeat(np.arange(1, n_words + 1, dtype=np.float32)[:, None], width, axis=1)


def test_each_word_vector_covers_all_its_pieces(processor, tokenizer):
    text = "i absolutely loved unbelievably good"
    out = processor(text=text, audio_features=word_features(5))
    tokens = tokenizer.convert_ids_to_tokens(out["input_ids"])
    assert tokens == ["[CLS]", "i", "absolutely", "loved", "un", "##bel", "##ie", "##va", "##bly", "good", "[SEP]"]
    audio = np.asarray(out["audio_features"])
    assert audio.shape == (11, 5)
    # [CLS] and [SEP] are zero rows; the five pieces of "unbelievably" all carry word 4's vector.
    assert audio[:, 0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 4, 5, 0]
    assert len(out["attention_mask"]) == len(out["token_type_ids"]) == 11


def test_list_of_words_and_string_agree(processor):
    feats = word_features(3)
    as_string = processor(text="so very happy", audio_features=feats)
    as_words = processor(text=["so", "very", "happy"], audio_features=feats, is_split_into_words=True)
    assert as_string["input_ids"] == as_words["input_ids"]
    np.testing.assert_array_equal(as_string["audio_features"], as_words["audio_features"])


def test_truncation_keeps_text_and_audio_consistent(processor):
    words = " ".join(["wonderful"] * 30)
    out = processor(text=words, audio_features=word_features(30), max_length=12)
    assert len(out["input_ids"]) == 12 and np.asarray(out["audio_features"]).shape == (12, 5)
    assert np.asarray(out["audio_features"])[:, 0].tolist() == [0] + list(range(1, 11)) + [0]


def test_pre_aligned_features_are_taken_as_they_are(processor):
    aligned = np.random.default_rng(0).normal(size=(50, 5)).astype(np.float32)  # the original's (50, 5) rows
    out = processor(text="not bad at all", audio_features=aligned, audio_level="token")
    n = len(out["input_ids"])
    np.testing.assert_array_equal(np.asarray(out["audio_features"]), aligned[:n])


def test_batched_and_padded_tensors(processor):
    out = processor(
        text=["good", "a truly terrible film"],
        audio_features=[word_features(1), word_features(4)],
        padding=True,
        return_tensors="pt",
    )
    assert out["input_ids"].shape == (2, 6) and out["audio_features"].shape == (2, 6, 5)
    assert out["audio_features"][0, :, 0].tolist() == [0, 1, 0, 0, 0, 0]  # [CLS] good [SEP] pad pad pad
    assert out["audio_features"].dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": "two words", "audio_features": np.ones((2, 4))}, r"must have shape \(n, 5\)"),
        ({"text": "two words", "audio_features": np.ones((3, 5))}, "has 2 words but 3 word-level audio vectors"),
        ({"text": "two words", "audio_features": np.array([[np.nan] * 5, [0] * 5])}, "NaN or inf"),
        ({"text": "two words", "audio_features": np.array([[np.inf] * 5, [0] * 5])}, "NaN or inf"),
        ({"text": "   ", "audio_features": np.ones((0, 5))}, "`text` is empty"),
        ({"text": "fine", "audio_features": np.ones((1, 5)), "audio_level": "frame"}, "`audio_level` must be one of"),
        ({"text": ["a", "b"], "audio_features": [np.ones((1, 5))]}, "got 2 texts but 1 audio feature arrays"),
        ({"text": ["fine", 3]}, "each utterance of `text` must be a string, got 3"),
        ({"text": [["a", 1]], "is_split_into_words": True}, "must be a list of word strings"),
    ],
)
def test_bad_inputs_raise_clear_errors(processor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        processor(**kwargs)


def test_raw_audio_goes_through_the_feature_extractor(processor):
    fitted(processor.feature_extractor)
    sr = 16000
    t = np.arange(sr) / sr
    waveform = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    timings = [("hello", 0.0, 0.5), ("there", 0.5, 1.0)]
    out = processor(text="hello there", audio=waveform, sampling_rate=sr, word_timings=timings, return_tensors="pt")
    expected = processor.feature_extractor(waveform, word_timings=timings, sampling_rate=sr)["word_features"]
    assert out["input_ids"].shape == (1, 4) and out["audio_features"].shape == (1, 4, 5)
    torch.testing.assert_close(out["audio_features"][0, 1:3], torch.from_numpy(expected))
    with pytest.raises(ValueError, match="expects audio_feature_size=74"):
        CMBertProcessor(processor.feature_extractor, processor.tokenizer, audio_feature_size=74)(
            text="hello there", audio=waveform, sampling_rate=sr, word_timings=timings
        )


@pytest.mark.parametrize(
    "kwargs, fit, message",
    [
        ({"audio_feature_source": "covarep", "audio_feature_size": 5}, True,
         r"trained on precomputed 'covarep' features \(5 per word\).*`audio_features`.*--features"),
        ({"audio_feature_source": "synthetic", "audio_feature_size": 5}, True, "precomputed 'synthetic' features"),
        ({"audio_feature_source": "none"}, True, "trained on no audio.*--features"),
        ({"audio_feature_source": None}, True, "origin its folder does not record.*--features"),
        ({"audio_feature_names": ["f0", "voiced", "energy", "mfcc1", "mfcc2"]}, True,
         r"trained on the audio features \['f0', 'voiced', 'energy', 'mfcc1', 'mfcc2'\] but the feature extractor "
         r"makes \['f0', 'voiced', 'energy', 'energy_peak', 'duration'\]"),
        ({}, False, "no normalisation statistics.*processor_config.json.*--features"),
    ],
)  # fmt: skip
def test_raw_audio_is_refused_unless_the_extractor_made_the_models_features(tokenizer, kwargs, fit, message):
    extractor = CMBertFeatureExtractor(features=FIVE)
    processor = CMBertProcessor(fitted(extractor) if fit else extractor, tokenizer, **kwargs)
    with pytest.raises(ValueError, match=message):
        processor(text="hello there", audio=TONE, sampling_rate=16000, word_timings=TIMINGS)
    # Precomputed features are still accepted.
    assert len(processor(text="hello there", audio_features=np.ones((2, 5)))["audio_features"]) == 4


def test_provenance_is_saved(tokenizer, tmp_path):
    CMBertProcessor(CMBertFeatureExtractor(features=FIVE), tokenizer).save_pretrained(tmp_path / "extractor")
    loaded = CMBertProcessor.from_pretrained(tmp_path / "extractor")
    assert (loaded.audio_feature_source, loaded.audio_feature_names) == ("extractor", FIVE)
    covarep = CMBertProcessor(CMBertFeatureExtractor(), tokenizer, audio_feature_size=5, audio_feature_source="covarep")
    covarep.save_pretrained(tmp_path / "covarep")
    loaded = CMBertProcessor.from_pretrained(tmp_path / "covarep")
    assert (loaded.audio_feature_source, loaded.audio_feature_names) == ("covarep", None)
    with pytest.raises(ValueError, match="`audio_feature_source` must be one of"):
        CMBertProcessor(CMBertFeatureExtractor(), tokenizer, audio_feature_source="opensmile")
    with pytest.raises(StrictDataclassError, match="audio_feature_source.*opensmile"):
        CMBertConfig(audio_feature_source="opensmile")


def test_save_and_load_round_trip(processor, tmp_path):
    processor.feature_extractor.feature_mean = [0.5] * 5
    processor.feature_extractor.feature_std = [2.0] * 5
    processor.save_pretrained(tmp_path)
    again = AutoProcessor.from_pretrained(tmp_path)
    assert type(again) is CMBertProcessor and again.audio_feature_size == 5
    wide = CMBertProcessor(processor.feature_extractor, processor.tokenizer, audio_feature_size=74)
    wide.save_pretrained(tmp_path / "wide")  # not the feature extractor's own width: must be saved, not derived
    assert AutoProcessor.from_pretrained(tmp_path / "wide").audio_feature_size == 74
    assert again.feature_extractor.to_dict() == processor.feature_extractor.to_dict()
    kwargs = {"text": "what a day", "audio_features": word_features(3)}
    assert again(**kwargs)["input_ids"] == processor(**kwargs)["input_ids"]

    # The same folder as remote code, in a process where cmbert_hf cannot be imported.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["cmbert_hf"] = None
        import numpy as np
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
        assert type(processor).__name__ == "CMBertProcessor", type(processor)
        out = processor(text="what a day", audio_features=np.ones((3, 5)))
        print(out["input_ids"], np.asarray(out["audio_features"])[:, 0].tolist())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    ids = processor(**kwargs)["input_ids"]
    assert result.stdout.strip() == f"{ids} [0.0, 1.0, 1.0, 1.0, 0.0]"
