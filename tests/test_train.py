"""train.py: configs, parameter groups, a full tiny run, the seed sweep, resume after a crash, 2 ranks."""

import ast
import contextlib
import io
import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from transformers import TrainerCallback, TrainingArguments

from cmbert_hf import CMBertConfig, CMBertForSequenceClassification, recipe
from cmbert_hf.metrics import sentiment_metrics
from cmbert_hf.run_folder import ArgumentError
from cmbert_hf.training import CMBertTrainer, freeze, parameter_groups
from cmbert_hf.training_args import CMBertTrainingArguments, parse_args
from dataset_script import load_mosi
from helpers import MOSI_TEXT, TINY, Steps

ROOT = Path(__file__).resolve().parents[1]


# --- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_parses_into_the_dataclasses(path):
    recipe = yaml.safe_load(path.read_text())
    # A recipe for the user's own data names no folder: the user passes it.
    folder = ["--data_dir", "mine"] if recipe.get("dataset_config") == "recordings" and "data_dir" not in recipe else []
    model_args, data_args, training_args = parse_args(["--config", str(path), *folder])
    for key, value in recipe.items():
        actual = next(getattr(a, key) for a in (model_args, data_args, training_args) if hasattr(a, key))
        assert actual == value, key


def launch_commands() -> dict[str, str]:
    """train.py's documented `accelerate launch` commands (continuation lines joined), by config file name."""
    lines = ast.get_docstring(ast.parse((ROOT / "train.py").read_text()), clean=False).replace("\\\n", " ").splitlines()
    commands = [line.strip() for line in lines if line.strip().startswith("accelerate launch --config_file")]
    return {re.search(r"configs/accelerate/(\S+\.yaml)", command)[1]: command for command in commands}


@pytest.mark.parametrize("path", sorted((ROOT / "configs/accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_every_accelerate_config_is_documented_and_consistent(path):
    from accelerate.commands.config.config_args import ClusterConfig

    command = launch_commands()[path.name]  # every config has a launch command in train.py's docstring
    config = ClusterConfig.from_yaml_file(path)
    assert config.num_processes >= config.num_machines >= 1 and config.num_processes % config.num_machines == 0
    assert (config.num_machines > 1) == ("--machine_rank" in command)  # a multi-node launch names its rank
    assert (config.distributed_type.value == "NO") == (config.num_processes == 1)
    batch = re.search(r"--per_device_train_batch_size (\d+)", command)
    if batch:  # the docstring's rule: per-process batch x processes = the recipe's 24
        assert int(batch[1]) * config.num_processes == CMBertTrainingArguments.per_device_train_batch_size
    if config.fsdp_config:  # the wrap unit must be a layer class the model really has
        layer = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
        model = CMBertForSequenceClassification(CMBertConfig(**TINY))
        assert layer in {type(m).__name__ for m in model.modules()}


def test_command_line_overrides_yaml_and_unknown_keys_fail(tmp_path):
    _, data_args, training_args = parse_args(
        ["--config", str(ROOT / "configs/cmbert_mosi.yaml"), "--learning_rate", "3e-5"]
    )
    assert training_args.learning_rate == 3e-5 and data_args.dataset_config == "cmbert"
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 1.0e-5\nlearnig_rate: 2.0e-5\n")
    with pytest.raises(ArgumentError, match=r"bad.yaml: unknown keys \['learnig_rate'\]: learnig_rate \(did you mean "
                                            r"learning_rate\?\)"):
        parse_args(["--config", str(bad)])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "configs/demo.yml"], "--config configs/demo.yml: no such file."),
        (["--learing_rate", "1e-4"], "unrecognized argument --learing_rate (did you mean --learning_rate?)"),
        (["--text_scaling", "bogus"], "argument --text_scaling/--text-scaling: invalid choice: 'bogus'"),
        (["--original", "--text_scaling", "none"], "--original sets text_scaling='batch'"),
    ],
)
def test_command_line_mistakes_are_one_line(argv, message, tmp_path, capsys):
    assert recipe.command_line(argv, prog="train.py") == 1
    captured = capsys.readouterr()
    assert captured.err == f"train.py: error: {captured.err.removeprefix('train.py: error: ')}"
    assert message in captured.err and captured.err.count("\n") == 1 and captured.out == ""


