"""Fine-tune CM-BERT on CMU-MOSI (or MOSEI, or the synthetic set) with the Hugging Face Trainer.

Launch commands:

    # offline demo: MiniLM backbone, synthetic MOSI-shaped data, one CPU process
    python train.py --config configs/demo.yaml

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
model code, processor, `results.json` and the model card.
"""

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
import yaml
from transformers import AutoTokenizer, HfArgumentParser, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from cmbert_hf import CMBertDataCollator, CMBertForSequenceClassification, CMBertProcessor, compute_metrics, search
from cmbert_hf.configuration_cmbert import ORIGINAL_FUSION
from cmbert_hf.feature_extraction_cmbert import CMBertFeatureExtractor
from cmbert_hf.hub import PushError, push_folder
from cmbert_hf.model_card import write_model_card
from cmbert_hf.training import CMBertTrainer, freeze
from dataset_script import load_mosi

logger = logging.getLogger("train")

TEMPLATE = Path(__file__).resolve().parent / "model_card.md"
SPLITS = ("train", "validation", "test")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="bert-base-uncased",
        metadata={"help": "BERT checkpoint (Hub id or folder); `package:NAME` takes NAME.get_model_path()."},
    )
    text_only: bool = field(default=False, metadata={"help": "Drop the audio: the T-BERT baseline, same code."})
    original: bool = field(
        default=False,
        metadata={"help": "The original code's quirks: whole-batch text scaling, unscaled audio, zero [CLS] audio "
                  "(audio-blind), frozen regression head."},
    )
    fusion_dim: int = field(default=30, metadata={"help": "Size of the text and audio projections."})
    fusion_attention_dropout: float = field(default=0.3, metadata={"help": "Dropout on the multimodal attention."})
    cls_audio: str = field(default="mean", metadata={"help": "`mean` (audio reaches the prediction) or `input`."})
    text_scaling: str = field(default="sample", metadata={"help": "`sample`, `batch` (original) or `none`."})
    audio_scaling: str = field(default="sample", metadata={"help": "`sample`, `batch` or `none` (original)."})
    freeze_embeddings: bool = field(default=True, metadata={"help": "Freeze the word-piece embeddings (paper)."})
    fusion_learning_rate: float = field(default=0.01, metadata={"help": "Learning rate of the fusion weights."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "`sdpa` or `eager` for the BERT encoder."})


@dataclass
class DataArguments:
    dataset_config: str = field(
        default="cmbert", metadata={"help": "dataset_script config: text, cmbert, mmsa_*, mosei_*, synthetic."}
    )
    data_dir: str | None = field(default=None, metadata={"help": "Folder with the config's files."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "datasets cache for the prepared data."})
    max_length: int = field(default=50, metadata={"help": "Word-piece truncation length (the paper's 50)."})
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every batch to max_length like the original (slower)."}
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

    def __post_init__(self):
        # Without an accelerator, processes started by `accelerate launch` only form a (gloo) DDP group when
        # the Trainer is told it runs on CPU; otherwise each rank would train alone on all the data.
        if not self.use_cpu and not torch.accelerator.is_available():
            self.use_cpu = True
        super().__post_init__()


def parse_args(argv: list[str] | None = None):
    """Dataclasses from `--config x.yaml` defaults and command-line overrides."""
    config_parser = argparse.ArgumentParser(add_help=False)
    config_parser.add_argument("--config", help="YAML recipe: its keys are the dataclass fields below.")
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
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if model_args.original:
        defaults = ModelArguments()
        for name, value in ORIGINAL_FUSION.items():
            chosen = getattr(model_args, name)
            if chosen not in (value, getattr(defaults, name)):
                raise ValueError(f"--original sets {name}={value!r}; it cannot go with {name}={chosen!r}.")
            setattr(model_args, name, value)
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


