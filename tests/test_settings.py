"""Every setting declared once: the fusion settings in `CMBertConfig`, from which train.py's arguments, `--original`,
the validation of command-line values and the model card's table are derived; the task's shared constants."""

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from huggingface_hub.dataclasses import strict
from transformers import BertConfig, HfArgumentParser

from cmbert_hf import CMBertConfig
from cmbert_hf.configuration_cmbert import LABEL7_NAMES, LABEL_RANGE, fusion_setting, sentiment_class
from cmbert_hf.model_card import write_model_card
from cmbert_hf.run_folder import ArgumentError
from cmbert_hf.training_args import DataArguments, ModelArguments, RunArguments, model_arguments, parse_args
from helpers import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_model_arguments_are_the_run_arguments_plus_the_configs_fusion_settings():
    run = [f.name for f in fields(RunArguments)]
    declared = CMBertConfig.fusion_settings()
    assert [f.name for f in fields(ModelArguments)] == run + [f.name for f in declared]
    arguments = {f.name: f for f in fields(ModelArguments)}
    for setting in declared:
        argument = arguments[setting.name]
        assert (argument.type, argument.default) == (setting.type, setting.default)
        assert argument.metadata["help"] == setting.metadata["help"]
    assert {"fusion_dim", "text_scaling", "cls_audio", "fusion_hidden_dropout", "head_dropout"} <= set(arguments)
    assert "audio_feature_size" not in arguments  # set from the data, not chosen


def test_original_is_the_configs_original_setting():
    model_args, _, _ = parse_args(["--config", str(ROOT / "configs/demo.yaml"), "--original"])
    config = CMBertConfig.original()
    for setting in CMBertConfig.fusion_settings():
        assert getattr(model_args, setting.name) == getattr(config, setting.name), setting.name


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--text_scaling", "bogus", "invalid choice: 'bogus' (choose from 'batch', 'sample', 'none')"),
        ("--cls_audio", "zero", "invalid choice: 'zero' (choose from 'input', 'mean')"),
        ("--fusion_dim", "0", "field 'fusion_dim': ValueError: must be a positive integer, got 0"),
        ("--fusion_attention_dropout", "1.5", "must be a dropout probability in [0, 1), got 1.5"),
        ("--fusion_layer_norm_eps=0", None, "field 'fusion_layer_norm_eps': ValueError: must be a positive"),
    ],
)
def test_bad_command_line_values_fail_while_parsing(flag, value, message):
    argv = ["--config", str(ROOT / "configs/demo.yaml"), flag, *([] if value is None else [value])]
    with pytest.raises(ArgumentError) as error:  # one line, no usage
        parse_args(argv)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_value_exits_non_zero_before_training(tmp_path):
    output_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "train.py", "--config", "configs/demo.yaml", "--fusion_dim", "0", "--output_dir", str(output_dir)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "invalid model arguments" in result.stderr and "'fusion_dim'" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback
    assert not output_dir.exists()  # nothing written, no training started


# --- a new fusion setting: declared in the config, it reaches the arguments and the card -----------------


@strict
class GatedConfig(CMBertConfig):
    """A config with one more fusion setting, declared as the others are (and nothing else changed)."""

    fusion_gate: Literal["none", "sigmoid"] = fusion_setting("none", "A gate on the fused vector (test only).")


def _results(tmp_path) -> dict:
    metrics = {"mae": 0.9, "corr": 0.5, "acc7": 30.0, "acc2_has0": 70.0, "acc2_non0": 71.0, "f1_non0": 70.5}
    training = {"learning_rate": 2e-5, "per_device_train_batch_size": 24, "gradient_accumulation_steps": 1,
                "num_train_epochs": 3, "optim": "adamw_torch", "lr_scheduler_type": "linear", "warmup_steps": 0.1,
                "weight_decay": 0.01, "fusion_learning_rate": 0.01}  # fmt: skip
    return {
        "seed": 1111, "world_size": 1, "total_train_batch_size": 24, "samples": {"test": 686}, "training": training,
        "model": {"model_name_or_path": str(tmp_path), "text_only": False, "original": False,
                  "freeze_embeddings": True},
        "data": {"dataset_config": "cmbert", "max_length": 50},
        "test": {f"test_{k}": v for k, v in metrics.items()},
    }  # fmt: skip


