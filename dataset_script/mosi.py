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
from dataclasses import dataclass, fields
from pathlib import Path

import datasets
import pyarrow as pa
import yaml
from datasets.exceptions import ManualDownloadError

from cmbert_hf.configuration_cmbert import LABEL7_NAMES, sentiment_class

from dataset_script import recordings, sources
from dataset_script.sources import SPLITS, TSV_SPLITS, MissingSourceError, SplitRows, find_source
from dataset_script.synthetic import generate_split

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
- `audio` (list of float32 vectors): acoustic features, one row per unit of `audio_level`;
  -inf values are replaced by 0 (as MMSA does).
- `audio_level` (string): "word" (one vector per word), "token" (already aligned to the 50
  BERT positions, row 0 = zero [CLS] row, trailing rows zero padding: the CM-BERT pickle and
  MMSA aligned_50), "frame" (MMSA unaligned_50, cut to `audio_lengths`), "none" (text config).
- `vision` (list of float32 vectors; MMSA / MOSEI configs only): Facet features, same levels.
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
    """One source format. Pass any field to `Mosi(...)` / `load_mosi(...)` to override it.

    Args:
        source (`str`): "tsv", "cmbert", "mmsa", "synthetic", "recordings" or "spoken".
        corpus (`str`): "mosi" or "mosei".
        file_name (`str`, *optional*): the feature pickle looked for under `data_dir`.
        audio_dim (`int`, defaults to 5): declared audio width (MOSI 5, MOSEI 74); source files of another
            width are an error. The synthetic source always makes 5.
        vision_dim (`int`, *optional*): declared vision width; `None` = no `vision` column.
        audio_level (`str`): "none", "word", "token" or "frame" (see the features description).
        video_ids_dir (`str`, *optional*): folder with `{train,dev,test}.video_ids.txt` for TSV
            sources; defaults to the TSVs' folder, where they are optional (all three or none: without them
            `video_id` is "").
        seed, train_size, validation_size, test_size, cross_modal_fraction: the synthetic and spoken sources
            (`dataset_script.synthetic`, `dataset_script.spoken`).
        asr_model (`str`, defaults to "base"): recordings without a transcript are transcribed with this
            faster-whisper model (by the `transcribe` function `load_mosi` is given).
    """

    source: str = "tsv"
    corpus: str = "mosi"
    file_name: str | None = None
    audio_dim: int = 5
    vision_dim: int | None = None
    audio_level: str = "none"
    video_ids_dir: str | None = None
    seed: int = 0
    train_size: int = 1284
    validation_size: int = 229
    test_size: int = 686
    cross_modal_fraction: float = 0.3
    asr_model: str = "base"


def _mmsa_configs(corpus: str, prefix: str, audio_dim: int, vision_dim: int) -> list[MosiConfig]:
    """The aligned and unaligned MMSA pickles of one corpus."""
    return [
        MosiConfig(
            name=f"{prefix}_{kind}",
            description=f"{corpus.upper()} from MMSA's {kind}_50.pkl ({level} level audio and vision).",
            source="mmsa",
            corpus=corpus,
            file_name=f"{kind}_50.pkl",
            audio_dim=audio_dim,
            vision_dim=vision_dim,
            audio_level=level,
        )
        for kind, level in (("aligned", "token"), ("unaligned", "frame"))
    ]


