"""Fine-tune CM-BERT on CMU-MOSI (or MOSEI, or the synthetic set) with the Hugging Face Trainer.

Launch commands:

    # offline demo: MiniLM backbone trained from the audio files of the spoken corpus (espeak-ng), one CPU process
    python train.py --config configs/demo.yaml

    # the spoken corpus at 800 training utterances, three seeds; text only, the original code's settings, and
    # espeak's true word boundaries instead of pocketsphinx's
    python train.py --config configs/demo.yaml --dataset_options '{train_size: 800}' --data_dir outputs/spoken-800 \
        --num_train_epochs 6 --seeds 1111 1112 1113 --output_dir outputs/spoken [--text_only | --original |
        --timings_column true_timings]

    # the paper's recipe on the CM-BERT release (bert-base-uncased), five seeds
    python train.py --config configs/cmbert_mosi.yaml --data_dir /path/to/cmbert --seeds 1111 1112 1113 1114 1115

    # text-only baseline through the same code
    python train.py --config configs/tbert_mosi.yaml --data_dir /path/to/cmbert

    # two CPU processes (gloo), one GPU, several GPUs, several machines, FSDP, DeepSpeed ZeRO-2
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml train.py --config configs/demo.yaml \\
        --per_device_train_batch_size 12
    accelerate launch --config_file configs/accelerate/single_gpu.yaml train.py --config configs/cmbert_mosi.yaml
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train.py --config configs/cmbert_mosi.yaml
    accelerate launch --config_file configs/accelerate/multi_node.yaml --machine_rank 0 \\
        --main_process_ip 10.0.0.1 train.py --config configs/cmbert_mosi.yaml
    accelerate launch --config_file configs/accelerate/fsdp.yaml train.py --config configs/cmbert_mosi.yaml
    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml train.py --config configs/cmbert_mosi.yaml

    # The batch size is per process: to keep the recipe's 24 on N processes, pass
    # --per_device_train_batch_size 24/N (as for the 2 CPU processes above), or accept a global batch of 24 N.

    # hyperparameter search (Optuna, resumable), then the best trial over three seeds; the same on a Ray cluster
    python train.py --config configs/tbert_mosi_minilm.yaml --search configs/search/mosi_minilm.yaml --seeds 1111 1112 1113
    python train.py --config configs/tbert_mosi_minilm.yaml --search configs/search/mosi_minilm.yaml \\
        --seeds 1111 1112 1113 --ray_address auto --ray_cpus_per_trial 4 --ray_gpus_per_trial 1

    # end on the Hub (HF_TOKEN or `hf auth login`)
    python train.py --config configs/demo.yaml --push_to_hub --hub_model_id you/cm-bert-demo

`--config x.yaml` sets defaults (keys are the dataclass field names below), command-line flags override them,
unknown keys are an error. The run writes a Hub-ready folder to `output_dir`: weights, config with `auto_map`,
model code, processor, `results.json` and the model card, then deletes its checkpoints and prints the test metrics.

Reruns: `output_dir/run_args.json` records the arguments that define the run when training starts. Rerunning the
same command after an interruption resumes from the last checkpoint; a finished run (`results.json` present), an
unfinished one started with other arguments, or a folder train.py did not write, is refused with a message.
`--overwrite_output_dir` trains afresh in a run folder, deleting only the files train.py writes (RUN_FILES below);
with `--seeds`, finished seeds of an interrupted sweep are kept and only the others are trained.
"""

import argparse
import json
import logging
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

import torch
import transformers
import yaml
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoTokenizer, HfArgumentParser, TrainingArguments, set_seed

from cmbert_hf import (
    CMBertConfig,
    CMBertDataCollator,
    CMBertForSequenceClassification,
    CMBertProcessor,
    compute_metrics,
    search,
)
from cmbert_hf.configuration_cmbert import MAX_LENGTH
from cmbert_hf.feature_extraction_cmbert import CMBertFeatureExtractor
from cmbert_hf.hub import PushError, check_model_location, push_folder
from cmbert_hf.metrics import markdown_table, summarize
from cmbert_hf.model_card import write_model_card
from cmbert_hf.run_folder import (
    RESULTS,
    ArgumentError,
    LogAtCheckpoints,
    fingerprint,
    plan_run,
    start_run_folder,
    whole_run_train_loss,
)
from cmbert_hf.training import CMBertTrainer, freeze
from dataset_script import load_mosi
from dataset_script.mosi import config_options

logger = logging.getLogger("train")

