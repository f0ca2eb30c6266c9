"""Dynamic padding of text and aligned audio."""

import numpy as np
import pytest
import torch

from cmbert_hf import CMBertDataCollator


def sample(length, label, width=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "input_ids": list(range(101, 101 + length)),
        "attention_mask": [1] * length,
        "token_type_ids": [0] * length,
        "audio_features": rng.normal(size=(length, width)).astype(np.float32).tolist(),
        "label": label,
    }


def test_pads_to_the_longest_sample_not_to_50():
    features = [sample(4, 0.5, seed=1), sample(7, -1.2, seed=2)]
    batch = CMBertDataCollator(pad_token_id=0)(features)
    assert batch["input_ids"].shape == (2, 7) and batch["audio_features"].shape == (2, 7, 5)
    assert batch["input_ids"][0].tolist() == [101, 102, 103, 104, 0, 0, 0]
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0]
    torch.testing.assert_close(batch["audio_features"][0, :4], torch.tensor(features[0]["audio_features"]))
    assert float(batch["audio_features"][0, 4:].abs().max()) == 0.0
    torch.testing.assert_close(batch["labels"], torch.tensor([0.5, -1.2]))
    assert batch["labels"].dtype == torch.float32


def test_multiple_of_and_fixed_length():
    features = [sample(4, 1.0), sample(5, 2.0)]
    assert CMBertDataCollator(pad_to_multiple_of=8)(features)["input_ids"].shape == (2, 8)
    fixed = CMBertDataCollator(max_length=50)(features)
    assert fixed["input_ids"].shape == (2, 50) and fixed["audio_features"].shape == (2, 50, 5)
    with pytest.raises(ValueError, match="more than max_length=4"):
        CMBertDataCollator(max_length=4)(features)


def test_text_only_and_class_labels():
    features = [{k: v for k, v in sample(3, 2).items() if k != "audio_features"}, sample(2, 5)]
    features[1].pop("audio_features")
    batch = CMBertDataCollator()(features)
    assert "audio_features" not in batch
    assert batch["labels"].dtype == torch.long


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f[1].pop("audio_features"), "sample 1 of the batch has no `audio_features` while others have"),
        (lambda f: f[1].update(audio_features=np.ones((5, 4))), r"sample 1 must have shape \(5, 5\).*got \(5, 4\)"),
        (lambda f: f[0].update(audio_features=np.ones((4, 5))), r"sample 0 must have shape \(3, 5\).*got \(4, 5\)"),
        (lambda f: [x.pop("attention_mask") for x in f], "every sample needs an `attention_mask`"),
    ],
    ids=["missing", "width", "longer-than-ids", "no-mask"],
)
def test_inconsistent_samples_are_clear_errors(edit, message):
    features = [sample(3, 2), sample(5, 5)]
    edit(features)
    with pytest.raises(ValueError, match=message):
        CMBertDataCollator()(features)
