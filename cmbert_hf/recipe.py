"""The CM-BERT training recipe: data preparation, model building, training, results and the seed sweep.

`cmbert train` and `train.py` run `main`; `cmbert_hf.search` runs the same `prepare_data`, `build_model`,
`build_trainer` and `run` for its trials and seeds. The arguments are `cmbert_hf.training_args`' dataclasses.

The run writes a Hub-ready folder to `output_dir`: weights, config with `auto_map`, model code, processor (with the
preprocessing the model was trained with), `results.json` and the model card, then deletes its checkpoints and
prints the test metrics.

Reruns: `output_dir/run_args.json` records the arguments that define the run when training starts. Rerunning the
same command after an interruption resumes from the last checkpoint; a finished run (`results.json` present), an
unfinished one started with other arguments, or a folder the recipe did not write, is refused with a message.
`--overwrite_output_dir` trains afresh in a run folder, deleting only the files the recipe writes (`RUN_FILES`);
with `--seeds`, finished seeds of an interrupted sweep are kept and only the others are trained.
"""

import copy
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import transformers
from transformers import AutoTokenizer, set_seed

from .configuration_cmbert import CMBertConfig
from .data_collator import CMBertDataCollator
from .feature_extraction_cmbert import CMBertFeatureExtractor
from .featurize import alignment_counts, featurize_training_splits
from .hub import PushError, check_model_location, push_folder
from .metrics import compute_metrics, markdown_table, summarize
from .model_card import TEMPLATE, training_data, without_local_paths, write_model_card
from .modeling_cmbert import CMBertForSequenceClassification
from .processing_cmbert import CMBertProcessor
from .run_folder import (
    RESULTS,
    ArgumentError,
    LogAtCheckpoints,
    fingerprint,
    locks_output_dir,
    plan_run,
    start_run_folder,
    whole_run_train_loss,
)
from .training import CMBertTrainer, freeze
from .training_args import DataArguments, fusion_settings, parse_command

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def resolve_model_path(name: str) -> str:
    """`package:NAME` is a checkpoint shipped in a Python package (the offline MiniLM of the demo)."""
    if name.startswith("package:"):
        import importlib

        return str(importlib.import_module(name.split(":", 1)[1]).get_model_path())
    return name


def encode_splits(raw, data_args, processor, use_audio: bool, names=SPLITS, audio_level="word"):
    """Turns the splits `names` into unpadded model inputs, truncated at the processor's `max_length` (the collator
    pads per batch)."""

    def encode(batch):
        audio = {"audio_features": batch["audio_features"], "audio_level": audio_level} if use_audio else {}
        encoded = processor(text=batch["text"], padding=False, **audio)
        return {**encoded, "labels": batch["label"]}

    limits = {"train": data_args.max_train_samples}
    limits["validation"] = limits["test"] = data_args.max_eval_samples
    splits = {}
    for split in names:
        limit = limits[split]
        dataset = raw[split] if limit is None else raw[split].select(range(min(limit, len(raw[split]))))
        splits[split] = dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=f"encode {split}")
    return splits


def dataset_options(options, config: str | None = None) -> dict:
    """`--dataset_options` (a mapping from the YAML recipe, or a YAML/JSON string) as `load_mosi` keywords; with
    `config`, that config's options only (and the config a known one)."""
    from dataset_script import UnknownConfigError
    from dataset_script.mosi import config_options

    try:
        return config_options(options, config)
    except UnknownConfigError as error:
        raise ArgumentError(f"--dataset_config: {error}") from error
    except ValueError as error:
        raise ArgumentError(f"--dataset_options: {error}") from error


