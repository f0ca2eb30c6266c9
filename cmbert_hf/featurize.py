"""Featurising a data set of recordings: one home, used by the training recipe and by `cmbert evaluate`.

Three visible steps over `datasets` splits, each a cached `Dataset.map`:

1. `extract_word_features`: every row's unnormalised word features (`CMBertFeatureExtractor.word_features`: word
   timings where a row has them, else forced alignment, else, for training data, spreading the words);
2. `CMBertFeatureExtractor.fit_normalization` on the train split's features (training only; the fitted statistics
   are saved with the model's processor);
3. `normalize_word_features`: the normalised features in `audio_features`, the column of the precomputed data sets.

The processor is not involved: it tokenises, aligns and calls the extractor for one utterance at inference.
"""

import hashlib
import inspect
import json
from collections import Counter
from pathlib import Path

import numpy as np

from .feature_extraction_cmbert import WORD_TIMINGS
from .processing_cmbert import _split_words


def extract_word_features(
    dataset,
    extractor,
    audio_column="audio",
    text_column="text",
    timings_column=None,
    spread_unaligned=False,
    num_proc=None,
    batch_size=16,
):
    """
    Adds a `"word_features"` column of *unnormalised* word features `[n_words, feature_size]` to a
    `datasets.Dataset`, with `Dataset.map` (batched, in `num_proc` processes), and a `"word_timing"` column
    saying where each row's word spans came from (`"given"`, `"aligned"`, `"spread"` or `"proportional"`, see
    [`CMBertFeatureExtractor.word_features`]). The map is cached under a fingerprint of the data, the columns,
    the extractor's settings (not its normalisation) and its source code, so that a second run loads the
    cached result and changed settings recompute.

    Args:
        dataset (`datasets.Dataset`):
            Rows with the audio (a `datasets.Audio` column, an `{"array", "sampling_rate"}` or
            `{"path", "bytes"}` dict, or a file path) and the text.
        extractor ([`CMBertFeatureExtractor`]): the feature extractor.
        audio_column (`str`, *optional*, defaults to `"audio"`): the audio's column.
        text_column (`str`, *optional*, defaults to `"text"`): the transcript's column (words split on white space).
        timings_column (`str`, *optional*):
            A column of word timings (`{"word", "start", "end"}` dicts or `(word, start_s, end_s)` per word);
            the extractor's `aligner` times the words of rows without (a null value, or no such column).
        spread_unaligned (`bool`, *optional*, defaults to `False`):
            Spread the words of an utterance pocketsphinx cannot align instead of raising (training data);
            count the `"spread"` rows of `"word_timing"` to report them.
        num_proc (`int`, *optional*): processes for `Dataset.map`.
        batch_size (`int`, *optional*, defaults to 16): rows per map batch.

    Returns:
        `datasets.Dataset`: `dataset` plus `"word_features"` and `"word_timing"`.
    """
    audio_type = dataset.features.get(audio_column)
    needed = [audio_column, text_column] + ([timings_column] if timings_column else [])
    if any(name not in dataset.features for name in needed):
        raise ValueError(f"The dataset needs the columns {needed}; it has {list(dataset.features)}.")
    if type(audio_type).__name__ == "Audio" and audio_type.decode:
        # The extractor reads the stored bytes itself (soundfile + its resampler), as it reads files at inference.
        dataset = dataset.cast_column(audio_column, type(audio_type)(decode=False))
    columns = {"audio_column": audio_column, "text_column": text_column, "timings_column": timings_column}
    # A loaded extractor also records its classes (auto_map, processor_class): not settings, so that
    # `cmbert evaluate` on the saved folder finds the features training extracted from the same split.
    settings = {
        key: value for key, value in extractor.extraction_settings().items()
        if key not in ("auto_map", "processor_class")
    } | {"spread_unaligned": spread_unaligned}  # fmt: skip
    return dataset.map(
        _extract_batch,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        num_proc=num_proc,
        fn_kwargs={"extractor": extractor, "spread_unaligned": spread_unaligned, **columns},
        new_fingerprint=_fingerprint(dataset, columns, settings, _source_hash(extractor)),
        desc="extract word features",
    )