def test_help_is_short_and_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exit:
        recipe.main(["--help"], prog="train.py")
    help_text = capsys.readouterr().out
    assert exit.value.code == 0 and len(help_text.splitlines()) < 250  # was 697 lines
    for flag in ("--search", "--n_trials", "--ray_address", "--ray_cpus_per_trial", "--ray_gpus_per_trial",
                 "--ray_storage_path", "--config", "--fusion_learning_rate", "--max_length", "--seeds"):
        assert f"{flag} " in help_text, flag
    # TrainingArguments' other fields are named (not described) ...
    assert "--gradient_accumulation_steps" in help_text and "--bf16" in help_text
    # ... and the push happens once, at the end.
    assert "once, at the end of the run" in " ".join(help_text.split())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--push_to_hub"], "--push_to_hub needs --hub_model_id"),
        (["--num_train_epochs", "-1"], "--num_train_epochs must be positive"),
        (["--push_to_hub", "--hub_model_id", "u/m", "--hub_revision", "dev"], "--hub_revision is not supported"),
        (["--seeds", "1", "2", "--resume_from_checkpoint", "ckpt"], "each seed's folder"),
        (["--dataset_config", "text", "--data_dir", str(MOSI_TEXT)], "'text' has no audio: pass --text_only"),
        (["--lr_scheduler_type", "cosinus"], "cosinus is not a valid SchedulerType"),
        (["--dataset_config", "recording"],
         r"--dataset_config: unknown data set config 'recording'; the configs are .*, recordings, spoken$"),
    ],
)
def test_conflicting_arguments_fail_before_training(tiny_checkpoint, dataset_cache, tiny_args, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        recipe.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path, *extra))
    assert not list(tmp_path.iterdir())  # nothing written


def test_original_switch_sets_the_audio_blind_settings():
    model_args, _, _ = parse_args(["--config", str(ROOT / "configs/demo.yaml"), "--original"])
    assert (model_args.cls_audio, model_args.text_scaling, model_args.audio_scaling) == ("input", "batch", "none")
    with pytest.raises(ValueError, match="--original sets text_scaling='batch'; it cannot go with text_scaling='none'"):
        parse_args(["--config", str(ROOT / "configs/demo.yaml"), "--original", "--text_scaling", "none"])


# --- the recipe's parameter groups ----------------------------------------------------------------

FUSION_WEIGHTS = {
    "fusion.attention.text_proj.weight",
    "fusion.attention.audio_proj.weight",
    "fusion.attention.w_t",
    "fusion.attention.w_a",
    "fusion.dense.weight",
    "fusion.LayerNorm.weight",
}


@pytest.mark.parametrize("original", [False, True])
def test_every_trainable_parameter_lands_in_its_group(original):
    config = CMBertConfig(**TINY)
    model = CMBertForSequenceClassification(config)
    freeze(model, embeddings=True, head=original)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {key: {names[id(p)] for p in params} for key, params in parameter_groups(model).items()}

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("bert.embeddings.") for n in trainable)
    assert ("classifier.weight" in trainable) is not original
    assert groups["fusion"] == FUSION_WEIGHTS
    expected_no_decay = {n for n in trainable if n.endswith(".bias") or n == "fusion.attention.b"}
    expected_no_decay |= {n for n in trainable if n.startswith("bert.encoder.") and "LayerNorm.weight" in n}
    assert groups["no_decay"] == expected_no_decay
    assert groups["decay"] == trainable - FUSION_WEIGHTS - expected_no_decay
    assert sum(len(g) for g in groups.values()) == len(trainable)  # each parameter in exactly one group


def test_text_only_model_ignores_audio_for_good():
    config = CMBertConfig(**TINY)
    model = CMBertForSequenceClassification(config).eval()
    freeze(model, audio=True)
    names = {id(p): n for n, p in model.named_parameters()}
    grouped = {names[id(p)] for params in parameter_groups(model).values() for p in params}
    assert not grouped & {"fusion.attention.w_a", "fusion.attention.audio_proj.weight"}
    input_ids = torch.randint(1, 99, (3, 8))
    audio = torch.randn(3, 8, 5)
    assert torch.equal(model(input_ids, audio_features=audio).logits, model(input_ids).logits)