def featurize_audio(raw, facts, feature_extractor, use_audio, training_args, timings_column=None, num_proc=None):
    """Raw recordings become normalised word features (extracted per split, statistics from train only); returns
    the splits and where the model's audio vectors come from (`audio_feature_source`, `audio_feature_names`).
    Word spans come from `timings_column` where a row has them, else from pocketsphinx, else (alignment failed)
    from spreading the words; `alignment_counts` counts each."""
    if not use_audio:
        return raw, {"audio_feature_source": "none", "audio_feature_names": None}
    if facts["level"] != "waveform":
        return raw, {"audio_feature_source": facts["source"], "audio_feature_names": None}
    if timings_column not in raw["train"].column_names:
        if timings_column != DataArguments.timings_column:
            raise ArgumentError(f"--timings_column {timings_column!r}: the data has no such column "
                                f"({raw['train'].column_names}).")
        timings_column = None
    with training_args.main_process_first(desc="audio features"):
        raw = featurize_training_splits(raw, feature_extractor, timings_column=timings_column, num_proc=num_proc)
    return raw, {"audio_feature_source": "extractor", "audio_feature_names": feature_extractor.features}


def check_arguments(model_args, data_args, training_args) -> None:
    """Refuses values that would train nothing or make no sense, before anything is loaded; settles the
    arguments whose default depends on others (`pad_to_max_length`)."""
    positive = {
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "per_device_eval_batch_size": training_args.per_device_eval_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "learning_rate": training_args.learning_rate,
        "fusion_learning_rate": training_args.fusion_learning_rate,
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
    for name in ("learning_rate", "fusion_learning_rate"):
        if not positive[name] < 1:
            raise ArgumentError(f"--{name} must be below 1 (a step size of AdamW), got {positive[name]}.")
    # A fraction of an epoch leaves part of the train split unseen in a way the run does not record: --max_steps
    # says it outright.
    if "num_train_epochs" in positive and not positive["num_train_epochs"] >= 1:
        raise ArgumentError(f"--num_train_epochs must be at least 1 (--max_steps for a shorter run), got "
                            f"{positive['num_train_epochs']}.")
    if training_args.overwrite_output_dir and training_args.resume_from_checkpoint:
        raise ArgumentError("--overwrite_output_dir trains afresh; it cannot go with --resume_from_checkpoint.")
    try:
        check_model_location(resolve_model_path(model_args.model_name_or_path))
    except FileNotFoundError as error:
        raise ArgumentError(f"--model_name_or_path: {error}") from error
    if data_args.pad_to_max_length is None:
        data_args.pad_to_max_length = model_args.original
    dataset_options(data_args.dataset_options, data_args.dataset_config)  # before any model or data is loaded


def check_launcher(world_size: int) -> None:
    """Refuses a run that `accelerate launch --cpu --num_processes N` (N > 1) started as one process: that launcher
    starts a single process without a word, leaving only its traces: `ACCELERATE_USE_CPU`, and the rendezvous address
    `MASTER_ADDR` it sets only for more than one process, but no `WORLD_SIZE` (which torchrun gives each rank)."""
    launched_alone = {"ACCELERATE_USE_CPU", "MASTER_ADDR"} <= set(os.environ) and "WORLD_SIZE" not in os.environ
    if world_size == 1 and launched_alone:
        raise ArgumentError(
            "accelerate launch --cpu --num_processes N starts one process, not N: launch with --config_file "
            "configs/accelerate/cpu_2proc.yaml (or --multi_gpu --num_processes 2 without --cpu, on a machine "
            "without GPUs) for several CPU processes, or without --num_processes for one."
        )


def prepare_data(model_args, data_args, training_args, names=SPLITS):
    """The processor (its audio width and provenance those of the data), the encoded splits `names` (a search
    leaves out the test split) and the `alignment_counts` of recordings (`None` for other data)."""
    from dataset_script import audio_facts, load_mosi

    from .transcription_cmbert import transcript  # for recordings without a transcript

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model_args.model_name_or_path))
    with training_args.main_process_first(desc="dataset preparation"):
        options = dataset_options(data_args.dataset_options, data_args.dataset_config)
        raw = load_mosi(data_args.dataset_config, data_dir=data_args.data_dir, cache_dir=data_args.dataset_cache_dir,
                        transcribe=transcript, **options)
    use_audio = not model_args.text_only
    feature_extractor = CMBertFeatureExtractor()
    facts = audio_facts(raw)  # what the data set declares: level, source, width of its audio
    raw, provenance = featurize_audio(raw, facts, feature_extractor, use_audio, training_args,
                                      data_args.timings_column, data_args.preprocessing_num_workers)
    alignment = alignment_counts(raw)
    if alignment and data_args.drop_mismatched:  # counted above, then left out
        raw = type(raw)({name: split.filter(lambda how: how != "mismatched", input_columns="word_timing")
                         for name, split in raw.items()})  # fmt: skip
    if facts["level"] == "none" and not model_args.text_only:
        raise ArgumentError(f"dataset config {data_args.dataset_config!r} has no audio: pass --text_only for the "
                            "text-only baseline, or choose a config with audio (cmbert, mmsa_aligned, synthetic, ...).")
    # The width of the data's features (5 for MOSI's COVAREP columns, 74 for MOSEI) fixes the model's. Without
    # features (text only: the audio path is zero and never read) the config's default, not the extractor's width:
    # the text path's new weights are drawn after the audio projection's, so they would move with the extractor's
    # feature set (they did when it grew from 5 to 10 features, and the MOSI-text figures with them).
    extracted = provenance["audio_feature_source"] == "extractor"
    audio_feature_size = facts["width"] or (feature_extractor.feature_size if extracted else CMBertConfig.audio_feature_size)
    # The processor keeps the preprocessing of training (saved with it, applied by default at inference).
    processor = CMBertProcessor(
        feature_extractor, tokenizer, audio_feature_size=audio_feature_size, max_length=data_args.max_length,
        padding="max_length" if data_args.pad_to_max_length else False, **provenance,
    )  # fmt: skip
    log_training_data(data_args, raw, processor)
    with training_args.main_process_first(desc="dataset encoding"):
        splits = encode_splits(raw, data_args, processor, use_audio, names, "word" if extracted else facts["level"])
    return processor, splits, alignment