def prepare_data(model_args, data_args, training_args, names=SPLITS):
    """The processor and the encoded splits `names` (a search leaves out the test split); and the width of the
    data's audio features."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model_args.model_name_or_path))
    with training_args.main_process_first(desc="dataset preparation"):
        raw = load_mosi(data_args.dataset_config, data_dir=data_args.data_dir, cache_dir=data_args.dataset_cache_dir)
    first_audio = raw["train"][0]["audio"]
    if not first_audio and not model_args.text_only:
        raise ValueError(f"dataset config {data_args.dataset_config!r} has no audio: pass --text_only for the "
                         "text-only baseline, or choose a config with audio (cmbert, mmsa_aligned, synthetic, ...).")
    use_audio = not model_args.text_only
    feature_extractor = CMBertFeatureExtractor()
    # The width of the data's features (5 for MOSI's COVAREP columns, 74 for MOSEI) fixes the model's.
    audio_width = len(first_audio[0]) if first_audio else feature_extractor.feature_size
    processor = CMBertProcessor(feature_extractor, tokenizer, audio_feature_size=audio_width)
    with training_args.main_process_first(desc="dataset encoding"):
        splits = encode_splits(raw, data_args, processor, use_audio, names)
    return processor, splits, audio_width


def build_model(model_args, audio_width: int) -> CMBertForSequenceClassification:
    """The model to fine-tune, its frozen parts frozen. Its new weights are drawn from the current RNG state."""
    model = CMBertForSequenceClassification.from_pretrained(
        resolve_model_path(model_args.model_name_or_path),
        num_labels=1,
        audio_feature_size=audio_width,
        fusion_dim=model_args.fusion_dim,
        fusion_attention_dropout=model_args.fusion_attention_dropout,
        cls_audio=model_args.cls_audio,
        text_scaling=model_args.text_scaling,
        audio_scaling=model_args.audio_scaling,
        attn_implementation=model_args.attn_implementation,
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


def run(model_args, data_args, training_args, callbacks=None) -> dict:
    """One training run: train, evaluate on dev and test, save the Hub-ready folder. Returns the metrics."""
    set_seed(training_args.seed)
    processor, splits, audio_width = prepare_data(model_args, data_args, training_args)
    model = build_model(model_args, audio_width)
    trainer = build_trainer(model_args, data_args, training_args, processor, splits, model=model, callbacks=callbacks)
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None and os.path.isdir(training_args.output_dir):
        checkpoint = get_last_checkpoint(training_args.output_dir)
    if checkpoint:
        logger.warning("Resuming from %s (a new --output_dir starts afresh)", checkpoint)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
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
        write_results(training_args.output_dir, model_args, data_args, training_args, metrics, trainer.state, samples,
                      audio_width)
    return metrics


def write_results(output_dir, model_args, data_args, training_args, metrics, state, samples, audio_width) -> None:
    """results.json and the model card: written last, so a folder that has them is complete."""
    results = {
        "seed": training_args.seed,
        "global_step": state.global_step,
        "world_size": training_args.world_size,
        "total_train_batch_size": total_train_batch_size(training_args),
        "samples": samples,
        "audio_feature_size": audio_width,
        "model": vars(model_args),
        "data": vars(data_args),
        "training": training_args.to_dict(),
        **metrics,
    }
    Path(output_dir, "results.json").write_text(json.dumps(results, indent=2, default=str))
    write_model_card(TEMPLATE, output_dir, results, training_args.hub_model_id)


def total_train_batch_size(training_args) -> int:
    """Samples per optimiser step over all processes."""
    return training_args.per_device_train_batch_size * training_args.world_size * training_args.gradient_accumulation_steps


def summarize(per_seed: dict[int, dict]) -> dict:
    """Mean and standard deviation over seeds of every test metric (loss and `cmbert_hf.metrics`)."""
    timing = ("_runtime", "_per_second", "_epoch")
    names = [n for n in next(iter(per_seed.values()))["test"] if not n.endswith(timing)]
    values = {name: [run["test"][name] for run in per_seed.values()] for name in names}
    return {name: {"mean": float(np.mean(v)), "std": float(np.std(v))} for name, v in values.items()}


def main(argv: list[str] | None = None, callbacks=None) -> dict:
    search_args, argv = search.parse_search_args(sys.argv[1:] if argv is None else argv)
    model_args, data_args, training_args = parse_args(argv)
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
        raise ValueError("--push_to_hub needs --hub_model_id NAMESPACE/NAME.")
    if training_args.hub_revision:
        raise ValueError("--hub_revision is not supported: the run is pushed to the repository's main branch.")
    if training_args.seeds and training_args.resume_from_checkpoint:
        raise ValueError("--resume_from_checkpoint names one run's checkpoint; with --seeds each seed's folder "
                         "(output_dir/seed-N) resumes from its own last checkpoint by itself.")
    # The Trainer would push every checkpoint; the finished folder is pushed once, below.
    training_args.push_to_hub = False

    if search_args.search or search_args.ray_address:
        if push:
            raise ValueError("--push_to_hub pushes one model: push a seed's folder with `cmbert push` afterwards.")
        return search.main(sys.modules[__name__], argv, model_args, data_args, training_args, search_args, callbacks)
    if not training_args.seeds:
        metrics = run(model_args, data_args, training_args, callbacks)
        if push and training_args.process_index == 0:
            push_or_explain(training_args)
        return metrics

    if push:
        raise ValueError("--push_to_hub pushes one model: push a seed's folder with `cmbert push` after the sweep.")
    root = training_args.output_dir
    per_seed = {}
    for seed in training_args.seeds:
        training_args.seed, training_args.output_dir = seed, os.path.join(root, f"seed-{seed}")
        per_seed[seed] = run(model_args, data_args, training_args, callbacks)
    if training_args.process_index == 0:
        return write_seed_results(root, per_seed)
    return {"per_seed": per_seed, "test_mean_std": summarize(per_seed)}


def write_seed_results(root, per_seed: dict[int, dict], **extra) -> dict:
    """results.json (per seed, test mean and std, and `extra`) and results.md of a run over seeds."""
    summary = summarize(per_seed)
    results = {"per_seed": per_seed, "test_mean_std": summary, **extra}
    Path(root, "results.json").write_text(json.dumps(results, indent=2, default=str))
    Path(root, "results.md").write_text(markdown_table(per_seed, summary))
    print(markdown_table(per_seed, summary))
    return results


def markdown_table(per_seed: dict[int, dict], summary: dict) -> str:
    names = list(summary)
    lines = ["| seed | " + " | ".join(n.removeprefix("test_") for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for seed, run_metrics in per_seed.items():
        lines.append(f"| {seed} | " + " | ".join(f"{run_metrics['test'][n]:.3f}" for n in names) + " |")
    lines.append("| mean ± std | " + " | ".join(f"{s['mean']:.3f} ± {s['std']:.3f}" for s in summary.values()) + " |")
    return "\n".join(lines) + "\n"


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
    main()