@pytest.mark.slow
def test_text_only_weights_do_not_depend_on_the_extractor(tiny_checkpoint, dataset_cache, tiny_args, tmp_path,
                                                           monkeypatch):
    """The text path's new weights are drawn after the audio projection's: a text-only model must not take its audio
    width from the extractor, or adding an audio feature would change every text-only result."""
    from cmbert_hf import CMBertFeatureExtractor
    from cmbert_hf.feature_extraction_cmbert import DEFAULT_FEATURES

    argv = tiny_args(tiny_checkpoint, dataset_cache, tmp_path, "--text_only", "--dataset_config", "text",
                     "--data_dir", str(MOSI_TEXT))

    def new_weights(features):
        monkeypatch.setattr(recipe, "CMBertFeatureExtractor", lambda: CMBertFeatureExtractor(features=features))
        model_args, data_args, training_args = parse_args(argv)
        processor = recipe.prepare_data(model_args, data_args, training_args)[0]
        torch.manual_seed(0)
        model = recipe.build_model(model_args, processor)
        return {n: p for n, p in model.state_dict().items() if n.startswith(("fusion.", "classifier."))}

    fewer, default = new_weights(DEFAULT_FEATURES[:3]), new_weights(DEFAULT_FEATURES)
    assert fewer.keys() == default.keys()
    for name in fewer:
        assert torch.equal(fewer[name], default[name]), name


def test_trainer_optimizer_uses_the_fusion_learning_rate(tmp_path):
    config = CMBertConfig(**TINY)
    model = CMBertForSequenceClassification(config)
    args = CMBertTrainingArguments(output_dir=str(tmp_path), learning_rate=2e-5, weight_decay=0.01, report_to="none",
                                   eval_strategy="no", load_best_model_at_end=False, fusion_learning_rate=0.03)
    optimizer = CMBertTrainer(model=model, args=args).create_optimizer()
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [(0.03, 0.01), (2e-5, 0.0), (2e-5, 0.01)]
    plain = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    with pytest.raises(TypeError, match="CMBertTrainer needs CMBertTrainingArguments"):
        CMBertTrainer(model=model, args=plain).create_optimizer()


# --- full runs --------------------------------------------------------------------------------------


