"""The training recipe's arguments (as TRL keeps `SFTConfig` beside `SFTTrainer`) and their parser.

`--config x.yaml` sets defaults (keys are the dataclass field names), command-line flags override them, unknown
keys and flags are an error. Every mistake the parser finds is an `ArgumentError`: one line, no usage dump.
"""

import argparse
import difflib
import sys
import textwrap
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path

import torch
import yaml
from huggingface_hub.errors import StrictDataclassError
from transformers import HfArgumentParser, TrainingArguments

from .configuration_cmbert import MAX_LENGTH, CMBertConfig
from .run_folder import ArgumentError


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
                  + "), its frozen regression head and its batches padded to max_length."},
    )
    freeze_embeddings: bool = field(default=True, metadata={"help": "Freeze the word-piece embeddings (paper)."})
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
    arguments = make_dataclass("ModelArguments", settings, bases=(RunArguments,))
    # Found by pickle (Trainer checkpoints, Ray workers) under this module's name.
    arguments.__module__ = __name__
    return arguments


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
    drop_mismatched: bool = field(
        default=False,
        metadata={"help": "Recordings: leave out the rows whose transcript does not fit its audio (counted as "
                  "`mismatched` in results.json either way)."},
    )
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={"help": "Processes for the audio feature extraction (alignment included). Default: this process "
                  "(on 2 shared cores, 200 spoken utterances took 20.5 s in one process, 24.2 s in two)."},
    )
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "datasets cache for the prepared data."})
    max_length: int = field(
        default=MAX_LENGTH,
        metadata={"help": "Word-piece truncation length (the paper's 50); saved with the processor, which applies "
                  "it at inference."},
    )
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
    """`TrainingArguments` with the recipe's defaults, the fusion layer's learning rate and the seed sweep."""

    output_dir: str = field(default="outputs/cmbert", metadata={"help": "Where checkpoints and the final folder go."})
    fusion_learning_rate: float = field(
        default=0.01, metadata={"help": "Learning rate of the fusion layer's weights (the paper's 0.01)."}
    )
    seeds: list[int] = field(
        default_factory=list,
        metadata={"help": "Run the whole recipe once per seed into output_dir/seed-N and aggregate."},
    )
    per_device_train_batch_size: int = field(default=24, metadata={"help": "Batch size per process."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per process."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Training epochs (unless --max_steps > 0)."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Learning rate of the encoder and the head."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases, LayerNorms)."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Warm-up: steps, or a fraction of them if < 1."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "The learning-rate schedule."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on the validation split."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint (to resume)."})
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept beside the best."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "End with the best validation checkpoint."})
    metric_for_best_model: str | None = field(default="loss", metadata={"help": "What `best` means."})
    greater_is_better: bool | None = field(default=False, metadata={"help": "Whether that metric is better high."})
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every N steps."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train afresh in output_dir, deleting the files of the run there (not other files)."},
    )
    push_to_hub: bool = field(
        default=False,
        metadata={"help": "Push the finished folder (model, processor, results, card) to --hub_model_id, once, "
                  "at the end of the run (no checkpoint is pushed)."},
    )

    def __post_init__(self):
        # Without an accelerator, processes started by `accelerate launch` only form a (gloo) DDP group when
        # the Trainer is told it runs on CPU; otherwise each rank would train alone on all the data.
        if not self.use_cpu and not torch.accelerator.is_available():
            self.use_cpu = True
        super().__post_init__()


@dataclass
class SearchArguments:
    search: str | None = field(
        default=None, metadata={"help": "Search YAML (configs/search/*.yaml): trials, then the best over --seeds."}
    )
    n_trials: int | None = field(default=None, metadata={"help": "Trials to run (default: the search YAML's)."})
    ray_address: str | None = field(
        default=None,
        metadata={"help": "Run trials and seeds on Ray: `local` (a new instance here), `auto` (the cluster this "
                  "machine joined) or HOST:PORT."},
    )
    ray_cpus_per_trial: float = field(default=1, metadata={"help": "CPUs Ray gives each trial or seed."})
    ray_gpus_per_trial: float = field(default=0, metadata={"help": "GPUs Ray gives each trial or seed."})
    ray_storage_path: str | None = field(
        default=None, metadata={"help": "Tune's results and checkpoints, seen by all nodes (default output_dir/ray)."}
    )


CONFIG_HELP = "YAML recipe: its keys are the argument names below, without --."
GROUPS = (SearchArguments, ModelArguments, DataArguments, CMBertTrainingArguments)


class _Parser(HfArgumentParser):
    """Errors as `ArgumentError` (one line) instead of the usage and exit status 2."""

    def error(self, message):
        raise ArgumentError(message)


def build_parser(prog: str | None = None) -> HfArgumentParser:
    """The recipe's parser. `--help` details the recipe's own arguments and names the other `TrainingArguments`
    flags in one paragraph (their help is transformers' documentation)."""
    parser = _Parser(GROUPS, prog=prog, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                     usage="%(prog)s [--config x.yaml] [--search y.yaml] [--ARGUMENT VALUE ...]")
    parser.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    # The fields CMBertTrainingArguments declares (its own, or TrainingArguments' with the recipe's default).
    inherited = {f.name for f in fields(TrainingArguments)} - set(CMBertTrainingArguments.__annotations__)
    others = []
    for action in parser._actions:
        if action.dest in inherited:
            action.help = argparse.SUPPRESS
            others.append(action.option_strings[0])
    parser.epilog = "Every other TrainingArguments field is a flag too (see transformers' TrainingArguments):\n" + (
        textwrap.fill(" ".join(sorted(set(others))), width=110)
    )
    return parser