def log_training_data(data_args, raw, processor) -> None:
    """One block at the run's start saying what it trains on (a forgotten --data_dir shows here)."""
    rows = ", ".join(f"{name} {len(split)}" for name, split in raw.items())
    source = processor.audio_feature_source
    audio = {
        "none": "none (text only)",
        "extractor": f"extracted from the recordings, {processor.audio_feature_names}",
    }.get(source, f"the data set's precomputed {source!r} vectors, {processor.audio_feature_size} per word")
    folder = Path(data_args.data_dir).resolve() if data_args.data_dir else "none (built in code)"
    logger.warning("training data: dataset config %r, data_dir %s, rows %s; audio vectors: %s",
                   data_args.dataset_config, folder, rows, audio)


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
        **kwargs,
    )


@locks_output_dir
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
                       "over the voiced span (pocketsphinx could not align them), %d whose transcript does not fit "
                       "its audio (%s)", alignment["given"], alignment["aligned"], alignment["spread"],
                       alignment["mismatched"], "left out" if data_args.drop_mismatched else "kept: --drop_mismatched "
                       "leaves them out")
    return metrics


def audio_record(feature_extractor) -> dict:
    """What results.json (and the model card) say about features extracted from recordings."""
    return {
        "features": feature_extractor.features,
        "source": "extracted from the recordings by CMBertFeatureExtractor (numpy: YIN f0, RMS energy, MFCC)",
        "aligner": feature_extractor.aligner,
        "normalization": "standardised with the train split's per-feature mean and std (feature_mean, feature_std "
                         "in processor_config.json)",
    }


