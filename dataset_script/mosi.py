"""CMU-MOSI (and CMU-MOSEI) as a `datasets` builder, one config per source format.

Zadeh et al., "MOSI: Multimodal Corpus of Sentiment Intensity and Subjectivity Analysis in Online
Opinion Videos" (IEEE Intelligent Systems 2016), as used by Yang, Xu, Gao, "CM-BERT: Cross-Modal
BERT for Text-Audio Sentiment Analysis" (ACM MM 2020).

datasets 5.x no longer runs loading scripts, so build it directly:

    builder = Mosi(config_name="cmbert", data_dir="path/to/release", cache_dir=...)
    builder.download_and_prepare()
    dataset = builder.as_dataset()  # DatasetDict: train / validation / test

or in one call: `load_mosi("cmbert", data_dir="path/to/release")`. This file imports only the
installed `dataset_script` package, so it also loads as a stand-alone module named `mosi`.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import datasets
import pyarrow as pa
import yaml
from datasets.exceptions import ManualDownloadError

from dataset_script import recordings, sources, synthetic
from dataset_script.errors import OptionError, UnknownConfigError
from dataset_script.facts import LABEL7_NAMES, SAMPLING_RATE, TIMING_COLUMNS, sentiment_class
from dataset_script.sources import SPLITS, TSV_SPLITS, MissingSourceError, SplitRows, find_source, source_fingerprint

# Part of the key of the spoken corpus's audio folder: bump when `dataset_script.spoken` writes other files.
SPOKEN_CORPUS_VERSION = "1.0.0"
# The layout of the built tables (columns and their types). It is the configs' `version`, which names the cache
# folder: a build of an older layout is never reused (the builders' `VERSION` alone does not reach configs listed
# in `BUILDER_CONFIGS`, which keep `BuilderConfig`'s 0.0.0).
LAYOUT_VERSION = datasets.Version("2.0.0")
TEXT_URL = "https://raw.githubusercontent.com/thuiar/Cross-Modal-BERT/master/data/text/{}.tsv"

DESCRIPTION = """\
CMU-MOSI (2199 opinion utterances from 93 YouTube videos, sentiment in [-3, 3]; standard split
1284 / 229 / 686) and CMU-MOSEI (16326 / 1871 / 4659) in the formats CM-BERT and MMSA ship.

Features:
- `id` (string): `<split>-<row>` for TSV and synthetic sources, MMSA's `video$_$clip` otherwise.
- `video_id` (string): source video, "" where unknown (TSV sources without `{train,dev,test}.video_ids.txt`).
- `text` (string): the transcript as stored (upper case in the CM-BERT TSVs).
- `label` (float32): sentiment in [-3, 3].
- `label7` (ClassLabel): round(clip(label, -3, 3)) + 3 with numpy rounding (halves to even),
  0 = strongly negative ... 6 = strongly positive.