TEMPLATE = Path(__file__).resolve().parent / "model_card.md"
SPLITS = ("train", "validation", "test")


@dataclass
class RunArguments:
    """The model arguments of a run that are not fusion settings (those are added from `CMBertConfig`)."""

    model_name_or_path: str = field(
        default="bert-base-uncased",
        metadata={"help": "Text encoder checkpoint of any family (Hub id or folder), or a saved CM-BERT model; "
                  "`package:NAME` takes NAME.get_model_path()."},
    )
    text_only: bool = field(default=False, metadata={"help": "Drop the audio: the T-BERT baseline, same code."})
    original: bool = field(
        default=False,
        metadata={"help": "The original code's settings, audio-blind ("
                  + ", ".join(f"{name}={value}" for name, value in CMBertConfig.original_fusion().items())
                  + "), and its frozen regression head."},
    )
    freeze_embeddings: bool = field(default=True, metadata={"help": "Freeze the word-piece embeddings (paper)."})
    fusion_learning_rate: float = field(default=0.01, metadata={"help": "Learning rate of the fusion weights."})
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "The text encoder's attention (`sdpa`, `eager`, ...); default: transformers' choice, SDPA "
                  "where the encoder has it (DeBERTa-v2 has not: eager)."},
    )


def model_arguments(config_class=CMBertConfig):
    """`ModelArguments`: `RunArguments` plus one argument per fusion setting of `config_class`, with the type
    (choices for a `Literal`), default and help of its declaration."""
    settings = [
        (f.name, f.type, field(default=f.default, metadata={"help": f.metadata["help"]}))
        for f in config_class.fusion_settings()
    ]
    return make_dataclass("ModelArguments", settings, bases=(RunArguments,))


ModelArguments = model_arguments()


def fusion_settings(model_args) -> dict:
    """The fusion settings chosen for this run, as `CMBertConfig` keyword arguments."""
    return {f.name: getattr(model_args, f.name) for f in CMBertConfig.fusion_settings()}


@dataclass
class DataArguments:
    dataset_config: str = field(
        default="cmbert",
        metadata={"help": "dataset_script config: text, cmbert, mmsa_*, mosei_*, synthetic, recordings, spoken."},
    )
    data_dir: str | None = field(default=None, metadata={"help": "Folder with the config's files."})
    dataset_options: str | None = field(
        default=None,
        metadata={"help": "MosiConfig fields for the config, a YAML mapping or JSON string, e.g. "
                  "'{train_size: 800, cross_modal_fraction: 0.3}' (sizes, seed, fraction of the synthetic and "
                  "spoken corpora)."},
    )
    timings_column: str = field(
        default="word_timings",
        metadata={"help": "Recordings: the column of word timings; rows without (null) are aligned with "
                  "pocketsphinx. `true_timings` takes the spoken corpus's reference boundaries (espeak's)."},
    )
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={"help": "Processes for the audio feature extraction (alignment included). Default: this process "
                  "(on 2 shared cores, 200 spoken utterances took 20.5 s in one process, 24.2 s in two)."},
    )
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "datasets cache for the prepared data."})
    max_length: int = field(default=MAX_LENGTH, metadata={"help": "Word-piece truncation length (the paper's 50)."})
    pad_to_max_length: bool | None = field(
        default=None,
        metadata={"help": "Pad every batch to max_length (slower). Default: as --original implies, which pads "
                  "like the original code, whose whole-batch norm depends on the padding; otherwise no."},
    )
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Round padded lengths up (8 on GPU)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the train split (debugging)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate dev and test (debugging)."})


@dataclass
class CMBertTrainingArguments(TrainingArguments):
    output_dir: str = field(default="outputs/cmbert", metadata={"help": "Where checkpoints and the final folder go."})
    seeds: list[int] = field(
        default_factory=list,
        metadata={"help": "Run the whole recipe once per seed into output_dir/seed-N and aggregate."},
    )
    per_device_train_batch_size: int = 24
    per_device_eval_batch_size: int = 64
    num_train_epochs: float = 3.0
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: float = 0.1
    lr_scheduler_type: str = "linear"
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    save_total_limit: int | None = 1
    load_best_model_at_end: bool = True
    metric_for_best_model: str | None = "loss"
    greater_is_better: bool | None = False
    logging_steps: float = 10
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train afresh in output_dir, deleting the files of the run there (not other files)."},
    )

    def __post_init__(self):
        # Without an accelerator, processes started by `accelerate launch` only form a (gloo) DDP group when
        # the Trainer is told it runs on CPU; otherwise each rank would train alone on all the data.
        if not self.use_cpu and not torch.accelerator.is_available():
            self.use_cpu = True
        super().__post_init__()


