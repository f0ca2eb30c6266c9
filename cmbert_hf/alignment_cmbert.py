"""Word timings for a waveform and its transcript, by forced alignment with pocketsphinx.

CM-BERT averages acoustic frames over each word's span; the original pipeline took the spans from the P2FA forced
aligner. This module does the same with pocketsphinx's aligner (CMU's US-English acoustic model and dictionary, both
shipped in the `pocketsphinx` wheel), and offers the cruder fallback of spreading the words over the voiced part of
the audio: the feature extractor's `"proportional"` aligner, and its counted fallback for training data that
pocketsphinx cannot align (`CMBertFeatureExtractor.word_features(spread_unaligned=True)`).

It ships as remote code beside the feature extractor, so it imports only numpy and the standard library;
pocketsphinx (and scipy, for resampling) are imported when first needed. It also holds the signal basics both
modules share: the 16 kHz rate, the one framing and energy measure, and the one resampler.
"""

import logging
import math
import re
import threading

import numpy as np


logger = logging.getLogger(__name__)

# The rate of pocketsphinx's en-us acoustic model, and so of every feature: the one place it is declared.
SAMPLING_RATE = 16000
FRAME_RATE = 100  # pocketsphinx frames per second
# Added to the int16 samples before alignment: synthetic and gated audio holds long runs of exact zeros, whose
# log-energy features make the aligner fail. Seeded, so an alignment depends on its audio only.
DITHER_LSB = 1.0
# The spread fallback's energy frames: the feature extractor's (32 ms windows at 16 kHz) every 10 ms.
SPREAD_WINDOW, SPREAD_HOP = 512, 160
NON_WORDS = {"<s>", "</s>", "<sil>"}
# pocketsphinx's aligner sometimes skips the transcript's last word, or places none (more often with wider beams).
# The attempts, in order: (leading silence s, trailing silence s, an explicit trailing "<sil>" word it may skip
# instead). On 3 x 120 espeak utterances the first four lost a word in 1-2 / 2-6 / 2-4 / 8-11 cases, all of them in 1;
# on the 700-utterance `spoken` corpus the first four left 10 unaligned, all seven 2.
ATTEMPTS = (
    (0.25, 0.25, True), (0.25, 0.0, False), (0.0, 0.25, True), (0.0, 0.0, False),
    (0.75, 0.75, True), (0.5, 0.5, True), (1.0, 1.0, True),
)  # fmt: skip