def parse_command(argv: list[str] | None = None, prog: str | None = None):
    """`(search_args, model_args, data_args, training_args)` from `--config x.yaml` defaults and command-line
    overrides, the fusion settings validated by `CMBertConfig` before anything runs."""
    argv = sys.argv[1:] if argv is None else list(argv)
    config_parser = _Parser(add_help=False, allow_abbrev=False)
    config_parser.add_argument("--config")
    config, argv = config_parser.parse_known_args(argv)
    parser = build_parser(prog)
    known = {action.dest for action in parser._actions} - {"help"}
    defaults = _read_config(config.config, known) if config.config else {}
    parser.set_defaults(**defaults)
    try:
        search_args, model_args, data_args, training_args, rest = parser.parse_args_into_dataclasses(
            args=argv, return_remaining_strings=True
        )
    except ValueError as error:  # a dataclass's own check of a value the parser took (an unknown scheduler, ...)
        raise ArgumentError(" ".join(str(error).split())) from error
    if rest:
        raise ArgumentError(_unknown(rest[0], [s for a in parser._actions for s in a.option_strings]))
    check_data_source(config.config, defaults, argv, data_args)
    if model_args.original:
        defaults = ModelArguments()
        for name, value in CMBertConfig.original_fusion().items():
            chosen = getattr(model_args, name)
            if chosen not in (value, getattr(defaults, name)):
                raise ArgumentError(f"--original sets {name}={value!r}; it cannot go with {name}={chosen!r}.")
            setattr(model_args, name, value)
    check_fusion_settings(model_args)
    return search_args, model_args, data_args, training_args


def check_fusion_settings(model_args) -> None:
    """Raises `ArgumentError` where the config's validators refuse the fusion settings (before any model is built)."""
    try:
        CMBertConfig(**fusion_settings(model_args))
    except StrictDataclassError as error:
        raise ArgumentError(f"invalid model arguments: {' '.join(str(error).split())}") from error


def parse_args(argv: list[str] | None = None):
    """`(model_args, data_args, training_args)` of a command line (its search arguments left aside)."""
    return parse_command(argv)[1:]


# A recipe's `data_dir` belongs to its `dataset_config`: `--config configs/demo.yaml --dataset_config recordings`
# without `--data_dir` would otherwise read the demo's corpus as "recordings" and train on it, exit 0, with the
# demo's numbers.
def check_data_source(recipe: str | None, defaults: dict, argv: list[str], data_args) -> None:
    """Raises `ArgumentError` when `argv` changes the `dataset_config` of the YAML `recipe` (whose keys are
    `defaults`) but the run would still read the recipe's `data_dir`, or when the `recordings` config has no
    `data_dir`."""
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    inherited = "--data_dir" not in given and defaults.get("data_dir") is not None
    if inherited and "--dataset_config" in given and data_args.dataset_config != defaults.get("dataset_config"):
        raise ArgumentError(
            f"--dataset_config {data_args.dataset_config} replaces {recipe}'s dataset_config "
            f"{defaults.get('dataset_config')!r} but would read its data_dir {defaults['data_dir']!r}, that config's "
            f"data: pass --data_dir with the folder of the {data_args.dataset_config!r} data."
        )
    if data_args.dataset_config == "recordings" and not data_args.data_dir:
        raise ArgumentError(
            "--dataset_config recordings needs --data_dir: the folder of your audio files and their metadata.csv or "
            "metadata.jsonl (configs/recordings.yaml describes the columns)."
        )



def _read_config(path: str, known: set[str]) -> dict:
    if not Path(path).is_file():
        raise ArgumentError(f"--config {path}: no such file.")
    try:
        defaults = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as error:
        raise ArgumentError(f"--config {path}: not valid YAML ({' '.join(str(error).split())}).") from error
    if not isinstance(defaults, dict):
        raise ArgumentError(f"--config {path}: expected a mapping of argument names to values.")
    unknown = sorted(set(defaults) - known)
    if unknown:
        hints = [f"{key} (did you mean {match[0]}?)" if (match := difflib.get_close_matches(key, known, 1)) else key
                 for key in unknown]  # fmt: skip
        raise ArgumentError(f"{path}: unknown keys {unknown}: {', '.join(hints)}; keys are the recipe's argument "
                            "names (`cmbert train --help`).")
    return defaults


def _unknown(flag: str, options: list[str]) -> str:
    name = flag.split("=", 1)[0]
    match = difflib.get_close_matches(name, options, 1)
    hint = f" (did you mean {match[0]}?)" if match else ""
    return f"unrecognized argument {name}{hint}; `--help` lists the arguments."


__all__ = [
    "CMBertTrainingArguments", "DataArguments", "ModelArguments", "RunArguments", "SearchArguments", "build_parser",
    "check_fusion_settings", "fusion_settings", "model_arguments", "parse_args", "parse_command",
]  # fmt: skip