CONFIG_HELP = "YAML recipe: its keys are the dataclass field names (the flags above, without --)."


def parse_args(argv: list[str] | None = None):
    """Dataclasses from `--config x.yaml` defaults and command-line overrides, the fusion settings validated by
    `CMBertConfig` before anything runs."""
    config_parser = argparse.ArgumentParser(add_help=False)
    config_parser.add_argument("--config", help=CONFIG_HELP)
    config, argv = config_parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, CMBertTrainingArguments))
    if config.config:
        path = config.config
        defaults = yaml.safe_load(Path(path).read_text()) or {}
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; keys are the fields of train.py's argument dataclasses.")
        parser.set_defaults(**defaults)
    # Parsed above; listed again (never stored: SUPPRESS) so that --help shows it.
    parser.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if model_args.original:
        defaults = ModelArguments()
        for name, value in CMBertConfig.original_fusion().items():
            chosen = getattr(model_args, name)
            if chosen not in (value, getattr(defaults, name)):
                raise ValueError(f"--original sets {name}={value!r}; it cannot go with {name}={chosen!r}.")
            setattr(model_args, name, value)
    try:
        CMBertConfig(**fusion_settings(model_args))
    except StrictDataclassError as error:
        raise ValueError(f"invalid model arguments: {error}") from error
    return model_args, data_args, training_args


def resolve_model_path(name: str) -> str:
    """`package:NAME` is a checkpoint shipped in a Python package (the offline MiniLM of the demo)."""
    if name.startswith("package:"):
        import importlib

        return str(importlib.import_module(name.split(":", 1)[1]).get_model_path())
    return name


def encode_splits(raw, data_args, processor, use_audio: bool, names=SPLITS):
    """Turns the splits `names` into unpadded model inputs (the collator pads per batch)."""

    def encode(batch):
        audio = {"audio_features": batch["audio"], "audio_level": batch["audio_level"][0]} if use_audio else {}
        encoded = processor(text=batch["text"], max_length=data_args.max_length, **audio)
        return {**encoded, "labels": batch["label"]}

    limits = {"train": data_args.max_train_samples}
    limits["validation"] = limits["test"] = data_args.max_eval_samples
    splits = {}
    for split in names:
        limit = limits[split]
        dataset = raw[split] if limit is None else raw[split].select(range(min(limit, len(raw[split]))))
        splits[split] = dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=f"encode {split}")
    return splits


def dataset_options(options) -> dict:
    """`--dataset_options` (a mapping from the YAML recipe, or a YAML/JSON string) as `load_mosi` keywords."""
    try:
        return config_options(options)
    except ValueError as error:
        raise ArgumentError(f"--dataset_options: {error}") from error


def featurize_audio(
    raw, dataset_config, feature_extractor, tokenizer, use_audio, training_args, timings_column=None, num_proc=None
):
    """Raw recordings become normalised word features (extracted per split, statistics from train only); returns
    the splits and where the model's audio vectors come from (`audio_feature_source`, `audio_feature_names`).
    Word spans come from `timings_column` where a row has them, else from pocketsphinx, else (alignment failed)
    from spreading the words; `alignment_counts` counts each."""
    if not use_audio:
        return raw, {"audio_feature_source": "none", "audio_feature_names": None}
    if not CMBertProcessor.has_raw_audio(raw["train"]):
        source = "synthetic" if dataset_config == "synthetic" else "covarep"
        return raw, {"audio_feature_source": source, "audio_feature_names": None}
    if timings_column not in raw["train"].column_names:
        if timings_column != DataArguments.timings_column:
            raise ArgumentError(f"--timings_column {timings_column!r}: the data has no such column "
                                f"({raw['train'].column_names}).")
        timings_column = None
    with training_args.main_process_first(desc="audio features"):
        raw = CMBertProcessor(feature_extractor, tokenizer).prepare_audio_splits(
            raw, timings_column=timings_column, num_proc=num_proc
        )
    return raw, {"audio_feature_source": "extractor", "audio_feature_names": feature_extractor.features}