class LogRecorder(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


@pytest.fixture(scope="module")
def finished_run(tiny_checkpoint, dataset_cache, tiny_args, tmp_path_factory):
    """One tiny run shared by the tests below: (folder, its arguments, returned metrics, stdout, logs)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    args = tiny_args(tiny_checkpoint, dataset_cache, folder)
    recorder, printed = LogRecorder(), io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = recipe.main(args, callbacks=[recorder])
    return folder, args, metrics, printed.getvalue(), recorder.logs


def test_a_tiny_run_writes_a_hub_ready_folder(finished_run):
    folder, _, metrics, _, _ = finished_run
    files = {p.name for p in folder.iterdir()}
    assert {
        "model.safetensors", "config.json", "configuration_cmbert.py", "modeling_cmbert.py", "processing_cmbert.py",
        "feature_extraction_cmbert.py", "processor_config.json", "tokenizer.json", "results.json", "README.md",
        "test_predictions.json", "run_args.json",
    } <= files  # fmt: skip
    assert not [name for name in files if name.startswith("checkpoint-")]  # deleted once the run is complete
    results = json.loads((folder / "results.json").read_text())
    assert results["global_step"] == 8  # 96 samples / 24 per batch x 2 epochs
    assert results["test"] == pytest.approx(metrics["test"])
    assert len(json.loads((folder / "test_predictions.json").read_text())) == 48

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    reported = {m.metric_name: m.metric_value for m in card.data.eval_results}
    assert reported["MAE"] == pytest.approx(metrics["test"]["test_mae"])
    assert reported["Acc2 (non0)"] == pytest.approx(metrics["test"]["test_acc2_non0"])
    assert card.data.datasets is None and {"multimodal", "audio", "custom_code"} <= set(card.data.tags)  # no Hub ids
    assert "fine-tuned for text + audio" in card.text and "(48 samples)" in card.text
    assert "not meant for:\n\n- any real input: its audio vectors were random numbers" in card.text
    assert results["training_data"]["not_for"][0].startswith("any real input")
    assert "| total_train_batch_size | 24 |" in card.text and "| freeze_embeddings | True |" in card.text
    assert "trust_remote_code=True" in card.text and 'revision = "main"  # pin a commit id' in card.text
    assert "output as it is" in card.text and "Acc7 rounds it after clipping to [-3, 3]" in card.text  # the metrics
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSequenceClassification"] == "modeling_cmbert.CMBertForSequenceClassification"


def test_a_run_prints_its_test_metrics_and_folder(finished_run):
    folder, _, metrics, printed, _ = finished_run
    header, rule, row, where = printed.splitlines()[-4:]
    assert header.startswith("| seed | loss | mae | corr | acc7 |") and rule.startswith("|---|---|")
    assert row.startswith(f"| 1111 | {metrics['test']['test_loss']:.3f} | {metrics['test']['test_mae']:.3f} |")
    assert where == f"model, results.json and model card in {folder}"


def test_each_learning_rate_is_logged_under_its_name(finished_run):
    *_, logs = finished_run
    rates = [(log["learning_rate"], log["learning_rate_fusion"]) for log in logs if "learning_rate" in log]
    assert rates  # tiny_args: base 1e-3, fusion 0.01, one linear schedule scaling both
    assert all(fusion == pytest.approx(10 * base) for base, fusion in rates)
    assert max(base for base, _ in rates) <= 1e-3


def test_cmbert_evaluate_prints_the_metrics_of_results_json(finished_run, dataset_cache, capsys):
    from cmbert_hf.cli import main as cmbert

    folder = finished_run[0]
    argv = ["evaluate", "--model", str(folder), "--data", "synthetic", "--cache-dir", str(dataset_cache)]
    assert cmbert([*argv, "--max-samples", "48"]) == 0  # the run's test split: its first 48 samples
    lines = capsys.readouterr().out.strip().splitlines()
    printed = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in lines[3:]}
    test = json.loads((folder / "results.json").read_text())["test"]
    assert printed == pytest.approx({name: test[f"test_{name}"] for name in printed}, abs=1e-4)
    assert set(printed) == {"mae", "corr", "acc7", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc2_original",
                            "f1_original"}


def _copy(finished_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished_run[0], folder)
    return folder


def _listing(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "change, extra, message",
    [
        (None, [], r"run holds a finished run \(results.json\): choose a new --output_dir, or pass "
                   r"--overwrite_output_dir"),
        (None, ["--text_only", "--dataset_config", "text", "--data_dir", str(MOSI_TEXT)], "holds a finished run"),
        ("unfinished", ["--learning_rate", "2e-3"], r"holds an unfinished run started with other arguments "
                                                    r"\(training.learning_rate\): rerun its command to resume it"),
        ("unfinished", ["--max_length", "40"], r"other arguments \(data.max_length\)"),
        ("foreign", [], "is not empty and holds no train.py run"),
    ],
)
def test_reruns_that_would_misreport_are_refused(finished_run, tmp_path, change, extra, message):
    folder = _copy(finished_run, tmp_path)
    if change == "unfinished":
        (folder / "results.json").unlink()
    if change == "foreign":
        (folder / "run_args.json").unlink()
    before = _listing(folder)
    with pytest.raises(ArgumentError, match=message):
        recipe.main([*finished_run[1], "--output_dir", str(folder), *extra])  # the last --output_dir counts
    assert _listing(folder) == before  # nothing touched


def test_the_command_line_refuses_in_one_line(finished_run, tmp_path, monkeypatch, capsys):
    folder = _copy(finished_run, tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py", *finished_run[1], "--output_dir", str(folder)])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    said = capsys.readouterr().err
    assert exit.value.code == 1 and said.count("\n") == 1
    assert said.startswith(f"train.py: error: {folder} holds a finished run")


def test_the_fingerprint_ignores_what_does_not_change_the_run():
    base = ["--config", str(ROOT / "configs/demo.yaml")]
    same = recipe.fingerprint(*parse_args(base))
    assert recipe.fingerprint(*parse_args([*base, "--output_dir", "x", "--logging_steps", "3",
                                                "--disable_tqdm", "true", "--report_to", "none"])) == same
    assert recipe.fingerprint(*parse_args([*base, "--seed", "7"])) != same
    assert recipe.fingerprint(*parse_args([*base, "--fusion_dim", "8"])) != same


def test_overwrite_trains_afresh_and_keeps_other_files(finished_run, tmp_path):
    folder = _copy(finished_run, tmp_path)
    (folder / "notes.txt").write_text("mine\n")
    (folder / "checkpoint-99").mkdir()  # a leftover of the old run
    recipe.main([*finished_run[1], "--output_dir", str(folder), "--overwrite_output_dir", "true",
                "--num_train_epochs", "1"])
    assert json.loads((folder / "results.json").read_text())["global_step"] == 4
    assert (folder / "notes.txt").read_text() == "mine\n"
    assert not (folder / "checkpoint-99").exists()


def test_the_saved_processor_applies_the_preprocessing_of_training(tiny_checkpoint, dataset_cache, tiny_args,
                                                                   tmp_path):
    """A model trained with --max_length 16 (and the original's fixed padding) is served with the same: by
    AutoProcessor and by the pipeline, with no max_length passed."""
    from transformers import AutoProcessor, pipeline

    from cmbert_hf.pipeline_cmbert import TASK, CMBertSentimentPipeline

    few = ("--max_train_samples", "16", "--max_eval_samples", "8", "--num_train_epochs", "1")
    recipe.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path, *few, "--max_length", "16", "--original"))
    long_text = " ".join(["wonderful"] * 40)
    long = {"text": long_text, "audio_features": np.zeros((40, 5), np.float32)}  # the synthetic set's 5 per word
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert (processor.max_length, processor.padding) == (16, "max_length")
    assert len(processor(**long)["input_ids"]) == 16
    assert len(processor(text="fine", audio_features=np.zeros((1, 5)))["input_ids"]) == 16  # padded as trained
    pipe = pipeline(TASK, model=str(tmp_path), pipeline_class=CMBertSentimentPipeline)
    assert len(pipe(long, return_attention=True)["tokens"]) == 16
    assert len(pipe(long, max_length=8, return_attention=True)["tokens"]) == 8  # an explicit value wins


def test_length_grouped_batches_train(tiny_checkpoint, dataset_cache, tiny_args, tmp_path):
    metrics = recipe.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path, "--train_sampling_strategy", "group_by_length", "--num_train_epochs", "1"))
    assert json.loads((tmp_path / "results.json").read_text())["global_step"] == 4
    assert np.isfinite(metrics["test"]["test_mae"])


@pytest.mark.slow
def test_seed_sweep_writes_per_seed_and_mean_std(tiny_checkpoint, dataset_cache, tiny_args, tmp_path):
    args = tiny_args(tiny_checkpoint, dataset_cache, tmp_path, "--seeds", "1111", "1112", "--num_train_epochs", "1")
    out = recipe.main(args)
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["per_seed"]) == {"1111", "1112"}
    maes = [results["per_seed"][s]["test"]["test_mae"] for s in ("1111", "1112")]
    assert results["test_mean_std"]["test_mae"]["mean"] == pytest.approx(np.mean(maes))
    assert results["test_mean_std"]["test_mae"]["std"] == pytest.approx(np.std(maes))
    assert "test_runtime" not in results["test_mean_std"]
    assert out["test_mean_std"]["test_mae"]["mean"] == pytest.approx(np.mean(maes))
    table = (tmp_path / "results.md").read_text().splitlines()
    assert table[0].startswith("| seed | loss | mae | corr | acc7 |") and table[-1].startswith("| mean ± std |")
    assert (tmp_path / "seed-1112" / "model.safetensors").is_file()

    with pytest.raises(ArgumentError, match="holds a finished seed sweep"):
        recipe.main(args)
    # A sweep interrupted after its seeds finished: the rerun trains nothing and aggregates the same results.
    (tmp_path / "results.json").unlink()
    steps = Steps()
    assert recipe.main(args, callbacks=[steps]) == out and steps.done == []


def test_argument_values_that_train_nothing_are_refused(tmp_path):
    (tmp_path / "outputs").mkdir()
    base = ["--config", str(ROOT / "configs/demo.yaml")]
    for extra, message in [
        (["--num_train_epochs", "-1"], "--num_train_epochs must be positive, got -1.0"),
        (["--num_train_epochs", "0"], "--num_train_epochs must be positive"),
        (["--num_train_epochs", "0.5"], r"--num_train_epochs must be at least 1 \(--max_steps for a shorter run\)"),
        (["--max_steps", "0"], "--max_steps must be positive"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be positive, got 0"),
        (["--learning_rate=-1e-5"], "--learning_rate must be positive"),
        (["--fusion_learning_rate", "0"], "--fusion_learning_rate must be positive"),
        (["--max_train_samples", "0"], "--max_train_samples must be positive"),
        (["--model_name_or_path", "/nonexistent"], "model folder not found: /nonexistent"),
        (["--model_name_or_path", f"{tmp_path}/outputs/typo"], f"model folder not found: {tmp_path}/outputs/typo"),
        (["--model_name_or_path", "./typo"], "model folder not found: ./typo"),
        (["--overwrite_output_dir", "true", "--resume_from_checkpoint", "x"], "cannot go with --resume_from"),
    ]:
        with pytest.raises(ArgumentError, match=message):
            recipe.check_arguments(*parse_args([*base, *extra]))
    recipe.check_arguments(*parse_args([*base, "--num_train_epochs", "0", "--max_steps", "5"]))  # steps rule


@pytest.mark.parametrize(
    "extra, padded",
    [([], False), (["--original"], True), (["--original", "--pad_to_max_length", "false"], False),
     (["--pad_to_max_length", "true"], True)],
)
def test_the_original_pads_to_max_length_unless_told_otherwise(extra, padded):
    model_args, data_args, training_args = parse_args(["--config", str(ROOT / "configs/demo.yaml"), *extra])
    recipe.check_arguments(model_args, data_args, training_args)
    assert data_args.pad_to_max_length is padded


@pytest.mark.slow
def test_resume_after_a_crash_matches_an_uninterrupted_run(crashed_run, tiny_checkpoint, dataset_cache, tiny_args,
                                                           tmp_path):
    reference = recipe.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path / "reference"))
    shutil.copytree(crashed_run[0], tmp_path / "crashed")
    args = [*crashed_run[1], "--output_dir", str(tmp_path / "crashed")]
    assert (tmp_path / "crashed" / "checkpoint-4").is_dir() and not (tmp_path / "crashed" / "results.json").exists()

    steps = Steps()
    resumed = recipe.main(args, callbacks=[steps])  # picks up checkpoint-4 from output_dir by itself
    assert steps.done == [5, 6, 7, 8]  # steps 1-4 came from the checkpoint, not from training again
    state = json.loads((tmp_path / "crashed" / "results.json").read_text())
    assert state["global_step"] == 8
    assert not list((tmp_path / "crashed").glob("checkpoint-*"))
    # The whole run's mean loss, steps 1-4 included, not only the resumed steps'.
    assert resumed["train"]["train_loss"] == pytest.approx(reference["train"]["train_loss"], rel=1e-4)
    for key in ("test_loss", "test_mae", "test_corr"):
        assert resumed["test"][key] == pytest.approx(reference["test"][key], rel=1e-4, abs=1e-5), key


@pytest.mark.slow
def test_two_ranks_of_12_match_one_rank_of_24(tiny_checkpoint, dataset_cache, tiny_args, tmp_path):
    # 47 dev/test samples: the distributed sampler pads rank 1 with a repeat, which the gather must drop.
    odd = ("--max_eval_samples", "47")
    one = recipe.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path / "one", "--per_device_train_batch_size", "24", *odd))
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs/accelerate/cpu_2proc.yaml"),
        str(ROOT / "train.py"),
        *tiny_args(tiny_checkpoint, dataset_cache, tmp_path / "two", "--per_device_train_batch_size", "12", *odd),
    ]  # fmt: skip
    launched = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert launched.returncode == 0, launched.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["world_size"] == 2  # one DDP group: ranks training alone would take 16 steps of 12 each
    assert two["global_step"] == json.loads((tmp_path / "one" / "results.json").read_text())["global_step"] == 8
    assert two["dev"]["dev_loss"] == pytest.approx(one["dev"]["dev_loss"], rel=0.05)
    assert two["test"]["test_mae"] == pytest.approx(one["test"]["test_mae"], rel=0.05)
    # Evaluation gathered over both ranks: every test sample once, in dataset order (the metrics recomputed
    # from the gathered predictions against the labels in order equal the reported ones).
    labels = load_mosi("synthetic", cache_dir=dataset_cache)["test"]["label"][:47]
    two_pred = json.loads((tmp_path / "two" / "test_predictions.json").read_text())
    assert len(two_pred) == 47 and two["samples"] == {"train": 96, "validation": 47, "test": 47}
    assert sentiment_metrics(two_pred, labels)["mae"] == pytest.approx(two["test"]["test_mae"], rel=1e-5)


def test_a_cpu_launch_of_several_processes_that_starts_one_is_refused(tmp_path):
    # accelerate's --cpu launcher starts this one process for --num_processes 2; train.py must say so, not train.
    (tmp_path / "no-model").mkdir()  # fails at once if the run got as far as loading a model
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", str(ROOT / "train.py"),
        "--config", str(ROOT / "configs/synthetic.yaml"), "--model_name_or_path", str(tmp_path / "no-model"),
        "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    launched = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert launched.returncode != 0
    ours = [line for line in launched.stderr.splitlines() if line.startswith("train.py: error:")]
    assert ours == ["train.py: error: accelerate launch --cpu --num_processes N starts one process, not N: launch "
                    "with --config_file configs/accelerate/cpu_2proc.yaml (or --multi_gpu --num_processes 2 without "
                    "--cpu, on a machine without GPUs) for several CPU processes, or without --num_processes for one."]
    assert not (tmp_path / "out").exists()