- `audio_features` (configs with audio only; a list of float32 vectors of the config's width): precomputed acoustic
  features, -inf values replaced by 0 (as MMSA does). What one vector stands for is declared by the config
  (`dataset_script.audio_facts`): "word" level (one per word of `text`) or "token" level (one per BERT position of
  50, row 0 the zero [CLS] row, trailing rows zero padding: the CM-BERT pickle and MMSA aligned_50).
- `vision` (MMSA / MOSEI configs only): Facet features at the same level.
Rows keep the source row order.
"""

CITATION = """\
@article{zadeh2016mosi,
  title={MOSI: Multimodal Corpus of Sentiment Intensity and Subjectivity Analysis in Online Opinion Videos},
  author={Zadeh, Amir and Zellers, Rowan and Pincus, Eli and Morency, Louis-Philippe},
  journal={IEEE Intelligent Systems}, volume={31}, number={6}, pages={82--88}, year={2016}
}
@inproceedings{zadeh2018mosei,
  title={Multimodal Language Analysis in the Wild: CMU-MOSEI Dataset and Interpretable Dynamic Fusion Graph},
  author={Bagher Zadeh, AmirAli and Liang, Paul Pu and Poria, Soujanya and Cambria, Erik and Morency, Louis-Philippe},
  booktitle={Proceedings of ACL}, pages={2236--2246}, year={2018}
}
@inproceedings{yang2020cmbert,
  title={CM-BERT: Cross-Modal BERT for Text-Audio Sentiment Analysis},
  author={Yang, Kaicheng and Xu, Hua and Gao, Kai},
  booktitle={Proceedings of the 28th ACM International Conference on Multimedia}, pages={521--528}, year={2020},
  doi={10.1145/3394171.3413690}
}
"""


@dataclass
class MosiConfig(datasets.BuilderConfig):
    """One source format of precomputed features. The declared facts (source, widths, audio level and source) are
    fixed per config; `OPTIONS` are what `load_mosi(...)` may set.

    Args:
        source (`str`): "tsv", "cmbert", "mmsa" or "synthetic".
        corpus (`str`): "mosi" or "mosei".
        file_name (`str`, *optional*): the feature pickle looked for under `data_dir`.
        audio_dim (`int`, defaults to 5): the audio width (MOSI 5, MOSEI 74); source files of another width are an
            error.
        vision_dim (`int`, *optional*): the vision width; `None` = no `vision` column.
        audio_level (`str`): "none", "word" or "token" (`dataset_script.facts.AUDIO_LEVELS`).
        audio_source (`str`): "none", "covarep" or "synthetic" (`dataset_script.facts.AUDIO_SOURCES`).
        audio_feature_names (`tuple[str]`, *optional*): what each audio dimension holds, where the source says.
        video_ids_dir (`str`, *optional*): folder with `{train,dev,test}.video_ids.txt` for TSV
            sources; defaults to the TSVs' folder, where they are optional (all three or none: without them
            `video_id` is "").
        seed, train_size, validation_size, test_size, cross_modal_fraction: the synthetic source
            (`dataset_script.synthetic`).
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("video_ids_dir", "seed", "train_size", "validation_size", "test_size", "cross_modal_fraction")

    version: datasets.Version | str | None = LAYOUT_VERSION
    source: str = "tsv"
    corpus: str = "mosi"
    file_name: str | None = None
    audio_dim: int = 5
    vision_dim: int | None = None
    audio_level: str = "none"
    audio_source: str = "none"
    audio_feature_names: tuple[str, ...] | None = None
    video_ids_dir: str | None = None
    seed: int = 0
    train_size: int = 1284
    validation_size: int = 229
    test_size: int = 686
    cross_modal_fraction: float = 0.3

    def audio_facts(self) -> dict:
        has_audio = self.audio_level != "none"
        return {
            "level": self.audio_level,
            "source": self.audio_source,
            "width": self.audio_dim if has_audio else None,
            "feature_names": self.audio_feature_names,
            "column": "audio_features" if has_audio else None,
            "sampling_rate": None,
        }


def _mmsa_config(corpus: str, prefix: str, audio_dim: int, vision_dim: int) -> MosiConfig:
    """MMSA's aligned pickle of one corpus. (Its unaligned_50.pkl holds frame-level features, which CM-BERT cannot
    take: no config offers it.)"""
    return MosiConfig(
        name=f"{prefix}_aligned",
        description=f"{corpus.upper()} from MMSA's aligned_50.pkl (token level COVAREP audio and Facet vision).",
        source="mmsa",
        corpus=corpus,
        file_name="aligned_50.pkl",
        audio_dim=audio_dim,
        vision_dim=vision_dim,
        audio_level="token",
        audio_source="covarep",
    )