def test_a_new_fusion_setting_reaches_the_arguments_and_the_model_card(tmp_path):
    parser = HfArgumentParser(model_arguments(GatedConfig))
    (args,) = parser.parse_args_into_dataclasses(["--fusion_gate", "sigmoid"])
    assert args.fusion_gate == "sigmoid" and args.fusion_dim == 30
    assert "A gate on the fused vector (test only)." in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--fusion_gate", "tanh"])

    config = GatedConfig(text_config=BertConfig(**TINY), fusion_gate="sigmoid", fusion_dim=12)
    card = write_model_card(ROOT / "model_card.md", tmp_path, _results(tmp_path), config=config)
    assert "| fusion_gate | sigmoid |" in card.text and "| fusion_dim | 12 |" in card.text
    assert "| text_encoder | bert |" in card.text and "a text encoder (bert)" in card.text and "[-3, 3]" in card.text


def test_the_card_reads_the_saved_config(tmp_path):
    CMBertConfig.original(
        text_config=BertConfig(**TINY), audio_feature_size=74, audio_feature_source="covarep"
    ).save_pretrained(tmp_path)
    card = write_model_card(ROOT / "model_card.md", tmp_path, _results(tmp_path))
    assert "| cls_audio | input |" in card.text and "| text_scaling | batch |" in card.text
    assert "cannot see the audio" in card.text and "[len(words), 74]: one covarep vector per word" in card.text


# --- the task's shared constants --------------------------------------------------------------------


def test_sentiment_classes_round_halves_to_even_and_clip():
    scores = np.array([-3.7, -2.5, -0.5, 0.49, 0.5, 2.5, 3.2])
    assert sentiment_class(scores).tolist() == [0, 1, 3, 3, 3, 5, 6]
    assert LABEL7_NAMES[sentiment_class(-0.5)] == "neutral" and LABEL7_NAMES[sentiment_class(9.0)] == "strongly positive"


def test_modules_use_the_shared_constants():
    from cmbert_hf import pipeline_cmbert, processing_cmbert
    from dataset_script import facts

    # The data package owns its label scale and classes (it imports nothing from the model's); the model agrees.
    assert (facts.LABEL7_NAMES, facts.LABEL_RANGE) == (LABEL7_NAMES, LABEL_RANGE)
    assert pipeline_cmbert.LABEL7_NAMES is LABEL7_NAMES
    default = processing_cmbert.CMBertProcessor.__init__.__defaults__
    assert DataArguments().max_length == 50 and 50 in default


# --- which data a run reads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "configs/demo.yaml", "--dataset_config", "recordings"],
         "--dataset_config recordings replaces configs/demo.yaml's dataset_config 'spoken' but would read its data_dir "
         "'outputs/spoken-corpus'"),
        (["--config", "configs/demo.yaml", "--dataset_config=synthetic"], "would read its data_dir"),
        (["--config", "configs/recordings.yaml"], "--dataset_config recordings needs --data_dir"),
        (["--config", "configs/synthetic.yaml", "--dataset_config", "recordings"], "recordings needs --data_dir"),
    ],
)  # fmt: skip
def test_a_run_never_reads_another_configs_data_dir(argv, message, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ArgumentError, match=re.escape(message)):
        parse_args([*argv, "--output_dir", "outputs/x9"])


def test_a_data_dir_given_or_belonging_to_the_config_is_read(monkeypatch):
    monkeypatch.chdir(ROOT)
    for argv, data_dir in (
        (["--config", "configs/demo.yaml", "--dataset_config", "recordings", "--data_dir", "mine"], "mine"),
        (["--config", "configs/recordings.yaml", "--data_dir=mine"], "mine"),
        (["--config", "configs/demo.yaml", "--dataset_config", "spoken"], "outputs/spoken-corpus"),  # its own
        (["--config", "configs/demo.yaml"], "outputs/spoken-corpus"),
    ):
        assert parse_args(argv)[1].data_dir == data_dir
