"""CM-BERT processor: the text encoder's tokenizer plus word-to-word-piece alignment of acoustic features.

CMU-MOSI's acoustic features are one vector per *word*; BERT positions are *word-pieces*. The original
code fed the word vectors position by position, so audio drifted from text after the first split word.
Here each word's vector is repeated over all its pieces and the special tokens at both ends (`[CLS]` ... `[SEP]`,
`<s>` ... `</s>`) and padding get zero rows (spec, "Inputs"). Features already aligned to the model's positions
(`audio_level="token"`) are taken as they are.

Raw audio goes through the feature extractor: an utterance here (`__call__`), a whole data set in
`cmbert_hf.featurize` (training and `cmbert evaluate`); both run `CMBertFeatureExtractor.word_features` and
`normalize`.
"""

import numpy as np

from transformers import BatchEncoding, ProcessorMixin
from transformers.utils import logging

from .configuration_cmbert import AUDIO_FEATURE_SOURCES, MAX_LENGTH


logger = logging.get_logger(__name__)

AUDIO_LEVELS = ("word", "token")


def check_audio_given(source, has_audio: bool, text_only: bool, hint: str = "`text_only=True`") -> None:
    """
    Raises a `ValueError` for an utterance without audio given to a model trained with audio (`source` is its
    `audio_feature_source`: `"extractor"`, `"covarep"` or `"synthetic"`) unless `text_only` asks for that: such a
    model would see zero audio vectors, an input it never met in training, and score with full confidence. A model
    trained without audio (`"none"`), or whose source is not recorded (`None`), takes text alone.

    Args:
        source (`str` or `None`): the model's `audio_feature_source`.
        has_audio (`bool`): whether the utterance comes with `audio` or `audio_features`.
        text_only (`bool`): the caller asks to score the text alone.
        hint (`str`, *optional*): how the caller asks for that, for the message (`--text-only` on the command line).
    """
    if has_audio or text_only or source in ("none", None):
        return
    what = "features extracted from recordings" if source == "extractor" else f"precomputed {source!r} features"
    raise ValueError(
        f"This model was trained with audio ({what}) and the utterance has none: give its audio, or pass {hint} to "
        "score the text alone (the model then sees zero audio vectors, which it was not trained on)."
    )


