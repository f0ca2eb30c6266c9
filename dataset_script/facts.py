"""The facts about the data that this package owns: label scale, the 7 classes, how stored audio is described.

The model side (`cmbert_hf`) reads these through the data sets it is given (`audio_facts`, the `label7` ClassLabel);
this package imports nothing from it.
"""

import numpy as np

LABEL_RANGE = (-3.0, 3.0)  # CMU-MOSI / MOSEI sentiment scores
# The 7 classes, index = round(clip(score, *LABEL_RANGE)) + 3 with numpy's halves-to-even.
LABEL7_NAMES = (
    "strongly negative", "negative", "weakly negative", "neutral", "weakly positive", "positive", "strongly positive",
)  # fmt: skip
# Recordings are stored as their files' bytes and decoded (channels averaged, resampled) to this rate.
SAMPLING_RATE = 16000
# How stored audio relates to the text, declared per config:
# "none": no audio; "word": one vector per word of `text`; "token": one per word-piece position, row 0 the zero
# [CLS] row (the CM-BERT pickle, MMSA aligned_50); "waveform": a recording, vectors are extracted from it later.
AUDIO_LEVELS = ("none", "word", "token", "waveform")
# Where the vectors come from: "covarep" (the MOSI / MOSEI releases), "synthetic" (`dataset_script.synthetic`),
# "extractor" (recordings: the feature extractor computes them from the waveform), "none" (no audio).
AUDIO_SOURCES = ("none", "covarep", "synthetic", "extractor")
# The word-timing columns of the recordings configs: timings given with the data, and reference timings.
TIMING_COLUMNS = ("word_timings", "true_timings")


def sentiment_class(score):
    """The 7-class index (into `LABEL7_NAMES`) of a score or an array of scores: `round(clip(score, -3, 3)) + 3`,
    numpy's halves-to-even as the original scoring code (2.5 -> 5, -0.5 -> 3)."""
    return np.round(np.clip(score, *LABEL_RANGE)).astype(int) + 3


__all__ = ["AUDIO_LEVELS", "AUDIO_SOURCES", "LABEL7_NAMES", "LABEL_RANGE", "SAMPLING_RATE", "TIMING_COLUMNS", "sentiment_class"]