class Mosi(datasets.GeneratorBasedBuilder):
    """CMU-MOSI / MOSEI for CM-BERT; see `DESCRIPTION` for the features and `MosiConfig` for the options."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = MosiConfig
    BUILDER_CONFIGS = [
        MosiConfig(name="text", description="CM-BERT transcripts and labels only.", source="tsv"),
        MosiConfig(
            name="cmbert",
            description="The CM-BERT release: TSVs plus MOSI_cmu_audio_CLS.pickle (token-level COVAREP, 5 dims).",
            source="cmbert",
            file_name="MOSI_cmu_audio_CLS.pickle",
            audio_level="token",
        ),
        *_mmsa_configs("mosi", "mmsa", audio_dim=5, vision_dim=20),
        *_mmsa_configs("mosei", "mosei", audio_dim=74, vision_dim=35),
        MosiConfig(
            name="synthetic",
            description="Offline MOSI-shaped data where a set fraction of labels needs the audio.",
            source="synthetic",
            audio_level="word",
        ),
    ]
    DEFAULT_CONFIG_NAME = "text"

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
        vectors = datasets.List(datasets.List(datasets.Value("float32")))
        features = {
            "id": datasets.Value("string"),
            "video_id": datasets.Value("string"),
            "text": datasets.Value("string"),
            "label": datasets.Value("float32"),
            "label7": datasets.ClassLabel(names=list(LABEL7_NAMES)),
            "audio": vectors,
            "audio_level": datasets.Value("string"),
        }
        if self.config.vision_dim:
            features["vision"] = vectors
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
        level = self.config.audio_level
        for i in range(len(rows)):
            label = rows.labels[i]
            example = {
                "id": rows.ids[i],
                "video_id": rows.video_ids[i],
                "text": rows.texts[i],
                "label": label,
                "label7": int(sentiment_class(label)),
                "audio": rows.audio[i] if rows.audio is not None else [],
                "audio_level": level,
            }
            if self.config.vision_dim:
                example["vision"] = rows.vision[i]
            yield i, example

    def _read_splits(self, dl_manager) -> dict[str, SplitRows]:
        config = self.config
        if config.source == "synthetic":
            sizes = {"train": config.train_size, "validation": config.validation_size, "test": config.test_size}
            return {s: generate_split(s, sizes[s], config.seed, config.cross_modal_fraction) for s in SPLITS}
        if config.data_dir is None and config.source != "tsv":
            raise ManualDownloadError(
                f"Config '{config.name}' needs local files.\n{self.manual_download_instructions}"
            )
        if config.source == "mmsa":
            path = find_source(config.data_dir, config.file_name, ("", "Processed"), self.manual_download_instructions)
            return sources.read_mmsa(path, config.audio_level == "token", config.audio_dim, config.vision_dim)
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
            instructions = self.manual_download_instructions or "Pass data_dir=<folder with train.tsv, dev.tsv, test.tsv>."
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
- `audio` (Audio, 16 kHz mono): the file's bytes as they were. `datasets` decodes Audio only with torchcodec
  (not installable beside a CPU torch without FFmpeg); `dataset_script.recordings.decode_audio` decodes a value
  of `dataset.cast_column("audio", datasets.Audio(decode=False))` with soundfile + librosa instead.
- `audio_level` (string): "waveform".
- `word_timings`, `true_timings` (lists of {word, start, end} seconds, or null): timings from the metadata, and
  reference timings (espeak's word events in `spoken`).
"""


def _timings_feature():
    return datasets.List({"word": datasets.Value("string"), "start": datasets.Value("float64"), "end": datasets.Value("float64")})


