"""The synthetic config: deterministic, with exactly the configured share of audio-dependent labels."""

import numpy as np
import pytest

from dataset_script import audio_facts, load_mosi
from dataset_script.synthetic import MARKER, POLARITY, STRESS_DIM, generate_split, text_polarity


def test_same_seed_same_data_other_seed_differs(tmp_path):
    first = load_mosi("synthetic", cache_dir=tmp_path / "a")
    again = load_mosi("synthetic", cache_dir=tmp_path / "b")
    other = load_mosi("synthetic", cache_dir=tmp_path / "a", seed=1)
    assert [first[s].num_rows for s in first] == [1284, 229, 686]
    for split in first:
        assert first[split].data.table.equals(again[split].data.table)
        assert first[split]["text"] != other[split]["text"]


@pytest.mark.parametrize("fraction", [0.3, 0.1])
def test_cross_modal_fraction_and_what_text_can_reach(tmp_path, fraction):
    dataset = load_mosi("synthetic", cache_dir=tmp_path, cross_modal_fraction=fraction, test_size=500)
    for split in dataset:
        part = dataset[split]
        labels = np.array(part["label"])
        audio = [np.array(a) for a in part["audio_features"]]
        words = [t.split() for t in part["text"]]
        assert audio_facts(part)["level"] == "word" and all(len(a) == len(w) for a, w in zip(audio, words))
        stressed = [np.flatnonzero(a[:, STRESS_DIM] > MARKER / 2) for a in audio]
        cross = np.array([len(s) == 1 for s in stressed])
        assert all(len(s) <= 1 for s in stressed)  # at most one stressed word, only in cross-modal rows
        assert cross.sum() == round(fraction * part.num_rows)
        # Knowing the stressed word (audio) gives the label up to the noise.
        aware = np.array(
            [POLARITY[w[s[0]]] if len(s) else text_polarity(" ".join(w)) for w, s in zip(words, stressed)]
        )
        assert np.mean(np.abs(aware - labels)) < 0.1
        # Cross-modal texts hold one positive and one negative word: the text cannot tell the sign.
        for w in np.array(words, dtype=object)[cross]:
            signs = sorted(np.sign(POLARITY[x]) for x in w if x in POLARITY)
            assert signs == [-1, 1]
        plain_polarity = np.array([text_polarity(" ".join(w)) for w in words])
        assert np.all(np.sign(plain_polarity[~cross]) == np.sign(labels[~cross]))
    train = dataset["train"]
    labels = np.array(train["label"])
    stressed = np.array([np.array(a)[:, STRESS_DIM].max() > MARKER / 2 for a in train["audio_features"]])
    # The best text-only guess on a cross-modal row is the midpoint of its two polarities.
    midpoint = [np.mean([POLARITY[x] for x in t.split() if x in POLARITY]) for t in train["text"]]
    text_guess = np.where(stressed, midpoint, [text_polarity(t) for t in train["text"]])
    text_mae = np.mean(np.abs(text_guess - labels))
    assert text_mae == pytest.approx(1.46 * fraction + 0.08 * (1 - fraction), rel=0.1)  # the docstring's bound
    # Best text-only Acc2 about 1 - f/2: right on every other row, a coin flip on cross-modal rows, whose sign
    # is balanced and independent of which polarity the text names first.
    assert np.mean(np.sign(text_guess[~stressed]) == np.sign(labels[~stressed])) == 1.0
    positive = labels[stressed] > 0
    first_positive = [next(POLARITY[x] for x in t.split() if x in POLARITY) > 0 for t in np.array(train["text"])[stressed]]
    assert np.mean(positive) == pytest.approx(0.5, abs=0.15)
    assert np.mean(positive == np.array(first_positive)) == pytest.approx(0.5, abs=0.15)


def test_bad_fraction():
    with pytest.raises(ValueError, match="cross_modal_fraction must be in"):
        generate_split("train", 10, 0, 1.5)