class CMBertProcessor(ProcessorMixin):
    r"""
    Pairs the text encoder's tokenizer (any family's fast tokenizer) with a [`CMBertFeatureExtractor`].

    Args:
        feature_extractor ([`CMBertFeatureExtractor`]):
            Turns a waveform and word timings into one acoustic vector per word.
        tokenizer ([`PreTrainedTokenizerFast`]):
            A fast tokenizer (word alignment needs `word_ids()`).
        audio_feature_size (`int`, *optional*):
            Width of the acoustic vectors, the model's `audio_feature_size`. Defaults to the feature extractor's
            width; differs from it for models trained on precomputed features (COVAREP: 5 for MOSI, 74 for MOSEI),
            which then accept `audio_features` only.
        audio_feature_source (`str`, *optional*, defaults to `"extractor"`):
            Where the model's audio vectors came from: `"extractor"` (this feature extractor, the only source that
            accepts raw `audio`), `"covarep"` (the MOSI/MOSEI releases' precomputed features), `"synthetic"`, `"none"`
            (trained without audio) or `None` (not recorded). The model config records the same (`CMBertConfig.audio_feature_source`).
        audio_feature_names (`list[str]`, *optional*):
            The names of the audio vectors' columns; defaults to the feature extractor's `features` when the source
            is `"extractor"`, else none.
        max_length (`int`, *optional*, defaults to 50):
            Truncation length in word-pieces: the one the model was trained with (saved with the processor, so that
            `AutoProcessor`, the pipeline and `cmbert predict` apply it by default). 50 is the original recipe's.
        padding (`bool` or `str`, *optional*, defaults to `False`):
            The padding the model was trained with: `"max_length"` for models trained on fixed-length batches (the
            original recipe, whose whole-batch text scaling depends on the padding), else `False` (padded per batch).
    """

    def __init__(
        self,
        feature_extractor,
        tokenizer,
        audio_feature_size: int | None = None,
        audio_feature_source: str | None = "extractor",
        audio_feature_names: list[str] | None = None,
        max_length: int = MAX_LENGTH,
        padding: bool | str = False,
    ):
        if audio_feature_source not in (*AUDIO_FEATURE_SOURCES, None):
            raise ValueError(
                f"`audio_feature_source` must be one of {AUDIO_FEATURE_SOURCES} or None, got {audio_feature_source!r}."
            )
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"CMBertProcessor needs a fast tokenizer (aligning audio to word-pieces uses `word_ids()`), got "
                f"{type(tokenizer).__name__}: load it with `AutoTokenizer.from_pretrained(..., use_fast=True)`."
            )
        self.audio_feature_size = audio_feature_size or feature_extractor.feature_size
        self.audio_feature_source = audio_feature_source
        if audio_feature_names is None and audio_feature_source == "extractor":
            audio_feature_names = feature_extractor.features
        self.audio_feature_names = None if audio_feature_names is None else list(audio_feature_names)
        self.max_length, self.padding = max_length, padding
        super().__init__(feature_extractor, tokenizer)

    @property
    def model_input_names(self) -> list[str]:
        # What __call__ returns, text first: the Trainer's length grouping reads the first name.
        return [*self.tokenizer.model_input_names, "audio_features"]

    def __call__(
        self,
        text=None,
        audio_features=None,
        audio=None,
        sampling_rate=None,
        word_timings=None,
        audio_level: str = "word",
        is_split_into_words: bool = False,
        max_length: int | None = None,
        padding=None,
        truncation: bool = True,
        return_tensors=None,
        text_only: bool = False,
        check_transcript: bool = True,
    ) -> BatchEncoding:
        r"""
        Tokenizes `text` and aligns acoustic features to its word-pieces.

        Args:
            text (`str`, `list[str]`, or `list[list[str]]`):
                One utterance or a batch. Words are split on white space, or given as lists with
                `is_split_into_words=True`.
            audio_features (array-like `[n_words, D_a]`, `[L, D_a]` or a list of them, *optional*):
                Word-level (`audio_level="word"`) or already aligned (`audio_level="token"`) features.
            audio (waveform array, path, or a list of them, *optional*):
                Raw audio; features are extracted with the feature extractor (with `sampling_rate` and
                `word_timings`) instead of being given.
            max_length (`int`, *optional*):
                Truncation length; audio is truncated with the text. Defaults to the processor's `max_length`, the
                one the model was trained with.
            padding (*optional*):
                As for the tokenizer, defaults to the processor's `padding`; audio is padded with zero rows to the
                same length.
            return_tensors:
                As for the tokenizer.
            text_only (`bool`, *optional*, defaults to `False`):
                Encode text without audio for a processor of a model trained with audio (`audio_feature_source`
                `"extractor"`, `"covarep"` or `"synthetic"`), which otherwise refuses it.
            check_transcript (`bool`, *optional*, defaults to `True`):
                For `audio` without `word_timings`: refuse a transcript that does not fit the audio (the feature
                extractor's `check_transcript`).

        Returns:
            [`BatchEncoding`] with `input_ids`, `attention_mask`, `token_type_ids` and, when audio is given,
            `audio_features` (`[L, D_a]` per sample).
        """
        if audio_level not in AUDIO_LEVELS:
            raise ValueError(f"`audio_level` must be one of {AUDIO_LEVELS}, got {audio_level!r}.")
        batched = _is_batched(text, is_split_into_words)
        words = [_split_words(t, is_split_into_words) for t in (text if batched else [text])]
        check_audio_given(self.audio_feature_source, audio is not None or audio_features is not None, text_only)
        if audio is not None:
            if audio_features is not None:
                raise ValueError("Pass either `audio` or `audio_features`, not both.")
            self.check_raw_audio(self.audio_feature_source, self.audio_feature_names, self.audio_feature_size)
            if word_timings is None:
                annotations = {"words": words}
            else:
                annotations = {"word_timings": word_timings if batched else [word_timings]}
            audio_features = self.feature_extractor(
                audio if batched else [audio], sampling_rate=sampling_rate, check_transcript=check_transcript,
                **annotations,
            )["word_features"]  # fmt: skip
            audio_level = "word"
        elif audio_features is not None and not batched:
            audio_features = [audio_features]

        encoding = self.tokenizer(
            words,
            is_split_into_words=True,
            max_length=self.max_length if max_length is None else max_length,
            truncation=truncation,
            padding=self.padding if padding is None else padding,
        )
        for index in range(len(words)):
            _check_framing(encoding, index)
        if audio_features is not None:
            if len(audio_features) != len(words):
                raise ValueError(f"got {len(words)} texts but {len(audio_features)} audio feature arrays.")
            encoding["audio_features"] = [
                self._align(encoding, i, np.asarray(feats, dtype=np.float32), len(words[i]), audio_level)
                for i, feats in enumerate(audio_features)
            ]
        if not batched and return_tensors is None:
            # One utterance gives plain lists; with tensors it keeps the batch axis the model expects.
            encoding = BatchEncoding({key: value[0] for key, value in encoding.items()})
        return BatchEncoding(dict(encoding), tensor_type=return_tensors)

    def check_raw_audio(self, source, names, width):
        """
        Raises a `ValueError`, saying what the model takes instead, unless this feature extractor makes the model's
        audio vectors: features of the model's `source`, `names` and `width`, normalised as in training.

        Args:
            source (`str` or `None`): the model's `audio_feature_source`.
            names (`list[str]` or `None`): the model's `audio_feature_names`.
            width (`int`): the model's `audio_feature_size`.
        """
        extractor = self.feature_extractor
        how = (
            f"pass its word-level features as `audio_features`, an array [n_words, {width}] "
            "(`cmbert predict --features FILE.npy`)"
        )
        if source != "extractor":
            origin = {
                "none": "no audio",
                None: "audio vectors whose origin its folder does not record (saved before cmbert-hf recorded it)",
            }.get(source, f"precomputed {source!r} features ({width} per word)")
            raise ValueError(f"This model was trained on {origin}, not on features extracted from raw audio: {how}.")
        if list(names or []) != list(extractor.features):
            raise ValueError(
                f"This model was trained on the audio features {names} but the feature extractor makes "
                f"{extractor.features}: load the feature extractor saved with the model, or {how}."
            )
        extractor.check_feature_size(width)
        if extractor.do_normalize and not extractor.is_fitted:
            raise ValueError(
                "The feature extractor has no normalisation statistics (feature_mean/feature_std in "
                "processor_config.json), so its features would not be on the scale the model was trained on: "
                f"use the feature extractor saved by training, or {how}."
            )

    def _align(self, encoding, index: int, feats: np.ndarray, n_words: int, audio_level: str) -> np.ndarray:
        width = self.audio_feature_size
        if feats.ndim != 2 or feats.shape[1] != width:
            raise ValueError(
                f"audio features of sample {index} must have shape (n, {width}) (the model's `audio_feature_size`), "
                f"got {feats.shape}."
            )
        if not np.isfinite(feats).all():
            raise ValueError(f"audio features of sample {index} contain NaN or inf values.")
        length = len(encoding["input_ids"][index])
        if audio_level == "token":
            aligned = np.zeros((length, width), dtype=np.float32)
            aligned[: min(length, len(feats))] = feats[:length]
            return aligned
        if len(feats) != n_words:
            raise ValueError(f"sample {index} has {n_words} words but {len(feats)} word-level audio vectors.")
        # Row 0 of `table` is the zero vector for special tokens and padding (word id None -> -1 -> 0).
        word_ids = np.array([-1 if w is None else w for w in encoding.word_ids(index)])
        table = np.concatenate([np.zeros((1, width), dtype=np.float32), feats])
        return table[word_ids + 1]