def write_results(output_dir, model_args, data_args, training_args, metrics, state, samples, audio_feature_size,
                  audio=None, alignment=None) -> None:
    """results.json and the model card: written last, so a folder that has them is complete. `audio` and
    `alignment`: the `audio_record` and `alignment_counts` of features extracted from recordings."""
    results = without_local_paths({  # the folder is pushed as it is
        "seed": training_args.seed,
        "global_step": state.global_step,
        "world_size": training_args.world_size,
        "total_train_batch_size": total_train_batch_size(training_args),
        "samples": samples,
        "audio_feature_size": audio_feature_size,
        "training_data": training_data(data_args.dataset_config, model_args.text_only),
        "audio": audio,
        "alignment": alignment,
        "model": vars(model_args),
        "data": vars(data_args),
        "training": training_args.to_dict(),
        **metrics,
    })
    Path(output_dir, RESULTS).write_text(json.dumps(results, indent=2, default=str))
    write_model_card(TEMPLATE, output_dir, results, training_args.hub_model_id)


def total_train_batch_size(training_args) -> int:
    """Samples per optimiser step over all processes."""
    return training_args.per_device_train_batch_size * training_args.world_size * training_args.gradient_accumulation_steps


def main(argv: list[str] | None = None, callbacks=None, prog: str | None = None) -> dict:
    """Parses a command line (`--help` lists the arguments) and runs it: one run, a seed sweep, or a search."""
    argv = sys.argv[1:] if argv is None else list(argv)  # kept: Ray's workers parse it again
    search_args, model_args, data_args, training_args = parse_command(argv, prog)
    check_arguments(model_args, data_args, training_args)
    check_launcher(training_args.world_size)
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
    if push and (search_args.search or search_args.ray_address or training_args.seeds):
        raise ArgumentError("--push_to_hub pushes one model: push a seed's folder with `cmbert push` after the sweep.")
    if training_args.seeds and training_args.resume_from_checkpoint:
        raise ArgumentError("--resume_from_checkpoint names one run's checkpoint; with --seeds each seed's folder "
                            "(output_dir/seed-N) resumes from its own last checkpoint by itself.")
    # The Trainer would push every checkpoint; the finished folder is pushed once, below.
    training_args.push_to_hub = False
    main_process = training_args.process_index == 0

    if search_args.search or search_args.ray_address:
        from . import search

        return search.main(argv, model_args, data_args, training_args, search_args, callbacks)
    if not training_args.seeds:
        metrics = run(model_args, data_args, training_args, callbacks)
        if main_process:
            print(markdown_table({training_args.seed: metrics}), end="")
            print(f"model, results.json and model card in {training_args.output_dir}")
        if push and main_process:
            push_or_explain(training_args)
        return metrics

    root = Path(training_args.output_dir)
    if (root / RESULTS).is_file() and not training_args.overwrite_output_dir:
        raise ArgumentError(f"{root} holds a finished seed sweep ({RESULTS}): choose a new --output_dir, or pass "
                            f"--overwrite_output_dir to train every seed afresh.")
    if training_args.overwrite_output_dir and main_process:  # the old aggregate must not outlive its seeds
        for name in (RESULTS, "results.md"):
            (root / name).unlink(missing_ok=True)
    per_seed = train_seeds(model_args, data_args, training_args, training_args.seeds, callbacks)
    if main_process:
        return write_seed_results(root, per_seed)
    return {"per_seed": per_seed, "test_mean_std": summarize(per_seed)}


def command_line(argv: list[str] | None = None, prog: str = "cmbert train") -> int:
    """`main` for a command line: an argument or data error is one line on stderr and exit status 1."""
    from dataset_script import DataError

    try:
        main(argv, prog=prog)
    except (ArgumentError, DataError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    return 0


def seed_args(training_args, seed: int):
    """A copy of `training_args` for one seed of a sweep, into `output_dir/seed-N`."""
    args = copy.deepcopy(training_args)
    args.seed, args.output_dir = seed, str(Path(training_args.output_dir, f"seed-{seed}"))
    return args


def train_seeds(model_args, data_args, training_args, seeds, callbacks=None) -> dict[int, dict]:
    """`run` once per seed into `output_dir/seed-N`; a seed already finished with these arguments is kept."""
    return {seed: run(model_args, data_args, seed_args(training_args, seed), callbacks, reuse_finished=True)
            for seed in seeds}  # fmt: skip


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