# The transcript check (`_check_fit`): a transcript fails when the mean per-frame log acoustic score of its words
# is below MIN_MEAN_FIT, a word of at least MIN_WORD_FRAMES frames scores below MIN_WORD_FIT (shorter words, mostly
# "the", "it", scored down to -8.2 in true transcripts of the demo's train split), or more than MAX_UNCOVERED of the
# clip's speech frames
# (within SPEECH_DB of its loudest) lie outside the words. Set on the first 29 utterances of the `spoken` test
# split plus the four real recordings: true transcripts scored mean >= -3.08, worst word >= -6.57, uncovered
# <= 0.08; other clips' sentences mean <= -3.23; shuffled words worst word <= -5.39 or uncovered >= 0.30; the
# first two words only uncovered >= 0.28 (bench/bench_real_voices.py measures the whole split).
MIN_MEAN_FIT, MIN_WORD_FIT, MIN_WORD_FRAMES, MAX_UNCOVERED, SPEECH_DB = -3.5, -7.0, 15, 0.25, 30.0
# Words out of order: the aligner squeezes a word that is not spoken where the transcript puts it into about the
# fewest frames its phones allow (3 per phone, one per HMM state), where it fits badly. A word of at most
# MAX_SQUEEZE frames per phone scoring below MIN_SQUEEZED_FIT fails. Set on a tuning set apart from the test split
# (the `spoken` corpus's validation split and 150 train rows, 250 utterances, plus the four real recordings): of 2169
# words of true transcripts 13 had <= 4 frames per phone, scoring >= -5.34; shuffled transcripts that passed the
# other measures held such a word in 5 of 7 cases, scoring -7.3 to -15.1 (the other two: a 4.25-frame-per-phone
# "plot" at -6.6 and no squeezed word). A second decode over the transcript's words in free order (a pocketsphinx
# word loop) was measured too and did not separate: it beat the true order in 6 of 60 true validation transcripts
# at the penalty that caught the shuffled ones, and cost as much as the alignment itself. Evaluated on the test
# split (bench/bench_real_voices.py, 60 rows): shuffled caught 55 -> 59/60 (real recordings 2 -> 4/4); no true
# transcript of the 200 test rows or of the real recordings refused.
# Only words of MIN_SQUEEZED_PHONES phones or more are judged so: spontaneous speech reduces short function words
# to their fewest frames ("a", "so", "of" squeezed and scoring -6.8 to -13.6 in 4 of the 16 true transcripts of the
# spontaneous clips of tests/fixtures/real_voices), while the out-of-order words this rule catches there are longer
# ("saying", "sick", "should"); out-of-order "the" and "in" are no longer caught by it.
MAX_SQUEEZE, MIN_SQUEEZED_FIT, MIN_SQUEEZED_PHONES = 4.0, -6.5, 3
# Coverage counts only periodic (voiced) frames as speech: on spontaneous recordings in a noisy room (the
# cold-corpus clips of tests/fixtures/real_voices) room noise, breaths and coughs lie within SPEECH_DB of the
# loudest frame, and counting them refused 6 of 16 true transcripts; a word the transcript leaves out has a voiced
# vowel. MIN_PERIODICITY is the normalised autocorrelation at the best lag of 2-16 ms (62.5-500 Hz). Measured with
# 0.7 (set on the `spoken` validation split and the 20 real clips): true transcripts refused 6 -> 1 of 20 real
# clips (the one whose voiced sound after "thanks" its transcript leaves out) and 0 -> 0 of 60 validation clips;
# transcripts cut to two words left uncovered >= 0.17 real, >= 0.19 espeak (before: >= 0.35, >= 0.26).
MIN_PERIODICITY = 0.7


class AlignmentError(ValueError):
    """The words could not be aligned to the audio; the message names the word at fault."""


class TranscriptMismatchError(AlignmentError):
    """The aligner placed every word, but the transcript does not fit the audio: words whose sounds are not there,
    or speech that no word covers. The message names the words; `timings` holds the spans the aligner gave."""

    def __init__(self, message, timings):
        super().__init__(message)
        self.timings = timings


# pocketsphinx carries state from one decode to the next (the first attempt of an utterance placed its words
# differently after different predecessors), which would make an alignment depend on what the process aligned
# before: a training map vs one clip at inference. Every utterance is preceded by this same short decode of
# silence, after which the alignments measured the same whatever came before.
SETTLE_SECONDS, SETTLE_TEXT = 0.5, "the"
_decoder = None
_decoder_lock = threading.Lock()


def _get_decoder():
    """One decoder per process: building it (loading the 134k-word dictionary) takes about a second."""
    global _decoder
    if _decoder is None:
        try:
            from pocketsphinx import Decoder, get_model_path
        except ImportError as error:
            raise ImportError(
                "Forced alignment needs pocketsphinx: pip install 'pocketsphinx>=5.0' (or cmbert-hf[speech])."
            ) from error
        _decoder = Decoder(
            hmm=get_model_path("en-us/en-us"),
            dict=get_model_path("en-us/cmudict-en-us.dict"),
            lm=None,
            samprate=SAMPLING_RATE,
            # 32 of the en-us model's Gaussians per senone instead of 4: boundary error median 20.4 -> 18.8 ms on the
            # real recordings of tests/fixtures/real_voices, 11.0 -> 10.3 ms on 60 utterances of the spoken corpus.
            topn=32,
            loglevel="FATAL",
        )
    return _decoder


def normalize_word(word: str) -> str:
    """The dictionary form of a transcript word: lower case, without surrounding punctuation ("Great!" -> "great")."""
    return re.sub(r"^[^\w']+|[^\w']+$", "", word.lower())


