"""A run's output folder: what makes two runs the same, whether a folder may be trained in, resumed or reused.

`train.py` records the arguments that define a run in `output_dir/run_args.json` when training starts, so that a
rerun of the same command resumes an interrupted run, and a finished run, or one started with other arguments, is
refused instead of being silently resumed or overwritten (results and card describe only training that happened).
"""

import fcntl
import functools
import json
import os
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR


class ArgumentError(ValueError):
    """Arguments or an output folder that cannot start a run: printed as one line by the command line."""


RUN_ARGS, RESULTS = "run_args.json", "results.json"
# Held (flock) by the run training in the folder; deleted when it ends, released by the kernel if it dies.
LOCK = ".cmbert-run.lock"
# What train.py writes into output_dir (the saved model, processor, results, card and Trainer leftovers): all that
# --overwrite_output_dir deletes.
RUN_FILES = (
    "checkpoint-*", "runs", RUN_ARGS, RESULTS, "README.md", "test_predictions.json", "training_args.bin",
    "config.json", "model.safetensors", "*_cmbert.py", "processor_config.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "chat_template.jinja",
)  # fmt: skip
# Arguments that change nothing in the trained model or its metrics: a run resumed with other values of these is
# still the same run.
NOT_IN_FINGERPRINT = {
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "seeds", "dataset_cache_dir", "disable_tqdm",
    "report_to", "run_name", "project", "logging_strategy", "logging_steps", "logging_first_step",
    "logging_nan_inf_filter", "log_level", "log_level_replica", "log_on_each_node", "skip_memory_metrics",
    "push_to_hub", "hub_model_id", "hub_token", "hub_private_repo", "hub_strategy", "hub_always_push",
    "hub_revision", "save_total_limit", "save_on_each_node", "dataloader_num_workers", "dataloader_pin_memory",
    "dataloader_persistent_workers", "dataloader_prefetch_factor", "local_rank", "ddp_timeout",
}  # fmt: skip


def fingerprint(model_args, data_args, training_args) -> dict:
    """The arguments that define a run, as JSON values (what `run_args.json` holds)."""
    fields = {"model": vars(model_args), "data": vars(data_args), "training": training_args.to_dict()}
    kept = {part: {k: v for k, v in args.items() if k not in NOT_IN_FINGERPRINT} for part, args in fields.items()}
    kept["world_size"] = training_args.world_size
    return json.loads(json.dumps(kept, default=str))


def plan_run(folder: Path, run_args: dict, overwrite: bool, reuse_finished: bool = False):
    """What a run does with its output folder: `("fresh", None)`, `("resume", checkpoint or None)` or, with
    `reuse_finished`, `("finished", results)` for a finished run of the same arguments. Raises `ArgumentError`
    for a folder it must not train in (a path that is a file: `locked_run_folder`, which `run` enters first). Reads
    only: `start_run_folder` acts once the data is ready."""
    if not folder.is_dir() or not any(path.name != LOCK for path in folder.iterdir()):
        return "fresh", None
    if not (folder / RUN_ARGS).is_file():
        raise ArgumentError(f"{folder} is not empty and holds no train.py run (no {RUN_ARGS}): choose a new or "
                            "empty --output_dir.")
    if overwrite:
        return "fresh", None
    recorded = _read_json(folder / RUN_ARGS)
    fix = f"choose a new --output_dir, or pass --overwrite_output_dir to train afresh in {folder}"
    if (folder / RESULTS).is_file():
        if reuse_finished and recorded == run_args:
            return "finished", _read_json(folder / RESULTS)
        raise ArgumentError(f"{folder} holds a finished run ({RESULTS}): {fix}.")
    if recorded != run_args:
        changed = sorted(f"{part}.{key}" for part in run_args if isinstance(run_args[part], dict)
                         for key in run_args[part].keys() | recorded.get(part, {}).keys()
                         if run_args[part].get(key) != recorded.get(part, {}).get(key))
        changed += [] if run_args["world_size"] == recorded.get("world_size") else ["world_size"]
        raise ArgumentError(f"{folder} holds an unfinished run started with other arguments ({', '.join(changed)}): "
                            f"rerun its command to resume it, or {fix}.")
    return "resume", last_complete_checkpoint(folder)


