"""Raw audio -> word-level acoustic features for CM-BERT.

CM-BERT (Yang et al., "CM-BERT: Cross-Modal BERT for Text-Audio Sentiment Analysis", ACM MM 2020) feeds one
acoustic vector per word: COVAREP frame features (f0, voicing, spectral parameters) averaged over each word's
P2FA forced-alignment span. This module rebuilds that pipeline with librosa so that new audio can be scored.

It imports only numpy, librosa, soundfile and transformers, so it can ship as remote code beside the processor.
"""

import math
import os

import librosa
import numpy as np
import soundfile as sf
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging


logger = logging.get_logger(__name__)

# 40 mel bands is the usual MFCC front end for 16 kHz speech; more bands leave empty filters at n_fft=512.
N_MELS = 40
FRAME_FEATURES = ("f0", "voiced", "energy") + tuple(f"mfcc{k}" for k in range(N_MELS))


class CMBertFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns a waveform plus its words into one acoustic vector per word, as the original CM-BERT pipeline did with
    COVAREP features averaged over P2FA word timings.

    Frames are taken every `hop_length` samples (10 ms at 16 kHz, COVAREP's rate). Per frame:

    - `"f0"`: fundamental frequency in Hz from `librosa.pyin`; a word's value is the mean over its *voiced* frames,
      0 when it has none.
    - `"voiced"`: pyin's voiced/unvoiced decision (1/0); a word's value is its fraction of voiced frames.
    - `"energy"`: RMS energy in dB relative to full scale (floor -100 dB).
    - `"mfcc0"` ... `"mfcc39"`: the K-th MFCC (0-based as in librosa, so `mfcc0` tracks overall log energy) from a
      40-band mel filter bank over 25 ms windows.

    All features except f0 are averaged over every frame whose centre lies in the word's span `[start, end)`; a span
    too short to hold a frame centre uses the frame nearest to its midpoint.

    Args:
        features (`list[str]`, *optional*, defaults to `["f0", "voiced", "energy", "mfcc1", "mfcc2"]`):
            Names of the per-word features, in output order; `feature_size` is their number. The default width 5
            matches CMU-MOSI's 5 COVAREP columns and `CMBertConfig.audio_feature_size`.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Rate in Hz at which features are computed; other inputs are resampled to it.
        hop_length (`int`, *optional*, defaults to 160):
            Samples between frames.
        f0_min (`float`, *optional*, defaults to 50.0):
            Lowest f0 searched, in Hz.
        f0_max (`float`, *optional*, defaults to 500.0):
            Highest f0 searched, in Hz.
        silence_threshold_db (`float`, *optional*, defaults to 40.0):
            Without word timings, frames quieter than the loudest frame by more than this are leading or trailing
            silence.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to standardise features with `feature_mean` and `feature_std` (only when they are set).
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
        features=("f0", "voiced", "energy", "mfcc1", "mfcc2"),
        sampling_rate=16000,
        hop_length=160,
        f0_min=50.0,
        f0_max=500.0,
        silence_threshold_db=40.0,
        do_normalize=True,
        feature_mean=None,
        feature_std=None,
        padding_value=0.0,
        **kwargs,
    ):
        features = list(features)
        unknown = [name for name in features if name not in FRAME_FEATURES]
        if unknown:
            raise ValueError(
                f"Unknown feature name(s) {unknown}; allowed: 'f0', 'voiced', 'energy', 'mfcc0'..'mfcc39'."
            )
        if not features:
            raise ValueError("`features` must name at least one feature.")
        # `feature_size` comes back from preprocessor_config.json; it must agree with `features`.
        feature_size = kwargs.pop("feature_size", len(features))
        if feature_size != len(features):
            raise ValueError(f"feature_size={feature_size} does not match the {len(features)} features {features}.")
        if not 0 < f0_min < f0_max:
            raise ValueError(f"Need 0 < f0_min < f0_max, got f0_min={f0_min}, f0_max={f0_max}.")
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
        self.silence_threshold_db = float(silence_threshold_db)
        self.do_normalize = do_normalize
        # Plain lists so that preprocessor_config.json holds them as JSON lists.
        self.feature_mean = None if feature_mean is None else [float(v) for v in feature_mean]
        self.feature_std = None if feature_std is None else [float(v) for v in feature_std]

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
        self, raw_audio, word_timings=None, words=None, sampling_rate=None, do_normalize=None
    ) -> BatchFeature:
        """
        Extracts one acoustic vector per word.

        Args:
            raw_audio (`np.ndarray`, `str`, `os.PathLike`, or a list of these):
                A mono 1-D waveform or a path to an audio file soundfile can read (WAV, FLAC, ...; channels are
                averaged). A list is a batch.
            word_timings (`list[tuple[str, float, float]]`, or a list of these for a batch, *optional*):
                `(word, start_s, end_s)` per word, e.g. from a forced aligner. Spans may overlap and leave gaps.
            words (`list[str]`, or a list of these for a batch, *optional*):
                The words, when no timings exist. They are spread over the span from the first to the last
                non-silent frame in proportion to their character length: an approximation that ignores pauses and
                speaking rate, so prefer `word_timings` when an aligner is available.
            sampling_rate (`int`, *optional*):
                Rate of waveform inputs; assumed to be `self.sampling_rate` when omitted. Files carry their own rate.
            do_normalize (`bool`, *optional*):
                Overrides `self.do_normalize` for this call.

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
        outputs = []
        for audio, annotation in zip(raw_audio, annotations, strict=True):
            waveform = self._load(audio, sampling_rate)
            features = self._word_features(waveform, annotation, timed=words is None)
            outputs.append(self._normalize(features) if do_normalize else features.astype(np.float32))
        return BatchFeature({"word_features": outputs if batched else outputs[0]})

    def fit_normalization(self, data, sampling_rate=None):
        """
        Sets `feature_mean` and `feature_std` from the words of a training set (statistics over all words pooled).

        Args:
            data (iterable):
                Items are either unnormalised word-feature arrays `[n_words, feature_size]` or pairs
                `(raw_audio, word_timings_or_words)` as accepted by `__call__`.
            sampling_rate (`int`, *optional*):
                Rate of waveform inputs in the pairs.

        Returns:
            `CMBertFeatureExtractor`: `self`, fitted.
        """
        rows = []
        for item in data:
            if isinstance(item, np.ndarray):
                if item.ndim != 2 or item.shape[1] != self.feature_size:
                    raise ValueError(f"Expected word features [n_words, {self.feature_size}], got {item.shape}.")
                rows.append(item.astype(np.float64))
            else:
                audio, annotation = item
                timed = bool(annotation) and not isinstance(annotation[0], str)
                rows.append(self._word_features(self._load(audio, sampling_rate), annotation, timed))
        stacked = np.concatenate(rows) if rows else np.zeros((0, self.feature_size))
        if len(stacked) == 0:
            raise ValueError("fit_normalization got no words.")
        std = stacked.std(axis=0)
        # A constant feature (e.g. voicing on a voiced-only corpus) keeps its scale instead of dividing by zero.
        std[std == 0] = 1.0
        self.feature_mean = stacked.mean(axis=0).tolist()
        self.feature_std = std.tolist()
        return self

    def _normalize(self, features):
        if self.feature_mean is None:
            return features.astype(np.float32)
        return ((features - np.asarray(self.feature_mean)) / np.asarray(self.feature_std)).astype(np.float32)

    def _load(self, audio, sampling_rate):
        """Returns a finite, non-empty float32 waveform at `self.sampling_rate`."""
        if isinstance(audio, (str, os.PathLike)):
            try:
                waveform, sampling_rate = sf.read(audio, dtype="float32", always_2d=True)
            except (sf.SoundFileError, OSError) as err:
                raise ValueError(f"Cannot read audio file {os.fspath(audio)!r}: {err}") from err
            waveform = waveform.mean(axis=1)
            name = repr(os.fspath(audio))
        else:
            waveform = np.asarray(audio, dtype=np.float32)
            if waveform.ndim != 1:
                raise ValueError(f"Expected a mono 1-D waveform, got shape {waveform.shape}.")
            if sampling_rate is None:
                logger.warning(f"No sampling_rate given; assuming {self.sampling_rate} Hz.")
                sampling_rate = self.sampling_rate
            name = "waveform"
        if waveform.size == 0:
            raise ValueError(f"The audio {name} is empty.")
        if not np.isfinite(waveform).all():
            raise ValueError(f"The audio {name} contains NaN or inf samples.")
        if sampling_rate != self.sampling_rate:
            waveform = librosa.resample(waveform, orig_sr=sampling_rate, target_sr=self.sampling_rate)
        return waveform

    def _frame_features(self, waveform):
        """Returns the frame matrix `[n_frames, feature_size]` (f0 NaN at unvoiced frames) and energy in dB."""
        sr, hop = self.sampling_rate, self.hop_length
        # 25 ms windows for spectral features, as in COVAREP and most speech front ends.
        n_fft = 2 ** math.ceil(math.log2(0.025 * sr))
        energy = librosa.amplitude_to_db(
            librosa.feature.rms(y=waveform, frame_length=n_fft, hop_length=hop)[0], ref=1.0, amin=1e-5, top_db=None
        )
        columns = {"energy": energy}
        if "f0" in self.features or "voiced" in self.features:
            # The pitch window must hold two periods of f0_min. A 0.2-semitone grid (pyin's default is 0.1) makes
            # pyin about 3x faster at a precision far below what word averages need.
            f0, voiced, _ = librosa.pyin(
                waveform,
                fmin=self.f0_min,
                fmax=self.f0_max,
                sr=sr,
                frame_length=2 ** math.ceil(math.log2(2 * sr / self.f0_min + 2)),
                hop_length=hop,
                resolution=0.2,
            )
            columns.update(f0=f0, voiced=voiced.astype(np.float64))
        n_mfcc = 1 + max((int(name[4:]) for name in self.features if name.startswith("mfcc")), default=-1)
        if n_mfcc:
            mfcc = librosa.feature.mfcc(
                y=waveform,
                sr=sr,
                n_mfcc=n_mfcc,
                n_fft=n_fft,
                win_length=int(0.025 * sr),
                hop_length=hop,
                n_mels=N_MELS,
            )
            columns.update({f"mfcc{k}": mfcc[k] for k in range(n_mfcc)})
        frames = np.stack([columns[name] for name in self.features], axis=1).astype(np.float64)
        # librosa centres every frame, so all features share frame i at time i * hop / sr.
        assert all(len(column) == len(energy) for column in columns.values())
        return frames, energy

    def _word_features(self, waveform, annotation, timed):
        """Returns float64 `[n_words, feature_size]`, unnormalised."""
        frames, energy = self._frame_features(waveform)
        duration = len(waveform) / self.sampling_rate
        frame_times = np.arange(len(frames)) * self.hop_length / self.sampling_rate
        spans = self._check_timings(annotation, duration) if timed else self._spread(annotation, energy, frame_times)
        out = np.zeros((len(spans), self.feature_size))
        for i, (start, end) in enumerate(spans):
            inside = np.flatnonzero((frame_times >= start) & (frame_times < end))
            if inside.size == 0:
                inside = [np.argmin(np.abs(frame_times - (start + end) / 2))]
            span = frames[inside]
            # NaN marks unvoiced f0 frames: average over the rest, 0 when the word has no voiced frame.
            counts = (~np.isnan(span)).sum(axis=0)
            out[i] = np.where(counts > 0, np.nansum(span, axis=0) / np.maximum(counts, 1), 0.0)
        return out

    def _check_timings(self, word_timings, duration):
        # Aligners round to 10 ms, so an end up to one hop past the last sample is still accepted.
        tolerance = self.hop_length / self.sampling_rate
        spans = []
        for entry in word_timings:
            if isinstance(entry, str) or len(entry) != 3:
                raise ValueError(f"Word timings must be (word, start_s, end_s) tuples, got {entry!r}.")
            word, start, end = entry
            if not (np.isfinite(start) and np.isfinite(end)) or end <= start:
                raise ValueError(f"Word {word!r} has an empty or invalid span: start={start}, end={end}.")
            if start < 0 or end > duration + tolerance:
                raise ValueError(
                    f"Word {word!r} span [{start}, {end}] s lies outside the audio duration of {duration:.3f} s."
                )
            spans.append((float(start), float(end)))
        return spans

    def _spread(self, words, energy, frame_times):
        """Spans covering the non-silent part of the audio, split in proportion to each word's length."""
        if any(not isinstance(word, str) for word in words):
            raise ValueError("`words` must be a list of strings.")
        loud = np.flatnonzero(energy >= energy.max() - self.silence_threshold_db)
        start, end = frame_times[loud[0]], frame_times[loud[-1]] + self.hop_length / self.sampling_rate
        lengths = np.array([max(len(word), 1) for word in words], dtype=np.float64)
        bounds = start + (end - start) * np.concatenate([[0.0], np.cumsum(lengths)]) / max(lengths.sum(), 1.0)
        return list(zip(bounds[:-1], bounds[1:], strict=True))


__all__ = ["CMBertFeatureExtractor"]