def align_words(
    waveform: np.ndarray, words: list[str], sampling_rate: int = SAMPLING_RATE, check_transcript: bool = True
) -> list[tuple[str, float, float]]:
    """
    Aligns a transcript to its audio with pocketsphinx.

    Args:
        waveform (`np.ndarray`):
            Mono float waveform in [-1, 1], shape `[num_samples]`.
        words (`list[str]`):
            The transcript's words in spoken order; case and surrounding punctuation are ignored.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Rate of `waveform`; other rates are resampled to 16 kHz.
        check_transcript (`bool`, *optional*, defaults to `True`):
            Whether to check that the aligned transcript fits the audio (`TranscriptMismatchError` when not).

    Returns:
        `list[tuple[str, float, float]]`: `(word, start_s, end_s)` per input word, the words as given, spans on the
        aligner's 10 ms grid; silence between words belongs to no word.

    Raises:
        `AlignmentError`: a word is not in pocketsphinx's dictionary, or the aligner did not place every word (the
        transcript does not match the audio). The message names the word; callers add the file.
        `TranscriptMismatchError` (an `AlignmentError`): every word was placed, but some fit the audio far worse than
        speech fits its own transcript, or speech lies outside the aligned words (see `_check_fit`).
        `ImportError`: pocketsphinx is not installed.
    """
    waveform = _check_waveform(waveform)
    if not words:
        raise AlignmentError("no words to align")
    decoder_words = [normalize_word(word) for word in words]
    with _decoder_lock:
        decoder = _get_decoder()
        for word, entry in zip(words, decoder_words, strict=True):
            if not entry or decoder.lookup_word(entry) is None:
                raise AlignmentError(
                    f"word {word!r} is not in pocketsphinx's pronunciation dictionary (CMUdict); give word timings "
                    "for this utterance, or spell the word as the dictionary does"
                )
        waveform16 = resample(waveform, sampling_rate, SAMPLING_RATE)
        _decode(decoder, np.zeros(round(SETTLE_SECONDS * SAMPLING_RATE)), SETTLE_TEXT)
        for head, tail, trailing_silence in ATTEMPTS:
            padded = np.pad(waveform16, (round(head * SAMPLING_RATE), round(tail * SAMPLING_RATE)))
            _decode(decoder, padded, " ".join(decoder_words) + (" <sil>" if trailing_silence else ""))
            # Pronunciation variants come back as "word(2)"; a failed search gives no segmentation at all.
            segments = [(seg.word, seg.start_frame, seg.end_frame, seg.ascore) for seg in decoder.seg() or []]
            placed = [segment for segment in segments if segment[0] not in NON_WORDS]
            found = [segment[0].split("(")[0] for segment in placed]
            if found == decoder_words:
                break
        else:
            lost = next(i for i, word in enumerate(decoder_words) if i >= len(found) or found[i] != word)
            raise AlignmentError(
                f"the aligner placed {len(placed)} of {len(words)} words and lost {words[lost]!r} (word {lost}): the "
                "transcript may not match the audio"
            )
        phones = [len(decoder.lookup_word(variant).split()) for variant, *_ in placed]
    # end_frame is inclusive; spans reaching into the padding are cut back to the clip.
    duration, offset = len(waveform) / sampling_rate, head * FRAME_RATE
    timings = [
        (word, max((start - offset) / FRAME_RATE, 0.0), min((end + 1 - offset) / FRAME_RATE, duration))
        for word, (_, start, end, _) in zip(words, placed)
    ]
    if check_transcript:
        _check_fit(
            waveform16, timings, [(end + 1 - start, score, n) for (_, start, end, score), n in zip(placed, phones)]
        )
    return timings