class Mosi(datasets.GeneratorBasedBuilder):
    """CMU-MOSI / MOSEI for CM-BERT; see `DESCRIPTION` for the features and `MosiConfig` for the options."""

    VERSION = LAYOUT_VERSION
    BUILDER_CONFIG_CLASS = MosiConfig
    BUILDER_CONFIGS = [
        MosiConfig(name="text", description="CM-BERT transcripts and labels only.", source="tsv"),
        MosiConfig(
            name="cmbert",
            description="The CM-BERT release: TSVs plus MOSI_cmu_audio_CLS.pickle (token-level COVAREP, 5 dims).",
            source="cmbert",
            file_name="MOSI_cmu_audio_CLS.pickle",
            audio_level="token",
            audio_source="covarep",
        ),
        _mmsa_config("mosi", "mmsa", audio_dim=5, vision_dim=20),
        _mmsa_config("mosei", "mosei", audio_dim=74, vision_dim=35),
        MosiConfig(
            name="synthetic",
            description="Offline MOSI-shaped data where a set fraction of labels needs the audio.",
            source="synthetic",
            audio_dim=synthetic.AUDIO_DIM,
            audio_level="word",
            audio_source="synthetic",
            audio_feature_names=synthetic.FEATURE_NAMES,
        ),
    ]
    DEFAULT_CONFIG_NAME = "text"

    def __init__(self, *args, hash=None, **kwargs):
        # The source files are part of the build's identity: an edit in place builds (and validates) again.
        super().__init__(*args, hash=hash or source_fingerprint(kwargs.get("data_dir")), **kwargs)

    @property
    def manual_download_instructions(self) -> str | None:
        if self.config.source == "cmbert":
            return (
                "Put train.tsv, dev.tsv, test.tsv and MOSI_cmu_audio_CLS.pickle from the CM-BERT release in one "
                "folder (or keep the release layout data/text/*.tsv and data/audio/MOSI_cmu_audio_CLS.pickle) "
                "and pass data_dir=<that folder>. The pickle's public link is dead: ask the authors or a colleague."
            )
        if self.config.source == "mmsa":
            return (
                f"Download {self.config.corpus.upper()}/Processed/{self.config.file_name} from MMSA's data release "
                "(github.com/thuiar/MMSA) and pass data_dir=<the folder holding it, or its parent with Processed/>."
            )
        return None

    def _info(self) -> datasets.DatasetInfo:
        features = {
            "id": datasets.Value("string"),
            "video_id": datasets.Value("string"),
            "text": datasets.Value("string"),
            "label": datasets.Value("float32"),
            "label7": datasets.ClassLabel(names=list(LABEL7_NAMES)),
        }
        if self.config.audio_level != "none":
            features["audio_features"] = _vectors(self.config.audio_dim)
        if self.config.vision_dim:
            features["vision"] = _vectors(self.config.vision_dim)
        return datasets.DatasetInfo(
            description=DESCRIPTION,
            features=datasets.Features(features),
            homepage="https://github.com/thuiar/Cross-Modal-BERT",
            citation=CITATION,
            license="The terms of the original CMU-MOSI / CMU-MOSEI releases apply.",
        )

    def _split_generators(self, dl_manager):
        # Everything is read and validated here, before datasets opens a shard: a bad file raises
        # our own error, and datasets' `.incomplete` folder is removed without a complete cache.
        rows = self._read_splits(dl_manager)
        return [datasets.SplitGenerator(name=split, gen_kwargs={"rows": rows[split]}) for split in SPLITS]

    def _generate_examples(self, rows: SplitRows):
        for i in range(len(rows)):
            label = rows.labels[i]
            example = {
                "id": rows.ids[i],
                "video_id": rows.video_ids[i],
                "text": rows.texts[i],
                "label": label,
                "label7": int(sentiment_class(label)),
            }
            if self.config.audio_level != "none":
                example["audio_features"] = rows.audio[i]
            if self.config.vision_dim:
                example["vision"] = rows.vision[i]
            yield i, example

    def _read_splits(self, dl_manager) -> dict[str, SplitRows]:
        config = self.config
        if config.source == "synthetic":
            sizes = {"train": config.train_size, "validation": config.validation_size, "test": config.test_size}
            return {s: synthetic.generate_split(s, sizes[s], config.seed, config.cross_modal_fraction) for s in SPLITS}
        if config.data_dir is None and config.source != "tsv":
            raise ManualDownloadError(
                f"Config '{config.name}' needs local files.\n{self.manual_download_instructions}"
            )
        if config.source == "mmsa":
            path = find_source(config.data_dir, config.file_name, ("", "Processed"), self.manual_download_instructions)
            return sources.read_mmsa(path, config.audio_dim, config.vision_dim)
        rows = self._read_tsvs(dl_manager)
        if config.source == "cmbert":
            path = find_source(config.data_dir, config.file_name, ("", "audio", "data/audio"), self.manual_download_instructions)
            audio = sources.read_cmbert_audio(path, {s: len(rows[s]) for s in SPLITS}, config.audio_dim)
            for split in SPLITS:
                rows[split].audio = audio[split]
        return rows


    def _read_tsvs(self, dl_manager) -> dict[str, SplitRows]:
        """The three TSVs (downloaded when no data_dir is given) and their optional video-id files."""
        config = self.config
        if config.data_dir is None:
            paths = dl_manager.download({s: TEXT_URL.format(stem) for s, stem in TSV_SPLITS.items()})
        else:
            instructions = self.manual_download_instructions or (
                "Pass data_dir=<folder with train.tsv, dev.tsv, test.tsv>: the CM-BERT release's data/text "
                f"({TEXT_URL.format('*')}), which load_mosi without data_dir downloads.")
            paths = {
                s: find_source(config.data_dir, f"{stem}.tsv", ("", "text", "data/text"), instructions)
                for s, stem in TSV_SPLITS.items()
            }
        ids_paths = {}
        for split, stem in TSV_SPLITS.items():
            ids_dir = config.video_ids_dir or (config.data_dir and paths[split].parent)
            ids_paths[split] = Path(ids_dir, f"{stem}.video_ids.txt") if ids_dir else None
        found = [split for split, path in ids_paths.items() if path and path.is_file()]
        # Optional beside the TSVs, but all three or none; a folder asked for explicitly must hold them all.
        if (found or config.video_ids_dir) and len(found) < len(TSV_SPLITS):
            missing = [str(path) for split, path in ids_paths.items() if split not in found]
            raise MissingSourceError(f"video-id files {missing} not found: give all three splits' or none.")
        rows = {}
        for split in TSV_SPLITS:
            texts, labels = sources.read_tsv(paths[split], split)
            video_ids = sources.read_video_ids(ids_paths[split], split, len(texts)) if found else [""] * len(texts)
            ids = [f"{split}-{row}" for row in range(len(texts))]
            rows[split] = SplitRows(ids=ids, video_ids=video_ids, texts=texts, labels=labels)
        return rows