def alignment_counts(splits) -> dict | None:
    """Where the word spans of extracted recordings came from, over all splits and per split: `given` (timings
    column), `aligned` (pocketsphinx), `spread` (pocketsphinx failed: words spread over the voiced span). `None`
    when no recordings were extracted."""
    if "word_timing" not in splits["train"].column_names:
        return None
    per_split = {name: dict(Counter(split["word_timing"])) for name, split in splits.items()}
    total = sum((Counter(counts) for counts in per_split.values()), Counter())
    return {key: total[key] for key in ("given", "aligned", "spread", "mismatched")} | {"per_split": per_split}


def check_arguments(model_args, data_args, training_args) -> None:
    """Refuses values that would train nothing or make no sense, before anything is loaded; settles the
    arguments whose default depends on others (`pad_to_max_length`)."""
    positive = {
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "per_device_eval_batch_size": training_args.per_device_eval_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "learning_rate": training_args.learning_rate,
        "fusion_learning_rate": model_args.fusion_learning_rate,
        "max_length": data_args.max_length,
        "max_train_samples": data_args.max_train_samples,
        "max_eval_samples": data_args.max_eval_samples,
    }
    # max_steps > 0 replaces the epochs; its default -1 means "use num_train_epochs".
    if training_args.max_steps <= 0:
        positive["num_train_epochs"] = training_args.num_train_epochs
    if training_args.max_steps == 0:
        positive["max_steps"] = 0
    for name, value in positive.items():
        if value is not None and not value > 0:
            raise ArgumentError(f"--{name} must be positive, got {value}.")
    if training_args.overwrite_output_dir and training_args.resume_from_checkpoint:
        raise ArgumentError("--overwrite_output_dir trains afresh; it cannot go with --resume_from_checkpoint.")
    try:
        check_model_location(resolve_model_path(model_args.model_name_or_path))
    except FileNotFoundError as error:
        raise ArgumentError(f"--model_name_or_path: {error}") from error
    if data_args.pad_to_max_length is None:
        data_args.pad_to_max_length = model_args.original
    dataset_options(data_args.dataset_options)


def prepare_data(model_args, data_args, training_args, names=SPLITS):
    """The processor (its audio width and provenance those of the data), the encoded splits `names` (a search
    leaves out the test split) and the `alignment_counts` of recordings (`None` for other data)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model_args.model_name_or_path))
    with training_args.main_process_first(desc="dataset preparation"):
        raw = load_mosi(data_args.dataset_config, data_dir=data_args.data_dir, cache_dir=data_args.dataset_cache_dir,
                        **dataset_options(data_args.dataset_options))
    use_audio = not model_args.text_only
    feature_extractor = CMBertFeatureExtractor()
    raw, provenance = featurize_audio(raw, data_args.dataset_config, feature_extractor, tokenizer, use_audio,
                                      training_args, data_args.timings_column, data_args.preprocessing_num_workers)
    alignment = alignment_counts(raw)
    # A text-only run leaves recordings undecoded.
    first_audio = [] if CMBertProcessor.has_raw_audio(raw["train"]) else raw["train"][0]["audio"]
    if not first_audio and not model_args.text_only:
        raise ArgumentError(f"dataset config {data_args.dataset_config!r} has no audio: pass --text_only for the "
                            "text-only baseline, or choose a config with audio (cmbert, mmsa_aligned, synthetic, ...).")
    # The width of the data's features (5 for MOSI's COVAREP columns, 74 for MOSEI) fixes the model's. Without
    # features (text only: the audio path is zero and never read) the config's default, not the extractor's width:
    # the text path's new weights are drawn after the audio projection's, so they would move with the extractor's
    # feature set (they did when it grew from 5 to 10 features, and the MOSI-text figures with them).
    audio_feature_size = len(first_audio[0]) if first_audio else CMBertConfig.audio_feature_size
    processor = CMBertProcessor(feature_extractor, tokenizer, audio_feature_size=audio_feature_size, **provenance)
    with training_args.main_process_first(desc="dataset encoding"):
        splits = encode_splits(raw, data_args, processor, use_audio, names)
    return processor, splits, alignment


def build_model(model_args, processor) -> CMBertForSequenceClassification:
    """The model to fine-tune for the processor's audio, its frozen parts frozen. Its new weights are drawn from the
    current RNG state."""
    model = CMBertForSequenceClassification.from_pretrained(
        resolve_model_path(model_args.model_name_or_path),
        num_labels=1,
        audio_feature_size=processor.audio_feature_size,
        audio_feature_source=processor.audio_feature_source,
        audio_feature_names=processor.audio_feature_names,
        attn_implementation=model_args.attn_implementation,
        **fusion_settings(model_args),
    )
    freeze(model, embeddings=model_args.freeze_embeddings, head=model_args.original, audio=model_args.text_only)
    return model


def build_trainer(model_args, data_args, training_args, processor, splits, trainer_class=CMBertTrainer, **kwargs):
    """The recipe's Trainer on `splits`; `kwargs` give it `model` (or `model_init`) and `callbacks`."""
    collator = CMBertDataCollator(
        pad_token_id=processor.tokenizer.pad_token_id,
        pad_to_multiple_of=data_args.pad_to_multiple_of,
        max_length=data_args.max_length if data_args.pad_to_max_length else None,
    )
    return trainer_class(
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=collator,
        processing_class=processor,
        compute_metrics=compute_metrics,
        fusion_learning_rate=model_args.fusion_learning_rate,
        **kwargs,
    )