def _check_fit(waveform16: np.ndarray, timings, scores) -> None:
    """Raises `TranscriptMismatchError` when the aligned words do not fit the audio.

    The measures come from the alignment itself (no second decode, so the check costs nothing measurable):
    - a word's acoustic fit: pocketsphinx scores each frame against the best-scoring senone of that frame, so its
      per-frame log acoustic score is a likelihood ratio against an unconstrained decode (0 where the aligned sounds
      are the most likely ones); a word forced onto audio that is not it scores far lower;
    - a squeezed word: one pressed into about the fewest frames its phones allow, and fitting badly there, is not
      spoken where the transcript puts it (words out of order, most often);
    - coverage: the share of the clip's voiced speech frames (periodic, within `SPEECH_DB` of its loudest) that no
      word spans; a transcript that says less than the audio (cut short, or the first words of a long recording)
      leaves it high.
    """
    n_frames, phones = np.array([n for n, _, _ in scores]), np.array([p for _, _, p in scores])
    # pocketsphinx gives the score as a probability; a very poor long word underflows to 0, which is a poor fit.
    log_scores = np.log(np.maximum([score for _, score, _ in scores], 1e-300))
    fit, mean_fit = log_scores / n_frames, log_scores.sum() / n_frames.sum()
    judged = np.where(n_frames >= MIN_WORD_FRAMES, fit, 0.0)  # the words long enough to judge one by one
    energy = energy_db(waveform16, SPREAD_WINDOW, SPREAD_HOP)
    speech = (energy >= energy.max() - SPEECH_DB) & (periodicity(waveform16) >= MIN_PERIODICITY)
    times = np.arange(len(energy)) / FRAME_RATE
    covered = np.zeros(len(energy), dtype=bool)
    for _, start, end in timings:
        covered |= (times >= start) & (times < end)
    uncovered = (speech & ~covered).sum() / max(speech.sum(), 1)
    problems = []
    if mean_fit < MIN_MEAN_FIT or judged.min() < MIN_WORD_FIT:
        poor = [word for (word, _, _), value in zip(timings, judged) if value < MIN_WORD_FIT]
        problems.append(
            f"the words {poor or [timings[int(fit.argmin())][0]]} do not sound like the audio under them (log "
            f"acoustic score per frame {mean_fit:.1f} on average, worst word {judged.min():.1f}; matching "
            f"transcripts score above {MIN_MEAN_FIT} and {MIN_WORD_FIT})"
        )
    squeezed = (n_frames <= MAX_SQUEEZE * phones) & (fit < MIN_SQUEEZED_FIT) & (phones >= MIN_SQUEEZED_PHONES)
    if squeezed.any():
        problems.append(
            f"the words {[word for (word, _, _), bad in zip(timings, squeezed) if bad]} are squeezed into about the "
            f"fewest frames their sounds allow and do not sound like the audio there (log acoustic score per frame "
            f"{fit[squeezed].min():.1f}): they are not spoken at that point; are the words in the spoken order?"
        )
    if uncovered > MAX_UNCOVERED:
        problems.append(
            f"{uncovered:.0%} of its speech lies outside the aligned words (which span {timings[0][1]:.2f}-"
            f"{timings[-1][2]:.2f} s of {len(waveform16) / SAMPLING_RATE:.2f} s): the transcript says less than the audio"
        )
    if problems:
        raise TranscriptMismatchError("the transcript does not fit the audio: " + "; ".join(problems), timings)


def spread_words(
    waveform: np.ndarray, words: list[str], sampling_rate: int = SAMPLING_RATE, silence_threshold_db: float = 40.0
) -> list[tuple[str, float, float]]:
    """
    The fallback: spreads the words over the span from the first to the last non-silent frame in proportion to their
    character length. It ignores pauses and speaking rate, so use it only where alignment is impossible.

    Args:
        waveform (`np.ndarray`):
            Mono float waveform, shape `[num_samples]`.
        words (`list[str]`):
            The transcript's words.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Rate of `waveform`.
        silence_threshold_db (`float`, *optional*, defaults to 40.0):
            Frames quieter than the loudest by more than this are silence.

    Returns:
        `list[tuple[str, float, float]]`: `(word, start_s, end_s)` per word, contiguous.
    """
    waveform = _check_waveform(waveform)
    if not words:
        raise AlignmentError("no words to spread")
    scale = sampling_rate / SAMPLING_RATE
    window, hop = round(SPREAD_WINDOW * scale), round(SPREAD_HOP * scale)
    energy = energy_db(waveform, window, hop)
    loud = np.flatnonzero(energy >= energy.max() - silence_threshold_db)
    start = loud[0] * hop / sampling_rate
    end = min((loud[-1] + 1) * hop / sampling_rate, len(waveform) / sampling_rate)
    lengths = np.array([max(len(word), 1) for word in words], dtype=np.float64)
    bounds = start + (end - start) * np.concatenate([[0.0], np.cumsum(lengths)]) / lengths.sum()
    return [(word, float(a), float(b)) for word, a, b in zip(words, bounds[:-1], bounds[1:], strict=True)]