RECORDINGS_DESCRIPTION = """\
Sentiment-labelled speech: audio files with transcripts (the `recordings` config reads a folder in datasets'
AudioFolder layout, see `dataset_script.recordings`; `spoken` synthesises one with espeak-ng, see
`dataset_script.spoken`).

Features:
- `id` (string): the audio file's path in the folder. `video_id` (string): as given, else "".
- `text` (string), `label` (float32, in [-3, 3]), `label7` (ClassLabel) as in the MOSI configs.
- `audio` (Audio, 16 kHz mono): the file's bytes as they were, with its path relative to the folder. `datasets`
  decodes Audio only with torchcodec (not installable beside a CPU torch without FFmpeg);
  `dataset_script.recordings.decode_audio` decodes a value of `dataset.cast_column("audio",
  datasets.Audio(decode=False))` with soundfile and scipy instead, as the feature extractor does. Vectors are
  computed from it later by a feature extractor (`dataset_script.audio_facts`: level "waveform", source "extractor").
- `word_timings`, `true_timings` (lists of {word, start, end} seconds, or null): timings from the metadata, and
  reference timings (espeak's word events in `spoken`).
"""


@dataclass
class RecordingsConfig(datasets.BuilderConfig):
    """A folder of recordings (`recordings`) or the espeak-ng corpus written into one (`spoken`).

    Args:
        source (`str`): "recordings" or "spoken".
        seed (`int`, defaults to 0): the `spoken` corpus's draw, and the hold-out of a folder without a `split`
            column (see `dataset_script.recordings`).
        train_size, validation_size, test_size, cross_modal_fraction: the `spoken` corpus (`dataset_script.spoken`).
        holdout_fraction (`float`, defaults to 0.1): the share of a split-less folder held out for validation, and
            the same again for test.
        silence_dbfs (`float`, defaults to -60.0), min_seconds_per_word (`float`, defaults to 0.05): a clip whose
            loudest frame is below `silence_dbfs`, or shorter than `min_seconds_per_word` per word of its text, is
            refused when the data set is built: the feature extractor's own thresholds and framing
            (`cmbert_hf.feature_extraction_cmbert.SILENCE_DBFS`, `MIN_SECONDS_PER_WORD`), so that no clip the
            extractor would refuse gets past the build.
        asr_model (`str`, defaults to "base"): rows without a transcript are transcribed with this faster-whisper
            model (by the `transcribe` function `load_mosi` is given).
    """

    OPTIONS: ClassVar[tuple[str, ...]] = (
        "seed", "train_size", "validation_size", "test_size", "cross_modal_fraction", "holdout_fraction",
        "silence_dbfs", "min_seconds_per_word", "asr_model",
    )  # fmt: skip

    version: datasets.Version | str | None = LAYOUT_VERSION
    source: str = "recordings"
    seed: int = 0
    train_size: int = 400
    validation_size: int = 100
    test_size: int = 200
    cross_modal_fraction: float = 0.3
    holdout_fraction: float = 0.1
    silence_dbfs: float = -60.0
    min_seconds_per_word: float = 0.05
    asr_model: str = "base"

    def audio_facts(self) -> dict:
        return {"level": "waveform", "source": "extractor", "width": None, "feature_names": None, "column": "audio",
                "sampling_rate": SAMPLING_RATE}  # fmt: skip


