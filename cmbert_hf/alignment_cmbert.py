"""PLACEHOLDER in branch `feat` for helper speech's `alignment_cmbert.py`: replaced by theirs at merge.

Only what the feature extractor's tests need: `align_words` (pocketsphinx forced alignment of known words) and
`AlignmentError`, with the interface agreed for the real module. No fallback, no counting.
"""

import numpy as np


class AlignmentError(ValueError):
    """The aligner could not place every word in the audio."""


_DECODER = []  # one pocketsphinx decoder per process: loading its acoustic model takes seconds


def align_words(waveform, words, sampling_rate=16000):
    """`[(word, start_s, end_s)]` for `words` in the 16 kHz mono `waveform`, by pocketsphinx forced alignment."""
    if sampling_rate != 16000:
        raise AlignmentError(f"pocketsphinx aligns 16 kHz audio, got {sampling_rate} Hz.")
    try:
        from pocketsphinx import Decoder
    except ImportError as err:
        raise AlignmentError(f"pocketsphinx is not installed ({err})") from err
    if not _DECODER:
        _DECODER.append(Decoder(samprate=16000, bestpath=False, loglevel="FATAL"))
    decoder = _DECODER[0]
    try:
        decoder.set_align_text(" ".join(word.lower() for word in words))
    except RuntimeError as err:
        raise AlignmentError(f"cannot align the words {words}: {err}") from err
    decoder.start_utt()
    decoder.process_raw((np.clip(waveform, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
    decoder.end_utt()
    if decoder.hyp() is None:
        raise AlignmentError(f"pocketsphinx found no alignment of the words {words}")
    # pocketsphinx's frames are 10 ms; segments also hold silences and fillers.
    fillers = ("<s>", "</s>", "<sil>", "[noise]")
    segments = [seg for seg in decoder.seg() if seg.word.split("(")[0].lower() not in fillers]
    spans = [(seg.start_frame / 100, (seg.end_frame + 1) / 100) for seg in segments]
    if len(spans) != len(words):
        raise AlignmentError(f"aligned {len(spans)} of {len(words)} words")
    return [(word, start, end) for word, (start, end) in zip(words, spans, strict=True)]
