"""A spoken version of the synthetic corpus: espeak-ng speech whose stress, heard only in the audio, sets the label.

Utterances are drawn from `dataset_script.synthetic`'s vocabulary and utterance shapes, then spoken by
libespeak-ng (`dataset_script.espeak`) with a voice and rate drawn per utterance. As there:

- plain utterances (a fraction `1 - f`): one or two sentiment words, label = summed polarity (never 0) clipped to
  [-3, 3] plus `N(0, 0.1)` noise, nothing stressed;
- cross-modal utterances (exactly `round(f * N)` per split): one positive and one negative word; one of them,
  drawn at random, is spoken stressed and the label is its polarity plus noise. Only the audio tells which.

Stress is SSML prosody on the word, each part of which shows in word-level features (measured on espeak-ng):
`pitch="+50%"` raises f0 (108 -> 138 Hz on the default voice), `rate="50%"` doubles the word's duration and
`volume="x-loud"` doubles its RMS. (`<emphasis>` alone lowers f0, so it is not used.)

`write_corpus` writes the layout `dataset_script.recordings` reads: FLAC files (espeak's 22.05 kHz 16-bit samples,
losslessly) and `metadata.jsonl` with the text, label, split, and espeak's word events as `true_timings`, the
reference for judging an aligner. It writes into a staging folder renamed into place when complete.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from dataset_script.espeak import synthesize
from dataset_script.facts import LABEL_RANGE
from dataset_script.sources import SPLITS
from dataset_script.synthetic import NOISE, POLARITY, _utterance, text_polarity

# Male variants (median f0 about 95-105 Hz) and female ones (180-210 Hz). Not "+m7": pocketsphinx failed to align
# 19 of its 118 utterances in a 700-utterance corpus, against 2 of the other 582.
VOICES = ("en-us", "en-us+m3", "en-us+m5", "en-us+f2", "en-us+f3", "en-us+f4")
RATES = (140, 200)  # words per minute, drawn uniformly
# espeak's amplitude (default 100): at 100 a stressed (x-loud) word clips; at 70 it peaks below 0.95.
VOLUME = 70
STRESS = '<prosody pitch="+50%" rate="50%" volume="x-loud">{}</prosody>'


def plan_split(split: str, num_rows: int, seed: int, cross_modal_fraction: float) -> list[dict]:
    """
    The utterances of one split, deterministic in (`seed`, split, `num_rows`, `cross_modal_fraction`).

    Returns:
        `list[dict]`: per utterance `words` (upper case), `stressed` (index of the stressed word or `None`), `label`,
        `voice` and `rate`.
    """
    if not 0.0 <= cross_modal_fraction <= 1.0:
        raise ValueError(f"cross_modal_fraction must be in [0, 1], got {cross_modal_fraction}")
    # Its own stream (the third seed word), apart from the synthetic config's.
    rng = np.random.default_rng([seed, SPLITS.index(split), 1])
    cross_modal = np.zeros(num_rows, dtype=bool)
    cross_modal[rng.permutation(num_rows)[: round(cross_modal_fraction * num_rows)]] = True
    plan = []
    for row in range(num_rows):
        words, positions = _utterance(rng, cross_modal[row])
        stressed = int(positions[rng.integers(2)]) if cross_modal[row] else None
        polarity = POLARITY[words[stressed]] if stressed is not None else text_polarity(" ".join(words))
        plan.append(
            {
                "words": words,
                "stressed": stressed,
                "label": float(np.clip(polarity + rng.normal(0.0, NOISE), *LABEL_RANGE)),
                "voice": VOICES[rng.integers(len(VOICES))],
                "rate": int(rng.integers(RATES[0], RATES[1] + 1)),
            }
        )
    return plan


def speak(utterance: dict):
    """Synthesises one planned utterance; returns espeak's [`Speech`] with the timings named by the text's words.

    espeak-ng speaks some word pairs as one word ("was the" gets a single word event); such an utterance is spoken
    again with a 1 ms break between words, which keeps every word apart (and slows the speech about 10%).
    """
    spoken = [w.lower() for w in utterance["words"]]
    if utterance["stressed"] is not None:
        spoken[utterance["stressed"]] = STRESS.format(spoken[utterance["stressed"]])
    for separator in (" ", ' <break time="1ms"/> '):
        speech = synthesize(separator.join(spoken), voice=utterance["voice"], rate=utterance["rate"], volume=VOLUME, ssml=True)
        heard = [word for word, _, _ in speech.word_timings]
        if heard == [w.lower() for w in utterance["words"]]:
            break
    else:
        raise RuntimeError(f"espeak-ng reported words {heard} for {utterance['words']}")
    speech.word_timings = [(word, start, end) for word, (_, start, end) in zip(utterance["words"], speech.word_timings)]
    return speech


def write_corpus(folder, sizes: dict[str, int], seed: int, cross_modal_fraction: float) -> Path:
    """
    Synthesises the corpus into `folder` (which must not exist yet) and returns it.

    Args:
        folder (`str` or `Path`): where the corpus goes; written in a staging folder beside it, then renamed.
        sizes (`dict[str, int]`): rows per split.
        seed (`int`), cross_modal_fraction (`float`): as in [`plan_split`].
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        lines = []
        for split in SPLITS:
            (staging / split).mkdir()
            for row, utterance in enumerate(plan_split(split, sizes[split], seed, cross_modal_fraction)):
                speech = speak(utterance)
                file_name = f"{split}/{row:05d}.flac"
                sf.write(staging / file_name, speech.waveform, speech.sampling_rate, format="FLAC", subtype="PCM_16")
                lines.append(
                    {
                        "file_name": file_name,
                        "text": " ".join(utterance["words"]),
                        "label": utterance["label"],
                        "split": split,
                        "true_timings": [[w, round(a, 6), round(b, 6)] for w, a, b in speech.word_timings],
                    }
                )
        # The metadata file last: a folder without it is never taken for a corpus.
        (staging / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


__all__ = ["plan_split", "speak", "write_corpus", "VOICES", "STRESS"]