def _timings_feature():
    return datasets.List({"word": datasets.Value("string"), "start": datasets.Value("float64"), "end": datasets.Value("float64")})


def _vectors(width: int):
    """Per row, a list of vectors of `width` float32 values: the width is part of the declared type."""
    return datasets.List(datasets.List(datasets.Value("float32"), length=width))


class MosiRecordings(datasets.ArrowBasedBuilder):
    """Audio configs, beside `Mosi`: an Arrow-based builder, because a generator-based one encodes each example's
    `Audio` value with torchcodec (even a plain path), while Arrow tables are only cast, which needs no decoder."""

    VERSION = LAYOUT_VERSION
    BUILDER_CONFIG_CLASS = RecordingsConfig
    BUILDER_CONFIGS = [
        RecordingsConfig(name="recordings", description="A folder of recordings with metadata.csv / .jsonl.", source="recordings"),
        RecordingsConfig(
            name="spoken",
            description="espeak-ng speech of the synthetic vocabulary; stress, heard only in the audio, sets a "
            "set fraction of the labels.",
            source="spoken",
        ),
    ]
    DEFAULT_CONFIG_NAME = "recordings"

    def __init__(self, *args, hash=None, transcribe=None, **kwargs):
        # As Mosi's: the folder's files are part of the build's identity. Not the spoken corpus's: the builder writes
        # it from its options (which key the cache already), maybe in this very build, after the key is taken.
        own_files = kwargs.get("config_name", self.DEFAULT_CONFIG_NAME) != "spoken"
        files = source_fingerprint(kwargs.get("data_dir")) if own_files else None
        super().__init__(*args, hash=hash or files, **kwargs)
        self._transcribe = transcribe  # see `load_mosi`

    @property
    def manual_download_instructions(self) -> str | None:
        if self.config.source == "recordings":
            return (
                "Pass data_dir=<folder with the audio files and metadata.csv or metadata.jsonl> "
                "(see dataset_script.recordings)."
            )
        return None

    def _info(self) -> datasets.DatasetInfo:
        features = datasets.Features(
            {
                "id": datasets.Value("string"),
                "video_id": datasets.Value("string"),
                "text": datasets.Value("string"),
                "transcript": datasets.Value("string"),
                "label": datasets.Value("float32"),
                "label7": datasets.ClassLabel(names=list(LABEL7_NAMES)),
                "audio": datasets.Audio(sampling_rate=SAMPLING_RATE, num_channels=1),
                **{column: _timings_feature() for column in TIMING_COLUMNS},
            }
        )
        return datasets.DatasetInfo(description=RECORDINGS_DESCRIPTION, features=features, citation=CITATION)

    def _split_generators(self, dl_manager):
        # Read and validated in full before datasets writes anything (see Mosi._split_generators).
        config = self.config
        rows = recordings.read_recordings(
            self._folder(), seed=config.seed, holdout_fraction=config.holdout_fraction,
            silence_dbfs=config.silence_dbfs, min_seconds_per_word=config.min_seconds_per_word,
            transcribe=self._transcribe, asr_model=config.asr_model,
        )  # fmt: skip
        return [datasets.SplitGenerator(name=split, gen_kwargs={"rows": split_rows}) for split, split_rows in rows.items()]

    def _folder(self) -> Path:
        config = self.config
        if config.source == "recordings":
            if config.data_dir is None:
                raise ManualDownloadError(f"Config 'recordings' needs local files.\n{self.manual_download_instructions}")
            return Path(config.data_dir)
        from dataset_script.spoken import write_corpus  # needs espeak-ng: only this config imports it

        sizes = {"train": config.train_size, "validation": config.validation_size, "test": config.test_size}
        if config.data_dir is not None:
            folder = Path(config.data_dir)
        else:  # beside the Arrow cache, named by what determines its content, so a second run reuses it
            content = (SPOKEN_CORPUS_VERSION, sizes, config.seed, config.cross_modal_fraction)
            key = hashlib.sha256(repr(content).encode()).hexdigest()[:16]
            folder = Path(self._cache_dir_root, "mosi_spoken_audio", key)
        if not folder.exists():
            write_corpus(folder, sizes, config.seed, config.cross_modal_fraction)
        return folder

    def _generate_tables(self, rows):
        features = self.info.features
        names = ("id", "video_id", "text", "transcript", "label", "audio", *TIMING_COLUMNS)
        columns = {name: [row[name] for row in rows] for name in names}
        columns["label7"] = [int(sentiment_class(label)) for label in columns["label"]]
        # The audio column gets its storage type ({bytes, path}) here; the rest are cast by datasets' writer.
        table = pa.table(
            {name: pa.array(columns[name], type=features[name].pa_type if name == "audio" else None) for name in features}
        )
        yield 0, table