def _read_json(path: Path) -> dict:
    """A run record; one that a crash left empty or cut short is named, with what to do."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        record, reason = None, str(error)
    else:
        reason = "not a JSON object"
    if not isinstance(record, dict):
        raise ArgumentError(f"{path} is not a run record ({reason}): a crash may have cut it short; pass "
                            "--overwrite_output_dir to train afresh, or choose a new --output_dir.")
    return record


def checkpoints(folder: Path) -> list[Path]:
    """The folder's `checkpoint-N` folders, newest (highest N) first."""
    found = [p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]), reverse=True)


def is_complete_checkpoint(checkpoint: Path) -> bool:
    """Whether the Trainer finished writing `checkpoint`: it writes `trainer_state.json` last, after the weights
    and the optimizer, and a full disk or a kill can stop it before (or cut a file short)."""
    safetensors = list(checkpoint.glob("*.safetensors"))
    if not safetensors and not any(checkpoint.glob("pytorch_model*.bin")):
        return False
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
        for weights in safetensors:
            with safe_open(weights, "pt"):  # checks the header against the file's length
                pass
        return all(zipfile.is_zipfile(path) for path in checkpoint.glob("*.pt"))  # torch.save writes zip files
    except (OSError, ValueError, SafetensorError):
        return False


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing (an incomplete newer one is skipped), or None."""
    return next((str(path) for path in checkpoints(folder) if is_complete_checkpoint(path)), None)


def start_run_folder(folder: Path, run_args: dict, fresh: bool) -> None:
    """Main process, just before training: clears the previous run's files for a fresh start and records the
    arguments of this one."""
    folder.mkdir(parents=True, exist_ok=True)
    if fresh:
        for pattern in RUN_FILES:
            for path in folder.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    else:  # a checkpoint cut short would be taken for the newest by the Trainer's rotation
        for path in checkpoints(folder):
            if not is_complete_checkpoint(path):
                shutil.rmtree(path)
    (folder / RUN_ARGS).write_text(json.dumps(run_args, indent=2))


@contextmanager
def locked_run_folder(folder: Path, main_process: bool = True):
    """Holds an exclusive lock on `folder` (created if missing) while a run trains in it; a second run into the
    same folder is refused with `ArgumentError`. Only the main process locks (the other ranks are its run). A
    folder this call created and the run left empty is removed again."""
    if not main_process:
        yield
        return
    if folder.exists() and not folder.is_dir():
        raise ArgumentError(f"--output_dir {folder} is a file, not a folder: choose a folder path.")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    while True:
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ArgumentError(f"{folder} is in use by another run (it holds the lock {LOCK}): wait for that run "
                                "to end, or choose another --output_dir.") from None
        # The run before may have deleted the file between our open and our lock: then lock the new one.
        if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()
        if created and not any(folder.iterdir()):
            folder.rmdir()


def locks_output_dir(run):
    """Decorates `run(model_args, data_args, training_args, ...)` to train under `locked_run_folder`."""

    @functools.wraps(run)
    def locked(model_args, data_args, training_args, *args, **kwargs):
        with locked_run_folder(Path(training_args.output_dir), training_args.process_index == 0):
            return run(model_args, data_args, training_args, *args, **kwargs)

    return locked


class LogAtCheckpoints(TrainerCallback):
    """Logs the training loss at every checkpoint and at the last step, so that `state.log_history` (saved in each
    checkpoint) holds the loss of every step: a resumed run's `train_loss` can then cover the whole run."""

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save or control.should_training_stop:
            control.should_log = True

    on_epoch_end = on_step_end


def whole_run_train_loss(log_history: list[dict]) -> float:
    """Mean training loss over every step of the run: each logged `loss` is the mean since the previous log."""
    total, last_step = 0.0, 0
    for entry in log_history:
        if "loss" in entry:
            total += entry["loss"] * (entry["step"] - last_step)
            last_step = entry["step"]
    return total / last_step


__all__ = [
    "ArgumentError", "LOCK", "LogAtCheckpoints", "RESULTS", "RUN_ARGS", "RUN_FILES", "fingerprint",
    "last_complete_checkpoint", "locked_run_folder", "locks_output_dir", "plan_run", "start_run_folder",
    "whole_run_train_loss",
]  # fmt: skip
