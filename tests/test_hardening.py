"""Issue 21: search spaces checked like the command line, half-written checkpoints, one run per folder, bounded
memory for absurd configs and long audio, one-line errors, a push whose server dies mid-upload."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from huggingface_hub import HfApi
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from cmbert_hf import CMBertForSequenceClassification, recipe
from cmbert_hf.cli import MAX_AUDIO_SECONDS
from cmbert_hf.hub import PushError, push_folder
from cmbert_hf.run_folder import LOCK, ArgumentError, is_complete_checkpoint, locked_run_folder
from helpers import Steps, untrainable, write_search

ROOT = Path(__file__).resolve().parents[1]


def one_line_failure(result: subprocess.CompletedProcess) -> str:
    """The last stderr line of a command that must fail with one line and no traceback."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def run_python(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kwargs.pop("env", {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, **kwargs)  # fmt: skip


# --- search spaces: every trial's values pass the command line's checks ----------------------------------------


@pytest.mark.parametrize(
    "space, message",
    [
        ({"output_dir": {"type": "categorical", "choices": ["a", "b"]}}, r"space.output_dir: not a hyperparameter"),
        ({"overwrite_output_dir": {"type": "categorical", "choices": [True, False]}}, r"overwrite_output_dir: not a"),
        ({"num_train_epochs": {"type": "uniform", "low": -5, "high": -1}},
         r"space.num_train_epochs: -5 is not a valid value \(--num_train_epochs must be positive"),
        ({"num_train_epochs": {"type": "uniform", "low": 0.5, "high": 3}},
         r"space.num_train_epochs: 0.5 is not a valid value \(--num_train_epochs must be at least 1"),
        ({"learning_rate": {"type": "int", "low": 0, "high": 2}},
         r"space.learning_rate: 0 is not a valid value \(--learning_rate must be positive, got 0"),
        ({"learning_rate": {"type": "loguniform", "low": 1.0e3, "high": 1.0e6}},
         r"space.learning_rate: 1000.0 is not a valid value \(--learning_rate must be below 1"),
        ({"fusion_learning_rate": {"type": "categorical", "choices": [0.01, 2.0]}}, r"2.0 is not a valid .* below 1"),
        ({"fusion_dim": {"type": "int", "low": 0, "high": 8}}, r"space.fusion_dim: 0 is not a valid value .*positive"),
        ({"fusion_hidden_dropout": {"type": "uniform", "low": 0.0, "high": 1.5}}, r"1.5 is not a valid .*\[0, 1\)"),
    ],
)
def test_a_search_space_the_command_line_would_refuse_fails_before_the_first_trial(tmp_path, space, message):
    config = write_search(tmp_path, space)
    with pytest.raises(ArgumentError, match=message):
        recipe.main([*untrainable(tmp_path), "--search", config])
    assert not (tmp_path / "out").exists()


def test_a_bad_search_space_is_one_line_on_the_command_line(tmp_path):
    config = write_search(tmp_path, {"output_dir": {"type": "categorical", "choices": ["/tmp/elsewhere"]}})
    result = run_python(str(ROOT / "train.py"), *untrainable(tmp_path), "--search", config)
    assert one_line_failure(result).startswith(f"train.py: error: {config}: space.output_dir: not a hyperparameter")
    missing = run_python(str(ROOT / "train.py"), *untrainable(tmp_path), "--search", str(tmp_path / "nope.yaml"))
    assert one_line_failure(missing).startswith(f"train.py: error: --search {tmp_path / 'nope.yaml'}: cannot read")


