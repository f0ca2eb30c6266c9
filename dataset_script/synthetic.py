"""A deterministic, offline MOSI-shaped data set whose labels partly need the audio.

Each utterance is 5-12 upper-case words: fillers plus one or two sentiment words. Its text
polarity `s` is the sum of the word polarities (never 0), clipped to [-3, 3]; the label is
`s + e` with `e ~ N(0, 0.1)`, clipped to [-3, 3]. Exactly `round(flip_fraction * N)` utterances
per split are *sarcastic*: their label is `-s + e`, and the only trace of it is in the audio.

Audio is word level, `[num_words, 5]`: `N(0, 0.1)` noise in every dimension, plus +2 on
dimension `SARCASM_DIM` of every word of a sarcastic utterance. The marker is on all words so a
model that pools audio over the utterance sees it, whichever word-pieces it attends to.

What each kind of model can reach (labels never 0, so Acc2 is the same under has0 / non0 /
original), with `f = flip_fraction`:

- text only: the text determines `s` but not the flip. For `f < 0.5` the Bayes-optimal sign is
  `sign(s)`, so **Acc2 <= 1 - f** (70% at the default 0.3), and the best MAE is about
  `2 f E|s| + E|e|`: `E|s|` is about 1.75, so about 1.1 at f = 0.3 (predicting `s` gives 1.11).
- text + audio: the flip is readable from one feature, so Acc2 can reach 100% and MAE
  `E|e|` (about 0.07 after clipping).
Both bounds are checked in tests/test_dataset_synthetic.py.
"""

import numpy as np

from dataset_script.sources import SPLITS, SplitRows

POLARITY = {
    "GOOD": 1, "NICE": 1, "FUN": 1, "FUNNY": 1, "GREAT": 2, "EXCELLENT": 2, "WONDERFUL": 2,
    "BAD": -1, "BORING": -1, "DULL": -1, "TERRIBLE": -2, "AWFUL": -2, "HORRIBLE": -2,
}  # fmt: skip
FILLERS = ("THE", "MOVIE", "FILM", "WAS", "IS", "REALLY", "AND", "I", "THINK", "IT", "PLOT", "ACTING", "STORY", "VERY", "SO")
AUDIO_DIM = 5
SARCASM_DIM = 0
MARKER = 2.0
NOISE = 0.1  # standard deviation of the label noise and of the audio noise


def text_polarity(text: str) -> int:
    """The text-derived part of a synthetic label: summed word polarities clipped to [-3, 3]."""
    return int(np.clip(sum(POLARITY.get(word, 0) for word in text.split()), -3, 3))


def _utterance(rng: np.random.Generator) -> list[str]:
    sentiment_words = list(POLARITY)
    while True:  # a zero sum would make the sarcastic sign flip meaningless
        picks = [sentiment_words[i] for i in rng.integers(0, len(sentiment_words), size=rng.integers(1, 3))]
        if sum(POLARITY[w] for w in picks):
            break
    words = [FILLERS[i] for i in rng.integers(0, len(FILLERS), size=rng.integers(4, 11))]
    for word in picks:
        words.insert(int(rng.integers(0, len(words) + 1)), word)
    return words


def generate_split(split: str, num_rows: int, seed: int, flip_fraction: float) -> SplitRows:
    """One split; a split's rows depend only on (`seed`, split name, `num_rows`, `flip_fraction`)."""
    if not 0.0 <= flip_fraction <= 1.0:
        raise ValueError(f"flip_fraction must be in [0, 1], got {flip_fraction}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    sarcastic = np.zeros(num_rows, dtype=bool)
    sarcastic[rng.permutation(num_rows)[: round(flip_fraction * num_rows)]] = True
    texts, labels, audio = [], [], []
    for row in range(num_rows):
        words = _utterance(rng)
        text = " ".join(words)
        sign = -1.0 if sarcastic[row] else 1.0
        labels.append(np.clip(sign * text_polarity(text) + rng.normal(0.0, NOISE), -3.0, 3.0))
        features = rng.normal(0.0, NOISE, size=(len(words), AUDIO_DIM))  # [num_words, 5]
        features[:, SARCASM_DIM] += MARKER * sarcastic[row]
        texts.append(text)
        audio.append(features.astype(np.float32))
    return SplitRows(
        ids=[f"{split}-{row}" for row in range(num_rows)],
        video_ids=[""] * num_rows,
        texts=texts,
        labels=np.asarray(labels, dtype=np.float32),
        audio=audio,
    )


__all__ = ["generate_split", "text_polarity", "POLARITY", "SARCASM_DIM", "MARKER"]