BUILDERS = (Mosi, MosiRecordings)


def builder_class(config: str):
    """The builder that offers `config`; an unknown name raises `UnknownConfigError` listing every config."""
    for builder in BUILDERS:
        if config in builder.builder_configs:
            return builder
    raise UnknownConfigError(f"unknown data set config {config!r}; the configs are {', '.join(config_names())}")


def config_names() -> list[str]:
    return [name for builder in BUILDERS for name in builder.builder_configs]


def config_options(options, config: str | None = None) -> dict:
    """
    Options for `load_mosi` (the fields in `MosiConfig.OPTIONS` / `RecordingsConfig.OPTIONS`), given as a mapping or a
    YAML / JSON string (`train.py --dataset_options`, `cmbert evaluate --dataset-options`), e.g.
    `"{train_size: 800, seed: 1}"`. With `config`, only that config's options are accepted.

    Raises:
        `OptionError` (a `ValueError`): not a mapping, or an option the config(s) do not have (the message lists
        those they have).
    """
    if isinstance(options, str):
        try:
            options = yaml.safe_load(options)
        except yaml.YAMLError as error:
            raise OptionError(f"dataset options are not a YAML/JSON mapping: {error}") from error
    options = options or {}
    if not isinstance(options, dict):
        raise OptionError(f"dataset options must be a mapping of MosiConfig / RecordingsConfig options, got {options!r}")
    classes = [builder_class(config).BUILDER_CONFIG_CLASS] if config else [b.BUILDER_CONFIG_CLASS for b in BUILDERS]
    known = sorted({name for cls in classes for name in cls.OPTIONS})
    unknown = sorted(set(options) - set(known))
    if unknown:
        which = " / ".join(cls.__name__ for cls in classes)
        raise OptionError(f"unknown dataset options {unknown}; {which}'s fields are {known}")
    return options


