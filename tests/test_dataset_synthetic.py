"""The synthetic config: deterministic, with exactly the configured share of audio-only labels."""

import numpy as np
import pytest

from dataset_script import load_mosi
from dataset_script.synthetic import MARKER, SARCASM_DIM, generate_split, text_polarity


def test_same_seed_same_data_other_seed_differs(tmp_path):
    first = load_mosi("synthetic", cache_dir=tmp_path / "a")
    again = load_mosi("synthetic", cache_dir=tmp_path / "b")
    other = load_mosi("synthetic", cache_dir=tmp_path / "a", seed=1)
    assert [first[s].num_rows for s in first] == [1284, 229, 686]
    for split in first:
        assert first[split].data.table.equals(again[split].data.table)
        assert first[split]["text"] != other[split]["text"]


@pytest.mark.parametrize("flip_fraction", [0.3, 0.1])
def test_audio_only_fraction_and_what_text_can_reach(tmp_path, flip_fraction):
    dataset = load_mosi("synthetic", cache_dir=tmp_path, flip_fraction=flip_fraction, test_size=500)
    for split in dataset:
        part = dataset[split]
        labels = np.array(part["label"])
        polarity = np.array([text_polarity(t) for t in part["text"]])
        audio = [np.array(a) for a in part["audio"]]
        # the marker is on every word of a sarcastic utterance and on no word of the others
        word_marks = [a[:, SARCASM_DIM] > MARKER / 2 for a in audio]
        assert all(m.all() or not m.any() for m in word_marks)
        sarcastic = np.array([m.all() for m in word_marks])
        assert sarcastic.sum() == round(flip_fraction * part.num_rows)
        assert np.all(np.sign(labels) == np.where(sarcastic, -1, 1) * np.sign(polarity))
        assert np.all(np.abs(np.delete(np.stack([a.mean(0) for a in audio]), SARCASM_DIM, 1)) < 0.5)
        assert set(part["audio_level"]) == {"word"} and all(len(a) == len(t.split()) for a, t in zip(audio, part["text"]))
        # text-only best guess sign(s): Acc2 is 1 - f; with the audio flag: perfect
        assert np.sum(np.sign(polarity) == np.sign(labels)) == part.num_rows - sarcastic.sum()
        aware = np.where(sarcastic, -polarity, polarity)
        assert np.mean(np.abs(aware - labels)) < 0.1
    if flip_fraction == 0.3:  # the docstring's "about 1.1" text-only MAE on the largest split
        train = dataset["train"]
        mae = np.mean(np.abs(np.array([text_polarity(t) for t in train["text"]]) - np.array(train["label"])))
        assert 1.0 < mae < 1.2


def test_bad_flip_fraction():
    with pytest.raises(ValueError, match="flip_fraction must be in"):
        generate_split("train", 10, 0, 1.5)