def run(model_args, data_args, training_args, callbacks=None, reuse_finished: bool = False) -> dict:
    """One training run: train, evaluate on dev and test, save the Hub-ready folder. Returns the metrics."""
    folder = Path(training_args.output_dir)
    run_args = fingerprint(model_args, data_args, training_args)
    plan, found = plan_run(folder, run_args, training_args.overwrite_output_dir, reuse_finished)
    if plan == "finished":
        logger.warning("%s holds a finished run of these arguments: its results are kept, nothing is trained.", folder)
        return {split: found[split] for split in ("train", "dev", "test")}
    checkpoint = training_args.resume_from_checkpoint or found
    set_seed(training_args.seed)
    processor, splits, alignment = prepare_data(model_args, data_args, training_args)
    model = build_model(model_args, processor)
    callbacks = [LogAtCheckpoints(), *(callbacks or [])]
    trainer = build_trainer(model_args, data_args, training_args, processor, splits, model=model, callbacks=callbacks)
    if trainer.is_world_process_zero():
        start_run_folder(folder, run_args, fresh=plan == "fresh")
    trainer.accelerator.wait_for_everyone()
    if checkpoint:
        logger.warning("Resuming from %s (a new --output_dir starts afresh)", checkpoint)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    # The Trainer's train_loss counts only this process's steps, not those before a resume.
    train_result.metrics["train_loss"] = whole_run_train_loss(trainer.state.log_history)
    test = trainer.predict(splits["test"], metric_key_prefix="test")
    metrics = {
        "train": train_result.metrics,
        "dev": trainer.evaluate(splits["validation"], metric_key_prefix="dev"),
        "test": test.metrics,
    }
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(training_args.output_dir)
        # Gathered over all processes: one score per test sample, in dataset order.
        predictions = test.predictions[0] if isinstance(test.predictions, tuple) else test.predictions
        Path(training_args.output_dir, "test_predictions.json").write_text(json.dumps(predictions.reshape(-1).tolist()))
        samples = {split: len(dataset) for split, dataset in splits.items()}
        audio = None if alignment is None else audio_record(processor.feature_extractor)
        write_results(training_args.output_dir, model_args, data_args, training_args, metrics, trainer.state, samples,
                      processor.audio_feature_size, audio, alignment)
        # The run is complete: its checkpoints (optimizer state included) only served to resume it.
        for path in folder.glob("checkpoint-*"):
            shutil.rmtree(path)
    if alignment is not None:
        logger.warning("word timings of the recordings, all splits: %d given, %d aligned by pocketsphinx, %d spread "
                       "over the voiced span (pocketsphinx could not align them)",
                       alignment["given"], alignment["aligned"], alignment["spread"])
    return metrics


def audio_record(feature_extractor) -> dict:
    """What results.json (and the model card) say about features extracted from recordings."""
    return {
        "features": feature_extractor.features,
        "source": "extracted from the recordings by CMBertFeatureExtractor (librosa: YIN f0, RMS energy, MFCC)",
        "aligner": feature_extractor.aligner,
        "normalization": "standardised with the train split's per-feature mean and std (feature_mean, feature_std "
                         "in preprocessor_config.json)",
    }


def write_results(output_dir, model_args, data_args, training_args, metrics, state, samples, audio_feature_size,
                  audio=None, alignment=None) -> None:
    """results.json and the model card: written last, so a folder that has them is complete. `audio` and
    `alignment`: the `audio_record` and `alignment_counts` of features extracted from recordings."""
    results = {
        "seed": training_args.seed,
        "global_step": state.global_step,
        "world_size": training_args.world_size,
        "total_train_batch_size": total_train_batch_size(training_args),
        "samples": samples,
        "audio_feature_size": audio_feature_size,
        "audio": audio,
        "alignment": alignment,
        "model": vars(model_args),
        "data": vars(data_args),
        "training": training_args.to_dict(),
        **metrics,
    }
    Path(output_dir, RESULTS).write_text(json.dumps(results, indent=2, default=str))
    write_model_card(TEMPLATE, output_dir, results, training_args.hub_model_id)