def normalize_word_features(dataset, extractor, num_proc=None):
    """
    Replaces a dataset's `"audio"` column (the recordings) by `"audio_features"`, its `"word_features"` normalised
    with the extractor's fitted statistics (the pipeline's `normalize`): the column of the word-level precomputed
    data sets, which the training's encoding takes as it is.

    Args:
        dataset (`datasets.Dataset`): the output of [`extract_word_features`].
        extractor ([`CMBertFeatureExtractor`]): a fitted feature extractor.
        num_proc (`int`, *optional*): processes for `Dataset.map`.
    """
    drop = [name for name in ("audio", "word_features") if name in dataset.column_names]
    return dataset.map(
        _normalize_batch,
        batched=True,
        num_proc=num_proc,
        fn_kwargs={"extractor": extractor},
        remove_columns=drop,
        new_fingerprint=_fingerprint(dataset, "normalize", extractor.feature_mean, extractor.feature_std),
        desc="normalise word features",
    )


def featurize_training_splits(splits, extractor, timings_column=None, num_proc=None, fit_split="train"):
    """Training data: word features of every split (unalignable utterances spread), the normalisation fitted on
    `fit_split` only, every split normalised. Returns the same kind of mapping; `extractor` is fitted."""
    extracted = {
        name: extract_word_features(
            split, extractor, timings_column=timings_column, spread_unaligned=True, num_proc=num_proc
        )
        for name, split in splits.items()
    }
    extractor.fit_normalization(extracted[fit_split]["word_features"])
    return type(splits)({name: normalize_word_features(split, extractor, num_proc) for name, split in extracted.items()})


def featurize_for_model(split, processor, config, timings_column=None):
    """A split as a saved model reads it (`cmbert evaluate`): recordings become the model's word features,
    extracted as training extracted them and normalised with the saved statistics; a model trained without audio
    gets no audio; splits of precomputed vectors stay as they are."""
    if "audio" not in split.column_names:  # the `audio` column holds recordings only
        return split
    if config.audio_feature_source == "none":
        return split.remove_columns("audio")
    processor.check_raw_audio(config.audio_feature_source, config.audio_feature_names, config.audio_feature_size)
    timings = timings_column if timings_column in split.column_names else None
    extracted = extract_word_features(split, processor.feature_extractor, timings_column=timings, spread_unaligned=True)
    return normalize_word_features(extracted, processor.feature_extractor)


def alignment_counts(splits) -> dict | None:
    """Where the word spans of extracted recordings came from, over all splits and per split: `given` (timings
    column), `aligned` (pocketsphinx), `spread` (pocketsphinx failed: words spread over the voiced span),
    `mismatched` (the transcript does not fit its audio), ... (`WORD_TIMINGS`). `None` when no recordings were
    extracted."""
    if "word_timing" not in next(iter(splits.values())).column_names:
        return None
    per_split = {name: dict(Counter(split["word_timing"])) for name, split in splits.items()}
    total = sum((Counter(counts) for counts in per_split.values()), Counter())
    return {key: total[key] for key in WORD_TIMINGS} | {"per_split": per_split}


def _extract_batch(batch, indices, extractor, audio_column, text_column, timings_column, spread_unaligned):
    """`Dataset.map` function of `extract_word_features` (module level so that worker processes can load it)."""
    word_features, word_timing = [], []
    for i, index in enumerate(indices):
        audio = batch[audio_column][i]
        path = audio.get("path") if isinstance(audio, dict) else audio if isinstance(audio, str) else None
        name = f"row {index}" + (f" ({path})" if path else "")
        annotation = batch[timings_column][i] if timings_column in batch else None
        if annotation is None:
            try:
                annotation = _split_words(batch[text_column][i], is_split_into_words=False)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from err
        features, timing = extractor.word_features(
            audio, annotation, name=name, spread_unaligned=spread_unaligned, return_timing=True
        )
        word_features.append(features.astype(np.float32))
        word_timing.append(timing)
    return {"word_features": word_features, "word_timing": word_timing}


def _normalize_batch(batch, extractor):
    """`Dataset.map` function of `normalize_word_features`."""
    features = batch["word_features"]
    return {"audio_features": [extractor.normalize(row) for row in features]}


def _fingerprint(dataset, *parts) -> str:
    """A `datasets` fingerprint for a map over `dataset` decided by `parts` (JSON-able)."""
    text = json.dumps([dataset._fingerprint, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _source_hash(extractor) -> str:
    """The feature extraction code (the extractor's file and the aligner beside it): a change re-extracts."""
    folder = Path(inspect.getfile(type(extractor))).parent
    digest = hashlib.sha256()
    for name in ("feature_extraction_cmbert.py", "alignment_cmbert.py"):
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    return digest.hexdigest()


__all__ = [
    "alignment_counts", "extract_word_features", "featurize_for_model", "featurize_training_splits",
    "normalize_word_features",
]  # fmt: skip
