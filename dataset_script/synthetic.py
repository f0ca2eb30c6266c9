"""A deterministic, offline MOSI-shaped data set whose labels partly need the audio.

Each utterance is 5-12 upper-case words: fillers plus sentiment words. Audio is word level,
`[num_words, 5]`: `N(0, 0.1)` noise in every dimension. Two kinds of utterance:

- plain (a fraction `1 - f`): one or two sentiment words; the label is their summed polarity `s`
  (never 0), clipped to [-3, 3], plus `e ~ N(0, 0.1)`. No word is stressed.
- cross-modal (exactly `round(f * N)` per split, `f = cross_modal_fraction`): one positive and
  one negative sentiment word ("GREAT plot but BORING acting"), and the speaker *stresses* one
  of them, chosen at random: +2 on audio dimension `STRESS_DIM` of that word only. The label is
  the stressed word's polarity plus `e`. The text alone cannot tell which word counts.

This is the cross-modal signal CM-BERT's masked multimodal attention is built for: audio that
says which words to weigh. What each kind of model can reach (labels are never 0, so Acc2 is the
same under has0 / non0 / original):

- text only: on a cross-modal utterance either sign is equally likely, so **Acc2 <= 1 - f/2**
  (85% at the default f = 0.3), and its best absolute error there is half the distance between
  the two polarities, `E(p - n) / 2`, about 1.46: overall **MAE >= about 1.46 f + 0.08 (1 - f)**
  (0.49 at f = 0.3).
- text + audio: the stressed word is readable from one feature, so Acc2 can reach 100% and MAE
  `E|e|` (about 0.08).
Both bounds are checked in tests/test_dataset_synthetic.py.
"""

import numpy as np

from dataset_script.facts import LABEL_RANGE
from dataset_script.sources import SPLITS, SplitRows

POLARITY = {
    "GOOD": 1, "NICE": 1, "FUN": 1, "FUNNY": 1, "GREAT": 2, "EXCELLENT": 2, "WONDERFUL": 2,
    "BAD": -1, "BORING": -1, "DULL": -1, "TERRIBLE": -2, "AWFUL": -2, "HORRIBLE": -2,
}  # fmt: skip
POSITIVE = [w for w, p in POLARITY.items() if p > 0]
NEGATIVE = [w for w, p in POLARITY.items() if p < 0]
FILLERS = ("THE", "MOVIE", "FILM", "WAS", "IS", "REALLY", "AND", "I", "THINK", "IT", "PLOT", "ACTING", "STORY", "VERY", "SO")
AUDIO_DIM = 5
STRESS_DIM = 0
FEATURE_NAMES = ("stress",) + tuple(f"noise{k}" for k in range(1, AUDIO_DIM))  # what each audio dimension holds
MARKER = 2.0
NOISE = 0.1  # standard deviation of the label noise and of the audio noise


def text_polarity(text: str) -> int:
    """The label of a plain utterance, noise aside: summed word polarities clipped to [-3, 3]."""
    return int(np.clip(sum(POLARITY.get(word, 0) for word in text.split()), *LABEL_RANGE))


def _sentiment_words(rng: np.random.Generator, cross_modal: bool) -> list[str]:
    if cross_modal:
        return [POSITIVE[rng.integers(len(POSITIVE))], NEGATIVE[rng.integers(len(NEGATIVE))]]
    words = list(POLARITY)
    while True:  # a plain utterance's polarity is never 0, so its sign is always defined
        picks = [words[i] for i in rng.integers(0, len(words), size=rng.integers(1, 3))]
        if sum(POLARITY[w] for w in picks):
            return picks


def _utterance(rng: np.random.Generator, cross_modal: bool) -> tuple[list[str], list[int]]:
    """Words, and the positions of the sentiment words in the order they were drawn."""
    words = [FILLERS[i] for i in rng.integers(0, len(FILLERS), size=rng.integers(4, 11))]
    positions = []
    for word in _sentiment_words(rng, cross_modal):
        at = int(rng.integers(0, len(words) + 1))
        positions = [p + (p >= at) for p in positions] + [at]
        words.insert(at, word)
    return words, positions


def generate_split(split: str, num_rows: int, seed: int, cross_modal_fraction: float) -> SplitRows:
    """One split; its rows depend only on (`seed`, split name, `num_rows`, `cross_modal_fraction`)."""
    if not 0.0 <= cross_modal_fraction <= 1.0:
        raise ValueError(f"cross_modal_fraction must be in [0, 1], got {cross_modal_fraction}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    cross_modal = np.zeros(num_rows, dtype=bool)
    cross_modal[rng.permutation(num_rows)[: round(cross_modal_fraction * num_rows)]] = True
    texts, labels, audio = [], [], []
    for row in range(num_rows):
        words, positions = _utterance(rng, cross_modal[row])
        features = rng.normal(0.0, NOISE, size=(len(words), AUDIO_DIM))  # [num_words, 5]
        if cross_modal[row]:
            stressed = positions[rng.integers(2)]
            features[stressed, STRESS_DIM] += MARKER
            polarity = POLARITY[words[stressed]]
        else:
            polarity = text_polarity(" ".join(words))
        labels.append(np.clip(polarity + rng.normal(0.0, NOISE), *LABEL_RANGE))
        texts.append(" ".join(words))
        audio.append(features.astype(np.float32))
    return SplitRows(
        ids=[f"{split}-{row}" for row in range(num_rows)],
        video_ids=[""] * num_rows,
        texts=texts,
        labels=np.asarray(labels, dtype=np.float32),
        audio=audio,
    )


__all__ = ["generate_split", "text_polarity", "AUDIO_DIM", "FEATURE_NAMES", "POLARITY", "STRESS_DIM", "MARKER"]