def load_mosi(
    config: str = "text", data_dir=None, cache_dir=None, download_mode=None, transcribe=None, **options
) -> datasets.DatasetDict:
    """Builds (or reuses from `cache_dir`) one config and returns its splits (train / validation / test).

    A cached build is reused only while the files under `data_dir` are unchanged (their paths, sizes, modification
    times and, for files up to 1 MiB, contents): an edit in place builds and validates again.

    Args:
        config (`str`): a config name of `Mosi.BUILDER_CONFIGS` or `MosiRecordings.BUILDER_CONFIGS`.
        data_dir (`str`, *optional*): folder with the source files; required except for "text", "synthetic" and
            "spoken" (where it is the folder the corpus is written to, once).
        cache_dir (`str`, *optional*): the datasets cache (defaults to `HF_DATASETS_CACHE`).
        download_mode (`str`, *optional*): "force_redownload" rebuilds regardless.
        transcribe (`Callable[[str, str], str]`, *optional*): recordings configs: `transcribe(audio_path,
            asr_model)` gives the transcript of a row without one (`cmbert_hf.transcription_cmbert.transcript`).
        **options: the config's `OPTIONS`, e.g. `seed=1, cross_modal_fraction=0.5` or `video_ids_dir=...`.
    """
    builder = builder_class(config)
    options = config_options(options, config)
    # Absolute, so that the cache entry (keyed by the config's options, data_dir included) is this folder's and not
    # that of a same-named folder in another checkout.
    data_dir = str(Path(data_dir).resolve()) if data_dir else None
    if config == "spoken" and data_dir and not any(Path(data_dir, name).is_file() for name in recordings.METADATA_FILES):
        # The corpus folder is gone (or new) but a cached build may remain: write the files again, since users
        # (and `cmbert predict --audio`) read the audio from them.
        download_mode = download_mode or "force_redownload"
    if builder is MosiRecordings:
        options["transcribe"] = transcribe
    builder = builder(config_name=config, data_dir=data_dir, cache_dir=cache_dir, **options)
    builder.download_and_prepare(download_mode=download_mode)
    return builder.as_dataset()


def audio_facts(data) -> dict:
    """
    What a data set of this package declares about its audio, for the code that turns it into model inputs.

    Args:
        data: a `Mosi` / `MosiRecordings` builder, or a `Dataset` / `DatasetDict` they built (its `info` names the
            config).

    Returns:
        `dict`: `level` ("none", "word", "token" or "waveform", see `dataset_script.facts.AUDIO_LEVELS`), `source`
        ("none", "covarep", "synthetic" or "extractor"), `width` (the vectors' width; `None` without vectors),
        `feature_names` (what each dimension holds, `None` where unknown), `column` (the column holding the audio:
        "audio_features" for vectors, "audio" for waveforms, `None`) and `sampling_rate` (of waveforms).
    """
    if isinstance(data, BUILDERS):
        return data.config.audio_facts()
    if isinstance(data, datasets.DatasetDict):
        data = next(iter(data.values()))
    info = data.info
    if info.builder_name != "mosi" or info.config_name not in config_names():
        raise ValueError(f"{info.builder_name}/{info.config_name} is not a data set of dataset_script: its audio is undeclared")
    facts = builder_class(info.config_name).builder_configs[info.config_name].audio_facts()
    if facts["column"] == "audio_features":  # the width the rows were built with (`_vectors`)
        facts["width"] = data.features["audio_features"].feature.length
    return facts


__all__ = [
    "Mosi", "MosiRecordings", "MosiConfig", "RecordingsConfig", "audio_facts", "config_options", "load_mosi",
    "CITATION", "DESCRIPTION",
]  # fmt: skip