def _decode(decoder, waveform16: np.ndarray, text: str) -> None:
    """Aligns `text` to a 16 kHz waveform (dithered to int16); the result is in `decoder.seg()`."""
    decoder.set_align_text(text)
    decoder.start_utt()
    decoder.process_raw(_to_int16(waveform16).tobytes(), full_utt=True)
    decoder.end_utt()


def _check_waveform(waveform) -> np.ndarray:
    waveform = np.asarray(waveform)
    if waveform.ndim != 1 or waveform.size == 0:
        raise ValueError(f"expected a non-empty mono waveform [num_samples], got shape {waveform.shape}")
    if not np.isfinite(waveform).all():
        raise ValueError("the waveform holds NaN or inf samples")
    return waveform


def frames(waveform: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Frames `[1 + len // hop, frame_length]` (a read-only view), frame i centred at sample i * hop: the waveform
    zero-padded by half a frame at both ends, as librosa's centred frames."""
    padded = np.pad(waveform, frame_length // 2)
    return np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length][: 1 + len(waveform) // hop_length]


def periodicity(waveform16: np.ndarray) -> np.ndarray:
    """Per frame of `frames(waveform16, SPREAD_WINDOW, SPREAD_HOP)`, the largest normalised autocorrelation at lags
    of 2-16 ms (pitch 62.5-500 Hz): near 1 for voiced speech, low for noise, breath and clicks. The frames are
    Hann-windowed, and each lag is divided by the window's own autocorrelation there, so a periodic frame reads 1."""
    window = np.hanning(SPREAD_WINDOW)
    x = frames(waveform16, SPREAD_WINDOW, SPREAD_HOP).astype(np.float64)
    x = (x - x.mean(axis=1, keepdims=True)) * window
    lags = slice(SAMPLING_RATE // 500, SPREAD_WINDOW // 2 + 1)
    r = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * SPREAD_WINDOW)) ** 2)  # zero-padded: no wrap-around
    w = np.fft.irfft(np.abs(np.fft.rfft(window, 2 * SPREAD_WINDOW)) ** 2)
    return (r[:, lags] / np.maximum(r[:, :1], 1e-12) / (w[lags] / w[0])).max(axis=1)


def energy_db(waveform: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """RMS energy of each frame of `frames` in dB re full scale, floored at -100 dB."""
    x = frames(waveform, frame_length, hop_length).astype(np.float64)
    return 20 * np.log10(np.maximum(np.sqrt(np.mean(x**2, axis=1)), 1e-5))


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling (scipy.signal.resample_poly: a Kaiser-windowed FIR), float64."""
    if orig_rate == target_rate:
        return np.asarray(waveform, dtype=np.float64)
    from scipy.signal import resample_poly

    step = math.gcd(int(orig_rate), int(target_rate))
    return resample_poly(np.asarray(waveform, dtype=np.float64), target_rate // step, orig_rate // step)


def _to_int16(waveform: np.ndarray) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0.0, DITHER_LSB, size=len(waveform))
    return np.clip(np.round(waveform * 32767 + noise), -32768, 32767).astype(np.int16)


__all__ = [
    "SAMPLING_RATE", "AlignmentError", "TranscriptMismatchError", "align_words", "energy_db", "frames", "normalize_word", "resample", "spread_words",
]  # fmt: skip