def total_train_batch_size(training_args) -> int:
    """Samples per optimiser step over all processes."""
    return training_args.per_device_train_batch_size * training_args.world_size * training_args.gradient_accumulation_steps


def main(argv: list[str] | None = None, callbacks=None) -> dict:
    search_args, argv = search.parse_search_args(sys.argv[1:] if argv is None else argv)
    model_args, data_args, training_args = parse_args(argv)
    check_arguments(model_args, data_args, training_args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning(
        "process %d of %d, device %s, distributed %s, global train batch %d",
        training_args.process_index, training_args.world_size, training_args.device, training_args.parallel_mode.value,
        total_train_batch_size(training_args),
    )
    push = training_args.push_to_hub
    if push and not training_args.hub_model_id:
        raise ArgumentError("--push_to_hub needs --hub_model_id NAMESPACE/NAME.")
    if training_args.hub_revision:
        raise ArgumentError("--hub_revision is not supported: the run is pushed to the repository's main branch.")
    if training_args.seeds and training_args.resume_from_checkpoint:
        raise ArgumentError("--resume_from_checkpoint names one run's checkpoint; with --seeds each seed's folder "
                            "(output_dir/seed-N) resumes from its own last checkpoint by itself.")
    # The Trainer would push every checkpoint; the finished folder is pushed once, below.
    training_args.push_to_hub = False
    main_process = training_args.process_index == 0

    if search_args.search or search_args.ray_address:
        if push:
            raise ArgumentError("--push_to_hub pushes one model: push a seed's folder with `cmbert push` afterwards.")
        return search.main(sys.modules[__name__], argv, model_args, data_args, training_args, search_args, callbacks)
    if not training_args.seeds:
        metrics = run(model_args, data_args, training_args, callbacks)
        if main_process:
            print(markdown_table({training_args.seed: metrics}), end="")
            print(f"model, results.json and model card in {training_args.output_dir}")
        if push and main_process:
            push_or_explain(training_args)
        return metrics

    if push:
        raise ArgumentError("--push_to_hub pushes one model: push a seed's folder with `cmbert push` after the sweep.")
    root = Path(training_args.output_dir)
    if (root / RESULTS).is_file() and not training_args.overwrite_output_dir:
        raise ArgumentError(f"{root} holds a finished seed sweep ({RESULTS}): choose a new --output_dir, or pass "
                            f"--overwrite_output_dir to train every seed afresh.")
    if training_args.overwrite_output_dir and main_process:  # the old aggregate must not outlive its seeds
        for name in (RESULTS, "results.md"):
            (root / name).unlink(missing_ok=True)
    per_seed = {}
    for seed in training_args.seeds:
        training_args.seed, training_args.output_dir = seed, str(root / f"seed-{seed}")
        per_seed[seed] = run(model_args, data_args, training_args, callbacks, reuse_finished=True)
    if main_process:
        return write_seed_results(root, per_seed)
    return {"per_seed": per_seed, "test_mean_std": summarize(per_seed)}


def write_seed_results(root, per_seed: dict[int, dict], **extra) -> dict:
    """results.json (per seed, test mean and std, and `extra`) and results.md of a run over seeds; prints the table."""
    summary = summarize(per_seed)
    results = {"per_seed": per_seed, "test_mean_std": summary, **extra}
    Path(root, RESULTS).write_text(json.dumps(results, indent=2, default=str))
    Path(root, "results.md").write_text(markdown_table(per_seed, summary))
    print(markdown_table(per_seed, summary), end="")
    print(f"per-seed folders, results.json and results.md in {root}")
    return results


def push_or_explain(training_args) -> None:
    output_dir, repo_id = training_args.output_dir, training_args.hub_model_id
    try:
        commit = push_folder(output_dir, repo_id, token=training_args.hub_token, private=training_args.hub_private_repo)
    except PushError as error:
        logger.error("%s", error)
        raise SystemExit(1) from error
    # Printed, not logged: users pin this revision when they load the model (see the model card).
    print(f"pushed {output_dir} to {repo_id} at revision {commit.oid}")


if __name__ == "__main__":
    try:
        main()
    except ArgumentError as error:
        sys.exit(f"train.py: error: {error}")