class FailEveryRun(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        raise RuntimeError("injected failure")


def test_a_search_whose_every_trial_fails_says_so_and_lists_them(tiny_checkpoint, dataset_cache, tiny_args, tmp_path):
    config = write_search(tmp_path, {"learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}})
    out = tmp_path / "out"
    with pytest.raises(ArgumentError, match=r"no trial of .*search.yaml completed \(the first error: RuntimeError: "
                                            r"injected failure\); .*trials.md lists every trial's error"):
        recipe.main(tiny_args(tiny_checkpoint, dataset_cache, out, "--search", config), callbacks=[FailEveryRun()])
    rows = [line for line in (out / "trials.md").read_text().splitlines() if line.startswith("| ") and "FAIL" in line]
    assert len(rows) == 2 and all("injected failure" in row for row in rows)
    assert not list(out.glob("seed-*"))  # nothing trained after the search


# --- run folders: one run at a time, resumed from a complete checkpoint, records named ---------------------------


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path):
    folder = tmp_path / "out"
    with locked_run_folder(folder):
        assert (folder / LOCK).is_file()
        with pytest.raises(ArgumentError, match=rf"{folder} is in use by another run .*choose another --output_dir"):
            recipe.main(untrainable(tmp_path))
    assert not folder.exists()  # created for the lock, left empty: removed again


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cmbert_hf.run_folder import locked_run_folder

    with locked_run_folder(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(600)
    """
)


def test_the_lock_is_held_across_processes_and_released_when_its_holder_dies(tmp_path):
    folder = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run_python(str(ROOT / "train.py"), *untrainable(tmp_path))
        assert one_line_failure(result) == (f"train.py: error: {folder} is in use by another run (it holds the lock "
                                            f"{LOCK}): wait for that run to end, or choose another --output_dir.")
    finally:
        holder.kill()  # killed: the kernel releases its lock, the lock file stays behind
        holder.wait()
    assert (folder / LOCK).is_file()
    with locked_run_folder(folder):  # a stale lock file does not block
        pass
    assert not (folder / LOCK).exists()


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("mine")
    with pytest.raises(ArgumentError, match=r"--output_dir .*out is a file, not a folder"):
        recipe.main(untrainable(tmp_path))
    assert (tmp_path / "out").read_text() == "mine"


@pytest.mark.parametrize("content", ["", "[1, 2]", '{"model": {', b"\xff\xfe"])
def test_a_damaged_run_record_is_named(tmp_path, content):
    folder = tmp_path / "out"
    folder.mkdir()
    record = folder / "run_args.json"
    record.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ArgumentError, match=rf"{record} is not a run record .*pass --overwrite_output_dir"):
        recipe.main(untrainable(tmp_path))
    assert record.read_bytes() == (content if isinstance(content, bytes) else content.encode())


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: (c / "model.safetensors").unlink(),  # the disk filled up before the weights
        lambda c: _truncate(c / "model.safetensors"),  # ... or while writing them
        lambda c: _truncate(c / "optimizer.pt"),
        lambda c: (c / "trainer_state.json").unlink(),  # written last: the Trainer did not finish
    ],
)
def test_a_damaged_checkpoint_is_not_complete(crashed_run, tmp_path, damage):
    checkpoint = tmp_path / "checkpoint-4"
    shutil.copytree(crashed_run[0] / "checkpoint-4", checkpoint)
    damage(checkpoint)
    assert not is_complete_checkpoint(checkpoint)


def test_a_half_written_checkpoint_does_not_block_resuming(crashed_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(crashed_run[0], folder)
    # A later checkpoint cut short by a full disk: its weights are half written.
    shutil.copytree(folder / "checkpoint-4", folder / "checkpoint-6")
    _truncate(folder / "checkpoint-6" / "model.safetensors")
    steps = Steps()
    args = [*crashed_run[1], "--output_dir", str(folder)]
    recipe.main(args, callbacks=[steps])  # the same command: resumes from checkpoint-4
    assert steps.done == [5, 6, 7, 8]
    assert json.loads((folder / "results.json").read_text())["global_step"] == 8
    assert not list(folder.glob("checkpoint-*")) and not (folder / LOCK).exists()


# --- memory: absurd configs refused before allocating, long audio refused before decoding ------------------------


def _edited(folder: Path, target: Path, edit) -> Path:
    shutil.copytree(folder, target)
    config = json.loads((target / "config.json").read_text())
    edit(config)
    (target / "config.json").write_text(json.dumps(config))
    return target


def _labels(config):
    config.pop("id2label", None), config.pop("label2id", None)
    config["num_labels"] = 10**9


@pytest.mark.parametrize(
    "edit, message",
    [
        (_labels, r"`num_labels` must be an integer from 1 to 10000, got 1000000000"),
        (lambda c: c["text_config"].update(num_hidden_layers=100_000), r"text_config.num_hidden_layers` is 100000"),
        (lambda c: c["text_config"].update(vocab_size=10**10), r"text_config.vocab_size` is 10000000000"),
        (lambda c: c["text_config"].update(max_position_embeddings=10**9), r"max_position_embeddings` is 1000000000"),
        (lambda c: c["text_config"].update(hidden_size=30_000, vocab_size=1_900_000),
         r"about 6.6e\+10 parameters, more than 2e\+10"),
        (lambda c: c.update(fusion_dim=10**9), r"(?s)fusion_dim.*must be at most 65536"),
    ],
)
def test_an_absurd_config_is_refused_in_seconds_without_allocating(tiny_folder, tmp_path, edit, message):
    folder = _edited(tiny_folder, tmp_path / "absurd", edit)
    start = time.perf_counter()
    with pytest.raises(Exception, match=message):
        CMBertForSequenceClassification.from_pretrained(folder)
    assert time.perf_counter() - start < 5


# The peak memory of the process, printed after the command line returns.
MEASURED_CLI = ("import resource, sys\nfrom cmbert_hf.cli import main\nstatus = main(sys.argv[1:])\n"
                "print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
                "sys.exit(status)")  # fmt: skip


def measured_cli(*args) -> tuple[str, float]:
    """Runs `cmbert ARGS` in a fresh process; returns its error line and its peak memory in GB."""
    result = run_python("-c", MEASURED_CLI, *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    peak = int(lines[-1].split()[1]) / 2**20
    return lines[-2], peak


def test_cmbert_predict_refuses_a_huge_config_in_bounded_memory(tiny_folder, tmp_path):
    folder = _edited(tiny_folder, tmp_path / "labels", _labels)
    line, peak = measured_cli("predict", "--model", str(folder), "--text", "a fine film")
    assert line == "cmbert predict: error: `num_labels` must be an integer from 1 to 10000, got 1000000000."
    assert peak < 2.0


def test_cmbert_predict_refuses_a_60_minute_recording_before_decoding_it(tiny_folder, tmp_path):
    long = tmp_path / "hour.wav"
    rate = 16_000
    with sf.SoundFile(long, "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        block = (0.1 * np.sin(np.arange(rate * 60) * 0.05)).astype(np.float32)
        for _ in range(60):  # one minute at a time: the test itself stays small
            out.write(block)
    assert sf.info(long).duration == 3600 and MAX_AUDIO_SECONDS < 3600
    line, peak = measured_cli("predict", "--model", str(tiny_folder), "--text", "a fine film", "--audio", str(long))
    assert line == (f"cmbert predict: error: {long} lasts 3600 s; one utterance may last at most {MAX_AUDIO_SECONDS} "
                    "s: cut the recording into utterances and score them with --input")
    assert peak < 1.5  # the decoded hour alone would take 0.9 GB in float32, its features several GB


# --- one-line errors --------------------------------------------------------------------------------------------


def test_a_nan_weight_is_one_line(tiny_folder, tmp_path):
    from cmbert_hf.cli import main as cmbert

    folder = tmp_path / "nan"
    shutil.copytree(tiny_folder, folder)
    weights = load_file(folder / "model.safetensors")
    weights["classifier.weight"][0, 0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    result = run_python("-m", "cmbert_hf.cli", "predict", "--model", str(folder), "--text", "a fine film")
    assert one_line_failure(result) == (f"cmbert predict: error: {folder}: the weight classifier.weight holds NaN or "
                                        "inf values; the model folder is damaged")
    assert cmbert(["predict", "--model", str(tiny_folder), "--text", "a fine film", "--text-only"]) == 0  # sound folder


def test_a_non_utf8_timings_file_is_named(tiny_folder, tmp_path):
    from cmbert_hf.cli import CLIError, read_timings

    timings = tmp_path / "timings.tsv"
    timings.write_bytes("caf\xe9\t0.0\t0.5\n".encode("latin-1"))
    with pytest.raises(CLIError, match=rf"{timings}: a word timings file must be UTF-8 text"):
        read_timings(timings)


@pytest.mark.parametrize("option", [["--fusion_dim", "0"], ["--fusion_hidden_dropout", "1.5"]])
def test_invalid_fusion_settings_are_one_line(tmp_path, option):
    result = run_python(str(ROOT / "train.py"), *untrainable(tmp_path), *option)
    line = one_line_failure(result)
    assert line.startswith(f"train.py: error: invalid model arguments: Validation error for field '{option[0][2:]}'")


# --- a push whose server dies mid-upload ------------------------------------------------------------------------


def test_a_push_whose_server_dies_mid_upload_says_how_to_retry_and_leaves_no_repo(hub_env, hub_server, tiny_folder):
    hub_server.drop_paths_containing = "/lfs-upload/"  # the weights' upload never gets an answer
    result = run_python("-m", "cmbert_hf.cli", "push", str(tiny_folder), "--repo-id", "user/new", env=hub_env)
    line = one_line_failure(result)
    assert line.startswith(f"Pushing {tiny_folder} to user/new failed (RuntimeError: Error while uploading")
    assert line.endswith(f"The folder is complete; retry with: cmbert push {tiny_folder} --repo-id user/new")
    assert any(status == "dropped" for _, _, status in hub_server.requests)
    assert not HfApi().repo_exists("user/new")  # the push created it: deleted again
    hub_server.drop_paths_containing = None
    retried = run_python("-m", "cmbert_hf.cli", "push", str(tiny_folder), "--repo-id", "user/new", env=hub_env)
    assert retried.returncode == 0, retried.stderr[-2000:]
    assert "model.safetensors" in HfApi().list_repo_files("user/new")


def test_a_push_to_an_invalid_repo_id_is_refused_before_any_request(hub_env, hub_server, tiny_folder):
    with pytest.raises(PushError, match=r"--repo-id 'bad id!!' is not a Hub repository id"):
        push_folder(tiny_folder, "bad id!!")
    assert hub_server.requests == []