class MosiRecordings(datasets.ArrowBasedBuilder):
    """Audio configs, beside `Mosi`: an Arrow-based builder, because a generator-based one encodes each example's
    `Audio` value with torchcodec (even a plain path), while Arrow tables are only cast, which needs no decoder."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = MosiConfig
    BUILDER_CONFIGS = [
        MosiConfig(
            name="recordings",
            description="A folder of recordings with metadata.csv / .jsonl.",
            source="recordings",
            audio_level="waveform",
        ),
        MosiConfig(
            name="spoken",
            description="espeak-ng speech of the synthetic vocabulary; stress, heard only in the audio, sets a "
            "set fraction of the labels.",
            source="spoken",
            audio_level="waveform",
            train_size=400,
            validation_size=100,
            test_size=200,
        ),
    ]
    DEFAULT_CONFIG_NAME = "recordings"

    def __init__(self, *args, transcribe=None, **kwargs):
        super().__init__(*args, **kwargs)
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
                "audio": datasets.Audio(sampling_rate=recordings.SAMPLING_RATE, num_channels=1),
                "audio_level": datasets.Value("string"),
                "word_timings": _timings_feature(),
                "true_timings": _timings_feature(),
            }
        )
        return datasets.DatasetInfo(description=RECORDINGS_DESCRIPTION, features=features, citation=CITATION)

    def _split_generators(self, dl_manager):
        # Read and validated in full before datasets writes anything (see Mosi._split_generators).
        rows = recordings.read_recordings(self._folder(), self._transcribe, self.config.asr_model)
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
            content = (str(self.VERSION), sizes, config.seed, config.cross_modal_fraction)
            key = hashlib.sha256(repr(content).encode()).hexdigest()[:16]
            folder = Path(self._cache_dir_root, "mosi_spoken_audio", key)
        if not folder.exists():
            write_corpus(folder, sizes, config.seed, config.cross_modal_fraction)
        return folder

    def _generate_tables(self, rows):
        features = self.info.features
        names = ("id", "video_id", "text", "transcript", "label", "audio", "word_timings", "true_timings")
        columns = {name: [row[name] for row in rows] for name in names}
        columns["label7"] = [int(sentiment_class(label)) for label in columns["label"]]
        columns["audio_level"] = [self.config.audio_level] * len(rows)
        # The audio column gets its storage type ({bytes, path}) here; the rest are cast by datasets' writer.
        table = pa.table(
            {name: pa.array(columns[name], type=features[name].pa_type if name == "audio" else None) for name in features}
        )
        yield 0, table


# MosiConfig's own fields (name, data_dir, ... belong to datasets' BuilderConfig and are given apart).
CONFIG_OPTIONS = sorted({f.name for f in fields(MosiConfig)} - {f.name for f in fields(datasets.BuilderConfig)})


def config_options(options) -> dict:
    """
    `MosiConfig` fields for `load_mosi`, given as a mapping or a YAML / JSON string (`train.py --dataset_options`,
    `cmbert evaluate --dataset-options`), e.g. `"{train_size: 800, seed: 1}"`.

    Raises:
        `ValueError`: not a mapping, or a field `MosiConfig` does not have (the message lists those it has).
    """
    if isinstance(options, str):
        try:
            options = yaml.safe_load(options)
        except yaml.YAMLError as error:
            raise ValueError(f"dataset options are not a YAML/JSON mapping: {error}") from error
    options = options or {}
    if not isinstance(options, dict):
        raise ValueError(f"dataset options must be a mapping of MosiConfig fields, got {options!r}")
    unknown = sorted(set(options) - set(CONFIG_OPTIONS))
    if unknown:
        raise ValueError(f"unknown dataset options {unknown}; MosiConfig's fields are {CONFIG_OPTIONS}")
    return options


def load_mosi(
    config: str = "text", data_dir=None, cache_dir=None, download_mode=None, transcribe=None, **config_kwargs
) -> datasets.DatasetDict:
    """Builds (or reuses from `cache_dir`) one config and returns its train / validation / test splits.

    Args:
        config (`str`): a config name of `Mosi.BUILDER_CONFIGS` or `MosiRecordings.BUILDER_CONFIGS`.
        data_dir (`str`, *optional*): folder with the source files; required except for "text", "synthetic" and
            "spoken" (where it is the folder the corpus is written to, once).
        cache_dir (`str`, *optional*): the datasets cache (defaults to `HF_DATASETS_CACHE`).
        download_mode (`str`, *optional*): "force_redownload" rebuilds after the source files changed in place.
        transcribe (`Callable[[str, str], str]`, *optional*): recordings configs: `transcribe(audio_path,
            asr_model)` gives the transcript of a row without one (`cmbert_hf.transcription_cmbert.transcript`).
        **config_kwargs: `MosiConfig` fields, e.g. `seed=1, cross_modal_fraction=0.5` or `video_ids_dir=...`.
    """
    builder_class = MosiRecordings if config in MosiRecordings.builder_configs else Mosi
    # Absolute, so that the cache entry (keyed by the config's options, data_dir included) is this folder's and not
    # that of a same-named folder in another checkout.
    data_dir = str(Path(data_dir).resolve()) if data_dir else None
    if config == "spoken" and data_dir and not any(Path(data_dir, name).is_file() for name in recordings.METADATA_FILES):
        # The corpus folder is gone (or new) but a cached build may remain: write the files again, since users
        # (and `cmbert predict --audio`) read the audio from them.
        download_mode = download_mode or "force_redownload"
    if builder_class is MosiRecordings:
        config_kwargs["transcribe"] = transcribe
    builder = builder_class(config_name=config, data_dir=data_dir, cache_dir=cache_dir, **config_kwargs)
    builder.download_and_prepare(download_mode=download_mode)
    return builder.as_dataset()


__all__ = [
    "Mosi", "MosiRecordings", "MosiConfig", "load_mosi", "config_options", "LABEL7_NAMES", "CITATION", "DESCRIPTION",
]  # fmt: skip
