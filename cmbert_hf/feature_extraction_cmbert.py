"""Raw audio -> word-level acoustic features for CM-BERT.

CM-BERT (Yang et al., "CM-BERT: Cross-Modal BERT for Text-Audio Sentiment Analysis", ACM MM 2020) feeds one
acoustic vector per word: COVAREP frame features (f0, voicing, spectral parameters) averaged over each word's
P2FA forced-alignment span. This module rebuilds that pipeline so that new audio can be scored, and adds the
word-level cues of stress that averages lose: the word's duration, its pitch range and its loudest frame.

The signal processing (YIN, RMS energy, a mel filter bank and its DCT) is written here in numpy rather than taken
from librosa: librosa compiles numba kernels on first import, which made the first extraction after an install
take a minute. It imports only numpy, soundfile and transformers, plus this folder's `alignment_cmbert` (the shared
framing, resampler and aligner), so it can ship as remote code beside the processor.
"""

import io
import math
import os

import numpy as np
import soundfile as sf
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging

from .alignment_cmbert import (
    SAMPLING_RATE, AlignmentError, TranscriptMismatchError, align_words, energy_db, frames, resample, spread_words,
)  # fmt: skip


logger = logging.get_logger(__name__)

# 40 mel bands is the usual MFCC front end for 16 kHz speech; more bands leave empty filters at n_fft=512.
N_MELS = 40
ALIGNERS = ("pocketsphinx", "proportional")
# Where a word's span came from (`word_features(..., return_timing=True)`): the given timings, pocketsphinx, the
# words spread over the voiced span (pocketsphinx failed), pocketsphinx on a transcript that does not fit the
# audio, or the proportional aligner. Training counts them in results.json; `cmbert evaluate` prints them.
WORD_TIMINGS = ("given", "aligned", "spread", "mismatched", "proportional")
# Below this the audio cannot hold its words (fast speech is ~0.15 s a word): a cut or wrong file, not speech.
MIN_SECONDS_PER_WORD = 0.05
# A loudest frame below this (dB re full scale) is silence or a dead microphone: no prosody to read.
SILENCE_DBFS = -60.0
# YIN's absolute threshold: the first dip of the normalised difference below it is the period (de Cheveigne and
# Kawahara 2002; librosa's `trough_threshold`).
YIN_THRESHOLD = 0.1
# A voiced frame's f0 lies within this many octaves of the utterance's median voiced f0: fricatives and bursts
# that pass the periodicity test read as 370-500 Hz on real speech, far above a speaker's range.
F0_OCTAVES_FROM_MEDIAN = 1.0
# A word's pitch needs this many voiced frames (30 ms, a few periods; the real-voice references use the same rule):
# in a whisper, stray frames of noise pass the voicing test; they gave 6 of 9 words an f0 far below the speaker's
# with one frame enough, 3 of 9 with three.
MIN_VOICED_FRAMES = 3


def _voiced(values):
    return values[~np.isnan(values)]  # only f0 has NaN, at unvoiced frames


def _f0_level(f0):
    voiced = _voiced(f0)
    return float(np.median(voiced)) if voiced.size >= MIN_VOICED_FRAMES else 0.0


def _f0_range(f0):
    voiced = _voiced(f0)
    if voiced.size < MIN_VOICED_FRAMES:
        return 0.0
    low, high = np.percentile(voiced, [10, 90])
    return float(12 * np.log2(high / low))


# The one registry of word features: name -> (the frame column it reads, how a word's frames become one value).
# Pool functions get the word's frames of that column and its span; adding a feature is one entry.
FEATURES = {
    "f0": ("f0", lambda values, span: _f0_level(values)),
    "f0_range": ("f0", lambda values, span: _f0_range(values)),
    "voiced": ("voiced", lambda values, span: float(values.mean())),
    "energy": ("energy", lambda values, span: float(values.mean())),
    "energy_peak": ("energy", lambda values, span: float(values.max())),
    "f0_rel": ("f0_rel", lambda values, span: _f0_level(values)),
    "energy_peak_rel": ("energy_rel", lambda values, span: float(values.max())),
    "duration": (None, lambda values, span: span[1] - span[0]),
    **{f"mfcc{k}": (f"mfcc{k}", lambda values, span: float(values.mean())) for k in range(N_MELS)},
}
DEFAULT_FEATURES = (
    "f0", "f0_rel", "f0_range", "voiced", "energy", "energy_peak", "energy_peak_rel", "duration",
    "mfcc1", "mfcc2", "mfcc3", "mfcc4",
)  # fmt: skip


class CMBertFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns a waveform plus its words into one acoustic vector per word, as the original CM-BERT pipeline did with
    COVAREP features averaged over P2FA word timings.

    Frames are taken every `hop_length` samples (10 ms at 16 kHz, COVAREP's rate). Frame features, averaged over
    every frame whose centre lies in the word's span `[start, end)` (a span too short to hold a frame centre uses
    the frame nearest to its midpoint):

    - `"f0"`: fundamental frequency in Hz from YIN (de Cheveigne and Kawahara 2002), the median over the word's
      *voiced* frames (robust to a stray frame, as a mean is not), 0 with fewer than 3 (`MIN_VOICED_FRAMES`).
    - `"voiced"`: the word's fraction of voiced frames. YIN gives a period for every frame, so voicing is decided
      apart from it: a frame is voiced when the normalised autocorrelation of the signal at YIN's period is at least
      `voicing_threshold` (Praat's autocorrelation voicing rule; periodic speech is near 1, noise near 0), the
      frame is no more than `silence_threshold_db` below the utterance's loudest frame, and its f0 lies within an
      octave of the utterance's median voiced f0 (fricatives and bursts read as 370-500 Hz on real speech).
    - `"energy"`: RMS energy in dB relative to full scale (floor -100 dB).
    - `"mfcc0"` ... `"mfcc39"`: the K-th MFCC (0-based as in librosa, whose defaults these follow, so `mfcc0`
      tracks overall log energy) from a 40-band Slaney mel filter bank over 25 ms Hann windows.

    Word features, the cues of lexical and emphatic stress (longer, higher and wider in pitch, louder):

    - `"duration"`: the word's span in seconds.
    - `"f0_range"`: the spread of its voiced f0, 90th over 10th percentile in semitones (robust to YIN's octave
      slips), 0 with fewer than 3 voiced frames.
    - `"energy_peak"`: its loudest frame's energy in dB.

    The same cues relative to the utterance, so that they read the same for a low and a high voice and for a quiet
    and a loud recording (a word is stressed against its neighbours, and a recording's gain and a speaker's pitch
    say nothing about delivery):

    - `"f0_rel"`: its f0 (as `"f0"`) in semitones above the utterance's median voiced f0, 0 when it has none.
    - `"energy_peak_rel"`: its loudest frame's energy in dB below the utterance's loudest frame (0 for that word).

    Words without timings are aligned by `aligner`: `"pocketsphinx"` (forced alignment, `alignment_cmbert.py`)
    or `"proportional"` (`alignment_cmbert.spread_words`: the span from the first to the last non-silent frame
    split in proportion to the words' character lengths; ignores pauses and speaking rate). An utterance
    pocketsphinx cannot align is an error, except in training data extraction (`spread_unaligned=True`), where it
    is spread proportionally and counted.

    Args:
        features (`list[str]`, *optional*, defaults to `DEFAULT_FEATURES`):
            Names of the per-word features, in output order; `feature_size` is their number. The default, f0 (level,
            level relative to the utterance, range), voicing, energy (mean, peak, peak relative to the utterance),
            duration and `mfcc1`-`mfcc4` (spectral tilt and shape, COVAREP's spectral columns' role), is 12 wide:
            prosody first, few spectral columns, because these carry the word's identity more than its delivery
            and the corpora are small.
        sampling_rate (`int`, *optional*, defaults to 16000 (`alignment_cmbert.SAMPLING_RATE`)):
            Rate in Hz at which features are computed; other inputs are resampled to it.
        hop_length (`int`, *optional*, defaults to 160):
            Samples between frames.
        f0_min (`float`, *optional*, defaults to 50.0):
            Lowest f0 searched, in Hz.
        f0_max (`float`, *optional*, defaults to 500.0):
            Highest f0 searched, in Hz.
        voicing_threshold (`float`, *optional*, defaults to 0.45):
            Lowest normalised autocorrelation at the pitch period of a voiced frame (Praat's default).
        silence_threshold_db (`float`, *optional*, defaults to 40.0):
            Frames quieter than the loudest frame by more than this are silence: never voiced, and for the
            proportional aligner the leading and trailing silence.
        aligner (`str`, *optional*, defaults to `"pocketsphinx"`):
            How words without timings get their spans: `"pocketsphinx"` or `"proportional"`.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to standardise features with `feature_mean` and `feature_std`; calls refuse to run until
            [`~CMBertFeatureExtractor.fit_normalization`] has set them (or `do_normalize=False` is passed).
        feature_mean (`list[float]`, *optional*):
            Per-feature mean, set by [`~CMBertFeatureExtractor.fit_normalization`].
        feature_std (`list[float]`, *optional*):
            Per-feature standard deviation, set by [`~CMBertFeatureExtractor.fit_normalization`].
        padding_value (`float`, *optional*, defaults to 0.0):
            Value used by [`~SequenceFeatureExtractor.pad`].
    """

    model_input_names = ["word_features"]

    def __init__(
        self,
        features=DEFAULT_FEATURES,
        sampling_rate=SAMPLING_RATE,
        hop_length=160,
        f0_min=50.0,
        f0_max=500.0,
        voicing_threshold=0.45,
        silence_threshold_db=40.0,
        aligner="pocketsphinx",
        do_normalize=True,
        feature_mean=None,
        feature_std=None,
        padding_value=0.0,
        **kwargs,
    ):
        features = list(features)
        unknown = [name for name in features if name not in FEATURES]
        if unknown:
            raise ValueError(
                f"Unknown feature name(s) {unknown}; allowed: {[name for name in FEATURES if 'mfcc' not in name]}, "
                "'mfcc0'..'mfcc39'."
            )
        if not features:
            raise ValueError("`features` must name at least one feature.")
        # `feature_size` comes back from preprocessor_config.json; it must agree with `features`.
        feature_size = kwargs.pop("feature_size", len(features))
        if feature_size != len(features):
            raise ValueError(f"feature_size={feature_size} does not match the {len(features)} features {features}.")
        if not 0 < f0_min < f0_max:
            raise ValueError(f"Need 0 < f0_min < f0_max, got f0_min={f0_min}, f0_max={f0_max}.")
        if aligner not in ALIGNERS:
            raise ValueError(f"`aligner` must be one of {ALIGNERS}, got {aligner!r}.")
        for name, stats in (("feature_mean", feature_mean), ("feature_std", feature_std)):
            if stats is not None and len(stats) != len(features):
                raise ValueError(f"{name} has {len(stats)} values but there are {len(features)} features.")
        super().__init__(
            feature_size=len(features), sampling_rate=sampling_rate, padding_value=padding_value, **kwargs
        )
        self.features = features
        self.hop_length = hop_length
        self.f0_min = float(f0_min)
        self.f0_max = float(f0_max)
        self.voicing_threshold = float(voicing_threshold)
        self.silence_threshold_db = float(silence_threshold_db)
        self.aligner = aligner
        self.do_normalize = do_normalize
        # Plain lists so that preprocessor_config.json holds them as JSON lists.
        self.feature_mean = None if feature_mean is None else [float(v) for v in feature_mean]
        self.feature_std = None if feature_std is None else [float(v) for v in feature_std]

    @property
    def is_fitted(self) -> bool:
        """Whether normalisation statistics are set."""
        return self.feature_mean is not None

    def extraction_settings(self) -> dict:
        """The settings that decide the unnormalised word features (all but the normalisation)."""
        settings = self.to_dict()
        for key in ("do_normalize", "feature_mean", "feature_std"):
            settings.pop(key)
        return settings

    def check_feature_size(self, expected: int):
        """
        Raises a `ValueError` when this extractor's width differs from the model's.

        Args:
            expected (`int`):
                The model config's `audio_feature_size`.
        """
        if self.feature_size != expected:
            raise ValueError(
                f"The feature extractor produces {self.feature_size} features per word ({self.features}) but the "
                f"model expects audio_feature_size={expected}."
            )

    def __call__(
        self, raw_audio, word_timings=None, words=None, sampling_rate=None, do_normalize=None, check_transcript=True
    ) -> BatchFeature:
        """
        Extracts one acoustic vector per word.

        Args:
            raw_audio (`np.ndarray`, `str`, `os.PathLike`, `dict`, or a list of these):
                A mono 1-D waveform, a path to an audio file soundfile can read (WAV, FLAC, ...; channels are
                averaged), or a `datasets.Audio` dict (`{"array", "sampling_rate"}` or `{"path", "bytes"}`).
                A list is a batch.
            word_timings (`list[tuple[str, float, float]]`, or a list of these for a batch, *optional*):
                `(word, start_s, end_s)` per word, e.g. from a forced aligner. Spans may overlap and leave gaps.
            words (`list[str]`, or a list of these for a batch, *optional*):
                The words, when no timings exist; `aligner` gives them spans.
            sampling_rate (`int`, *optional*):
                Rate of waveform inputs, required for them (a waveform without it is refused). Files carry their own.
            do_normalize (`bool`, *optional*):
                Overrides `self.do_normalize` for this call.
            check_transcript (`bool`, *optional*, defaults to `True`):
                With `words`, refuse a transcript that does not fit its audio (`alignment_cmbert.align_words`);
                `False` takes the aligned spans as they are, for a transcript known to be right.

        Returns:
            [`BatchFeature`]: with `"word_features"`: a float32 `np.ndarray` of shape `[n_words, feature_size]` for a
            single input, or a list of such arrays for a batch (one per input, not padded; `self.pad` pads them).
        """
        if (word_timings is None) == (words is None):
            raise ValueError("Pass exactly one of `word_timings` or `words`.")
        annotations = word_timings if words is None else words
        batched = isinstance(raw_audio, (list, tuple))
        if not batched:
            raw_audio, annotations = [raw_audio], [annotations]
        elif len(raw_audio) != len(annotations):
            raise ValueError(f"Got {len(raw_audio)} audio inputs but {len(annotations)} word lists/timings.")
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        if do_normalize and not self.is_fitted:
            raise ValueError(
                "This feature extractor has no normalisation statistics (feature_mean/feature_std): fit them with "
                "`fit_normalization` on the training set's word features, or pass do_normalize=False."
            )
        outputs = []
        for i, (audio, annotation) in enumerate(zip(raw_audio, annotations, strict=True)):
            # A file is named by its path (in `_load`); only a bare waveform of a batch by its place.
            name = f"waveform {i}" if batched and not _names_a_file(audio) else None
            features = self.word_features(
                audio, annotation, sampling_rate, name=name, check_transcript=check_transcript
            )
            outputs.append(self.normalize(features) if do_normalize else features.astype(np.float32))
        return BatchFeature({"word_features": outputs if batched else outputs[0]})

    def word_features(
        self, audio, annotation, sampling_rate=None, name=None, spread_unaligned=False, return_timing=False,
        check_transcript=True,
    ):  # fmt: skip
        """
        Unnormalised word features of one utterance: the step shared by `__call__` (pipeline, CLI) and
        [`cmbert_hf.featurize.extract_word_features`] (training data).

        Args:
            audio: one input as `raw_audio` of `__call__`.
            annotation: its word timings `(word, start_s, end_s)` or its words (strings).
            sampling_rate (`int`, *optional*): rate of a bare waveform.
            name (`str`, *optional*): how errors name this input; defaults to its path or "waveform".
            spread_unaligned (`bool`, *optional*, defaults to `False`):
                For training data, where one bad utterance must not stop the run: when pocketsphinx cannot align
                the words, spread them over the voiced span, and when the aligned transcript does not fit the audio
                (`alignment_cmbert.TranscriptMismatchError`) keep the aligned spans, each with a warning naming the
                input, instead of raising.
            check_transcript (`bool`, *optional*, defaults to `True`):
                Whether pocketsphinx's spans are checked against the audio (as in `__call__`).
            return_timing (`bool`, *optional*, defaults to `False`):
                Also return where the word spans came from: `"given"`, `"aligned"` (pocketsphinx), `"spread"`
                (pocketsphinx failed), `"mismatched"` (aligned, but the transcript does not fit the audio: count or
                drop such rows) or `"proportional"` (the proportional aligner).

        Returns:
            `np.ndarray`: float64 `[n_words, feature_size]`; with `return_timing`, a tuple `(features, timing)`.
        """
        waveform, name = self._load(audio, sampling_rate, name)
        if not annotation:
            raise ValueError(f"The audio {name} comes with no words: there is nothing to take features for.")
        timed = not isinstance(annotation[0], str)
        if not timed and any(not isinstance(word, str) for word in annotation):
            raise ValueError(f"{name}: words must be strings, got {annotation!r}.")
        duration = len(waveform) / self.sampling_rate
        if duration < MIN_SECONDS_PER_WORD * len(annotation):
            raise ValueError(
                f"The audio {name} lasts {duration:.3f} s, too short for its {len(annotation)} word(s) (at least "
                f"{MIN_SECONDS_PER_WORD} s per word): is it cut or the wrong file?"
            )
        columns, energy = self._frame_features(waveform)
        if energy.max() < SILENCE_DBFS:
            raise ValueError(
                f"The audio {name} is silent (loudest frame {energy.max():.1f} dB re full scale, below "
                f"{SILENCE_DBFS} dB): there is no speech to take features from."
            )
        frame_times = np.arange(len(energy)) * self.hop_length / self.sampling_rate
        if timed:
            timings, timing = self._check_timings(annotation, duration, name), "given"
        elif self.aligner == "pocketsphinx":
            timings, timing = self._align(waveform, annotation, name, spread_unaligned, check_transcript)
        else:
            timings, timing = self._spread(waveform, annotation), "proportional"
        out = np.stack([self._pool(columns, frame_times, start, end) for _, start, end in timings])
        bad = ~np.isfinite(out)
        if bad.any():
            word, feature = np.argwhere(bad)[0]
            raise ValueError(
                f"The audio {name}: feature {self.features[feature]!r} of word {timings[word][0]!r} is not finite."
            )
        return (out, timing) if return_timing else out

    def fit_normalization(self, word_features):
        """
        Sets `feature_mean` and `feature_std` from the words of a training set (statistics over all words pooled).

        Args:
            word_features (iterable):
                Unnormalised word-feature arrays `[n_words, feature_size]` (or nested lists), one per utterance:
                the `"word_features"` column of [`cmbert_hf.featurize.extract_word_features`] on the train split.

        Returns:
            `CMBertFeatureExtractor`: `self`, fitted.
        """
        rows = []
        for i, item in enumerate(word_features):
            item = np.asarray(item, dtype=np.float64)
            if item.ndim != 2 or item.shape[1] != self.feature_size:
                raise ValueError(f"Utterance {i}: expected word features [n_words, {self.feature_size}], got {item.shape}.")
            rows.append(item)
        stacked = np.concatenate(rows) if rows else np.zeros((0, self.feature_size))
        if len(stacked) == 0:
            raise ValueError("fit_normalization got no words.")
        if not np.isfinite(stacked).all():
            raise ValueError("fit_normalization got NaN or inf word features.")
        std = stacked.std(axis=0)
        # A constant feature (e.g. voicing on a voiced-only corpus) keeps its scale instead of dividing by zero.
        std[std == 0] = 1.0
        self.feature_mean = stacked.mean(axis=0).tolist()
        self.feature_std = std.tolist()
        return self

    def normalize(self, word_features) -> np.ndarray:
        """Standardises unnormalised word features `[n_words, feature_size]` with the fitted statistics (float32)."""
        if not self.is_fitted:
            raise ValueError("This feature extractor has no normalisation statistics: call `fit_normalization`.")
        word_features = np.asarray(word_features, dtype=np.float64)
        return ((word_features - np.asarray(self.feature_mean)) / np.asarray(self.feature_std)).astype(np.float32)

    def _load(self, audio, sampling_rate, name):
        """Returns a finite, non-empty float32 waveform at `self.sampling_rate` and the name errors give it."""
        if isinstance(audio, dict) and audio.get("array") is not None:
            name = name or (repr(audio["path"]) if audio.get("path") else None)
            audio, sampling_rate = audio["array"], audio.get("sampling_rate")
        elif isinstance(audio, dict):
            audio = io.BytesIO(audio["bytes"]) if audio.get("bytes") is not None else audio.get("path")
            if audio is None:
                raise ValueError(f"{name or 'audio'}: an audio dict needs 'array', 'bytes' or 'path'.")
        if isinstance(audio, (str, os.PathLike, io.BytesIO)):
            name = name or (repr(os.fspath(audio)) if not isinstance(audio, io.BytesIO) else "bytes")
            try:
                waveform, sampling_rate = sf.read(audio, dtype="float32", always_2d=True)
            except (sf.SoundFileError, OSError, RuntimeError) as err:
                raise ValueError(f"Cannot read audio file {name}: {err}") from err
            waveform = waveform.mean(axis=1)
        else:
            name = name or "waveform"
            waveform = np.asarray(audio, dtype=np.float32)
            if waveform.ndim != 1:
                raise ValueError(f"Expected a mono 1-D waveform for {name}, got shape {waveform.shape}.")
            if sampling_rate is None:  # a guessed rate would give wrong durations and pitch without a word
                raise ValueError(
                    f"{name} is a bare waveform without its sampling rate: pass `sampling_rate` (the extractor works "
                    f"at {self.sampling_rate} Hz and resamples), or pass the audio file, which carries its rate."
                )
        if waveform.size == 0:
            raise ValueError(f"The audio {name} is empty.")
        if not np.isfinite(waveform).all():
            raise ValueError(f"The audio {name} contains NaN or inf samples.")
        return resample(waveform, sampling_rate, self.sampling_rate).astype(np.float32), name

    def _frame_features(self, waveform):
        """Returns the frame columns by name (f0 NaN at unvoiced frames), all on one 10 ms grid, and energy in dB."""
        sr, hop = self.sampling_rate, self.hop_length
        # 25 ms windows for spectral features, as in COVAREP and most speech front ends.
        n_fft = 2 ** math.ceil(math.log2(0.025 * sr))
        energy = energy_db(waveform, n_fft, hop)
        needed = {FEATURES[name][0] for name in self.features}
        columns = {"energy": energy, "energy_rel": energy - energy.max()}
        if {"f0", "f0_rel", "voiced"} & needed:
            columns["f0"], columns["voiced"] = self._pitch(waveform, energy)
            level = np.nanmedian(columns["f0"]) if columns["voiced"].any() else np.nan
            columns["f0_rel"] = 12 * np.log2(columns["f0"] / level)
        n_mfcc = 1 + max((int(name[4:]) for name in needed if name and name.startswith("mfcc")), default=-1)
        if n_mfcc:
            mfcc = self._mfcc(frames(waveform, n_fft, hop), n_mfcc)
            columns.update({f"mfcc{k}": mfcc[:, k] for k in range(n_mfcc)})
        # Every column comes from `frames`, so frame i of each is centred at i * hop / sr.
        assert all(len(column) == len(energy) for column in columns.values())
        return columns, energy

    def _pitch(self, waveform, energy):
        """YIN's f0 (NaN where unvoiced) and the voicing decision (1/0) per frame."""
        sr = self.sampling_rate
        # The pitch window must hold two periods of f0_min; the difference function compares its first half with
        # the same number of samples one lag later.
        frame_length = 2 ** math.ceil(math.log2(2 * sr / self.f0_min + 2))
        width = frame_length // 2
        x = frames(waveform, frame_length, self.hop_length).astype(np.float64)  # [n_frames, frame_length]
        min_period = max(int(sr // self.f0_max), 1)
        max_period = min(math.ceil(sr / self.f0_min), frame_length - width - 1)
        lags = np.arange(max_period + 1)
        # r[tau] = sum_{j < width} x[j] x[j + tau], by FFT (no wrap: j + tau < frame_length).
        head = np.fft.rfft(x[:, :width], n=frame_length)
        r = np.fft.irfft(np.conj(head) * np.fft.rfft(x, n=frame_length), n=frame_length)[:, lags]
        power = np.concatenate([np.zeros((len(x), 1)), np.cumsum(x**2, axis=1)], axis=1)
        e_head = power[:, width][:, None]  # energy of x[:width]
        e_lag = power[:, lags + width] - power[:, lags]  # energy of x[tau : tau + width]
        difference = np.maximum(e_head + e_lag - 2 * r, 0.0)
        cumulative = np.cumsum(difference[:, 1:], axis=1)
        cmnd = np.ones_like(difference)  # the cumulative mean normalised difference
        cmnd[:, 1:] = difference[:, 1:] * lags[1:] / np.maximum(cumulative, 1e-12)
        searched = cmnd[:, min_period:]
        trough = np.zeros_like(searched, dtype=bool)
        trough[:, 1:-1] = (searched[:, 1:-1] < searched[:, :-2]) & (searched[:, 1:-1] <= searched[:, 2:])
        trough &= searched < YIN_THRESHOLD
        best = np.where(trough.any(axis=1), trough.argmax(axis=1), searched.argmin(axis=1))
        # Parabolic interpolation of the dip between its neighbours.
        inner = np.clip(best, 1, searched.shape[1] - 2)
        left, mid, right = (np.take_along_axis(searched, (inner + k)[:, None], axis=1)[:, 0] for k in (-1, 0, 1))
        curvature = left - 2 * mid + right
        shift = np.where((best == inner) & (np.abs(curvature) > 1e-12), (left - right) / (2 * curvature + 1e-300), 0.0)
        period = min_period + best + np.clip(shift, -1, 1)
        f0 = sr / period
        # Normalised autocorrelation at the (rounded) period: Praat's voicing strength.
        lag = min_period + best
        r_lag = np.take_along_axis(r, lag[:, None], axis=1)[:, 0]
        e_at = np.take_along_axis(e_lag, lag[:, None], axis=1)[:, 0]
        periodicity = r_lag / np.maximum(np.sqrt(e_head[:, 0] * e_at), 1e-12)
        voiced = (periodicity >= self.voicing_threshold) & (energy >= energy.max() - self.silence_threshold_db)
        if voiced.any():
            distance = np.abs(np.log2(f0 / np.median(f0[voiced])))
            voiced &= distance <= F0_OCTAVES_FROM_MEDIAN
        return np.where(voiced, f0, np.nan), voiced.astype(np.float64)

    def _mfcc(self, x, n_mfcc):
        """MFCCs `[n_frames, n_mfcc]` of frames `[n_frames, n_fft]`, as `librosa.feature.mfcc` computes them by default:
        power spectrum of a periodic Hann window of 25 ms centred in n_fft, Slaney mel filter bank, dB with an
        80 dB floor below the utterance's peak, orthonormal DCT-II."""
        n_fft, win_length = x.shape[1], int(0.025 * self.sampling_rate)
        window = np.zeros(n_fft)
        offset = (n_fft - win_length) // 2
        window[offset : offset + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
        spectrum = np.abs(np.fft.rfft(x * window, axis=1)) ** 2
        mel_db = 10 * np.log10(np.maximum(spectrum @ _mel_filters(self.sampling_rate, n_fft).T, 1e-10))
        mel_db = np.maximum(mel_db, mel_db.max() - 80.0)
        n = np.arange(N_MELS)
        dct = np.cos(np.pi * np.arange(n_mfcc)[:, None] * (2 * n + 1) / (2 * N_MELS)) * np.sqrt(2 / N_MELS)
        dct[0] /= np.sqrt(2)
        return mel_db @ dct.T

    def _pool(self, columns, frame_times, start, end):
        """One word's vector from the frames whose centre lies in `[start, end)`."""
        inside = np.flatnonzero((frame_times >= start) & (frame_times < end))
        if inside.size == 0:
            inside = [np.argmin(np.abs(frame_times - (start + end) / 2))]
        values = []
        for name in self.features:
            column, pool = FEATURES[name]
            values.append(pool(None if column is None else columns[column][inside], (start, end)))
        return np.array(values, dtype=np.float64)

    def _check_timings(self, word_timings, duration, name):
        # Aligners round to 10 ms, so an end up to one hop past the last sample is still accepted.
        tolerance = self.hop_length / self.sampling_rate
        timings = []
        for entry in word_timings:
            if isinstance(entry, dict):
                entry = (entry.get("word"), entry.get("start"), entry.get("end"))
            if isinstance(entry, str) or len(entry) != 3:
                raise ValueError(f"{name}: word timings must be (word, start_s, end_s) tuples, got {entry!r}.")
            word, start, end = entry
            if not (np.isfinite(start) and np.isfinite(end)) or end <= start:
                raise ValueError(f"{name}: word {word!r} has an empty or invalid span: start={start}, end={end}.")
            if start < 0 or end > duration + tolerance:
                raise ValueError(
                    f"{name}: word {word!r} span [{start}, {end}] s lies outside the audio duration of "
                    f"{duration:.3f} s."
                )
            timings.append((word, float(start), float(end)))
        return timings

    def _align(self, waveform, words, name, spread_unaligned, check_transcript):
        duration = len(waveform) / self.sampling_rate
        try:
            timings = align_words(waveform, words, sampling_rate=self.sampling_rate, check_transcript=check_transcript)
            timing = "aligned"
        except AlignmentError as err:
            if not spread_unaligned:
                # A transcript the check refuses may still be right (real speech: 2 of 20 true ones): say how to pass.
                override = (
                    ", or, if it is right, turn the check off (check_transcript=False; cmbert predict "
                    "--no-transcript-check)" if isinstance(err, TranscriptMismatchError) else ""
                )
                raise ValueError(
                    f"The audio {name}: {err}; check its transcript, or give word timings{override}"
                ) from err
            if not isinstance(err, TranscriptMismatchError):
                logger.warning(f"The audio {name}: {err}; its words are spread over its voiced span instead.")
                return self._spread(waveform, words), "spread"
            logger.warning(f"The audio {name}: {err}; counted as mismatched.")
            timings, timing = err.timings, "mismatched"
        return self._check_timings(timings, duration, name), timing

    def _spread(self, waveform, words):
        return spread_words(waveform, words, self.sampling_rate, self.silence_threshold_db)


def _names_a_file(audio) -> bool:
    return isinstance(audio, (str, os.PathLike)) or (isinstance(audio, dict) and bool(audio.get("path")))


def _mel_filters(sr, n_fft):
    """The Slaney-style mel filter bank `[N_MELS, n_fft // 2 + 1]` from 0 Hz to sr / 2 (librosa.filters.mel's default)."""

    def to_mel(hz):  # linear below 1 kHz, logarithmic above
        return np.where(hz < 1000, hz * 3 / 200, 15 + np.log(np.maximum(hz, 1e-9) / 1000) / (np.log(6.4) / 27))

    def to_hz(mel):
        return np.where(mel < 15, mel * 200 / 3, 1000 * np.exp((mel - 15) * np.log(6.4) / 27))

    edges = to_hz(np.linspace(to_mel(0.0), to_mel(sr / 2), N_MELS + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / sr)
    rising = (bins[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / np.diff(edges)[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per filter


__all__ = ["CMBertFeatureExtractor", "WORD_TIMINGS"]