def _check_framing(encoding, index: int) -> None:
    """The first and the last real token are special tokens (`[CLS]` ... `[SEP]`, `<s>` ... `</s>`), padding on the
    right: the model's `cls_audio="mean"` leaves exactly those two positions out of the utterance's mean."""
    word_ids = encoding.word_ids(index)
    last = sum(encoding["attention_mask"][index]) - 1
    if word_ids[0] is not None or word_ids[last] is not None:
        raise ValueError(
            f"sample {index}: the tokenizer must frame each sequence with special tokens at both ends and pad on the "
            f"right (word ids {word_ids}); check `add_special_tokens` and `padding_side`."
        )


def _is_batched(text, is_split_into_words: bool) -> bool:
    if isinstance(text, str):
        return False
    if not isinstance(text, (list, tuple)) or not text:
        raise ValueError(f"`text` must be a non-empty string or list, got {text!r}.")
    return not is_split_into_words or isinstance(text[0], (list, tuple))


def _split_words(text, is_split_into_words: bool) -> list[str]:
    expected = (list, tuple) if is_split_into_words else str
    if not isinstance(text, expected) or (is_split_into_words and not all(isinstance(w, str) for w in text)):
        what = "a list of word strings" if is_split_into_words else "a string"
        raise ValueError(f"each utterance of `text` must be {what}, got {text!r}.")
    words = list(text) if is_split_into_words else text.split()
    if not words:
        raise ValueError("`text` is empty: CM-BERT needs at least one word per utterance.")
    return words


__all__ = ["CMBertProcessor", "check_audio_given"]
