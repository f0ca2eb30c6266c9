"""train.py: configs, parameter groups, a full tiny run, the seed sweep, resume after a crash, 2 ranks."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from transformers import TrainerCallback, TrainingArguments

from cmbert_hf import CMBertConfig, CMBertForSequenceClassification
from cmbert_hf.metrics import sentiment_metrics
from cmbert_hf.training import CMBertTrainer, freeze, parameter_groups
from dataset_script import load_mosi
from helpers import MOSI_TEXT, TINY

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train  # noqa: E402


# --- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_parses_into_the_dataclasses(path):
    model_args, data_args, training_args = train.parse_args(["--config", str(path)])
    recipe = yaml.safe_load(path.read_text())
    for key, value in recipe.items():
        actual = next(getattr(a, key) for a in (model_args, data_args, training_args) if hasattr(a, key))
        assert actual == value, key


# file: (distributed_type, processes, machines, mixed precision)
ACCELERATE_CONFIGS = {
    "cpu_2proc.yaml": ("MULTI_GPU", 2, 1, "no"),  # MULTI_GPU without GPUs: gloo ranks on the CPU
    "single_gpu.yaml": ("NO", 1, 1, "bf16"),
    "multi_gpu.yaml": ("MULTI_GPU", 8, 1, "bf16"),
    "multi_node.yaml": ("MULTI_GPU", 16, 2, "bf16"),
    "fsdp.yaml": ("FSDP", 8, 1, "bf16"),
    "deepspeed_zero2.yaml": ("DEEPSPEED", 8, 1, "bf16"),
}


def test_every_accelerate_config_is_listed():
    assert sorted(p.name for p in (ROOT / "configs/accelerate").glob("*.yaml")) == sorted(ACCELERATE_CONFIGS)


@pytest.mark.parametrize("name", sorted(ACCELERATE_CONFIGS))
def test_every_accelerate_config_loads(name):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(ROOT / "configs/accelerate" / name)
    setup = (config.distributed_type.value, config.num_processes, config.num_machines, config.mixed_precision)
    assert setup == ACCELERATE_CONFIGS[name]
    if config.fsdp_config:  # the wrap unit must be a layer class the model really has
        layer = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
        model = CMBertForSequenceClassification(CMBertConfig(**TINY))
        assert layer in {type(m).__name__ for m in model.modules()}
    if config.deepspeed_config:
        assert config.deepspeed_config["zero_stage"] == 2


def test_command_line_overrides_yaml_and_unknown_keys_fail(tmp_path):
    _, data_args, training_args = train.parse_args(
        ["--config", str(ROOT / "configs/cmbert_mosi.yaml"), "--learning_rate", "3e-5"]
    )
    assert training_args.learning_rate == 3e-5 and data_args.dataset_config == "cmbert"
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 1.0e-5\nlearnig_rate: 2.0e-5\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown keys \['learnig_rate'\]"):
        train.parse_args(["--config", str(bad)])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--push_to_hub"], "--push_to_hub needs --hub_model_id"),
        (["--push_to_hub", "--hub_model_id", "u/m", "--hub_revision", "dev"], "--hub_revision is not supported"),
        (["--seeds", "1", "2", "--resume_from_checkpoint", "ckpt"], "each seed's folder"),
        (["--dataset_config", "text", "--data_dir", str(MOSI_TEXT)], "'text' has no audio: pass --text_only"),
    ],
)
def test_conflicting_arguments_fail_before_training(tiny_checkpoint, dataset_cache, tiny_args, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        train.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path, *extra))
    assert not list(tmp_path.iterdir())  # nothing written


def test_original_switch_sets_the_audio_blind_settings():
    model_args, _, _ = train.parse_args(["--config", str(ROOT / "configs/demo.yaml"), "--original"])
    assert (model_args.cls_audio, model_args.text_scaling, model_args.audio_scaling) == ("input", "batch", "none")
    with pytest.raises(ValueError, match="--original sets text_scaling='batch'; it cannot go with text_scaling='none'"):
        train.parse_args(["--config", str(ROOT / "configs/demo.yaml"), "--original", "--text_scaling", "none"])


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


def test_trainer_optimizer_uses_the_fusion_learning_rate(tmp_path):
    config = CMBertConfig(**TINY)
    model = CMBertForSequenceClassification(config)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=2e-5, weight_decay=0.01, report_to="none")
    optimizer = CMBertTrainer(model=model, args=args, fusion_learning_rate=0.01).create_optimizer()
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [(0.01, 0.01), (2e-5, 0.0), (2e-5, 0.01)]


# --- full runs --------------------------------------------------------------------------------------


def test_a_tiny_run_writes_a_hub_ready_folder(tiny_checkpoint, dataset_cache, tiny_args, tmp_path):
    metrics = train.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path / "run"))
    folder = tmp_path / "run"
    files = {p.name for p in folder.iterdir()}
    assert {
        "model.safetensors", "config.json", "configuration_cmbert.py", "modeling_cmbert.py", "processing_cmbert.py",
        "feature_extraction_cmbert.py", "processor_config.json", "tokenizer.json", "results.json", "README.md",
        "test_predictions.json",
    } <= files  # fmt: skip
    results = json.loads((folder / "results.json").read_text())
    assert results["global_step"] == 8  # 96 samples / 24 per batch x 2 epochs
    assert results["test"] == pytest.approx(metrics["test"])
    assert len(json.loads((folder / "test_predictions.json").read_text())) == 48

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    reported = {m.metric_name: m.metric_value for m in card.data.eval_results}
    assert reported["MAE"] == pytest.approx(metrics["test"]["test_mae"])
    assert reported["Acc2 (non0)"] == pytest.approx(metrics["test"]["test_acc2_non0"])
    assert card.data.datasets == ["synthetic-mosi"] and {"multimodal", "audio", "custom_code"} <= set(card.data.tags)
    assert "fine-tuned for text + audio" in card.text and "(48 samples)" in card.text
    assert "| total_train_batch_size | 24 |" in card.text and "| freeze_embeddings | True |" in card.text
    assert "trust_remote_code=True" in card.text and 'revision = "main"  # pin a commit id' in card.text
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSequenceClassification"] == "modeling_cmbert.CMBertForSequenceClassification"


def test_length_grouped_batches_train(tiny_checkpoint, dataset_cache, tiny_args, tmp_path):
    metrics = train.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path, "--train_sampling_strategy", "group_by_length", "--num_train_epochs", "1"))
    assert json.loads((tmp_path / "results.json").read_text())["global_step"] == 4
    assert np.isfinite(metrics["test"]["test_mae"])


def test_seed_sweep_writes_per_seed_and_mean_std(tiny_checkpoint, dataset_cache, tiny_args, tmp_path):
    out = train.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path, "--seeds", "1111", "1112", "--num_train_epochs", "1"))
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


CRASH_AFTER_FIRST_CHECKPOINT = textwrap.dedent(
    """
    import os, sys
    from transformers import TrainerCallback
    sys.path.insert(0, sys.argv[1])
    import train

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            os._exit(17)  # die abruptly right after the first checkpoint is on disk

    train.main(sys.argv[2:], callbacks=[Crash()])
    """
)


def test_resume_after_a_crash_matches_an_uninterrupted_run(tiny_checkpoint, dataset_cache, tiny_args, tmp_path):
    reference = train.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path / "reference"))
    args = tiny_args(tiny_checkpoint, dataset_cache, tmp_path / "crashed")
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_FIRST_CHECKPOINT, str(ROOT), *args], capture_output=True, timeout=600
    )
    assert crashed.returncode == 17, crashed.stderr[-2000:]
    assert (tmp_path / "crashed" / "checkpoint-4").is_dir() and not (tmp_path / "crashed" / "results.json").exists()

    class Steps(TrainerCallback):
        done = []

        def on_step_end(self, args, state, control, **kwargs):
            self.done.append(state.global_step)

    resumed = train.main(args, callbacks=[Steps()])  # picks up checkpoint-4 from output_dir by itself
    assert Steps.done == [5, 6, 7, 8]  # steps 1-4 came from the checkpoint, not from training again
    state = json.loads((tmp_path / "crashed" / "results.json").read_text())
    assert state["global_step"] == 8
    for key in ("test_loss", "test_mae", "test_corr"):
        assert resumed["test"][key] == pytest.approx(reference["test"][key], rel=1e-4, abs=1e-5), key


def test_two_ranks_of_12_match_one_rank_of_24(tiny_checkpoint, dataset_cache, tiny_args, tmp_path):
    # 47 dev/test samples: the distributed sampler pads rank 1 with a repeat, which the gather must drop.
    odd = ("--max_eval_samples", "47")
    one = train.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path / "one", "--per_device_train_batch_size", "24", *odd))
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
