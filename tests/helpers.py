"""Constants and helpers the test modules share (importable because pytest puts tests/ on sys.path); the shared
fixtures are in conftest.py."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from transformers import TrainerCallback

# The real CMU-MOSI transcripts, read from ../shared beside the checkout (never copied into the repo).
MOSI_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi-text"
# The synthetic recipe: what tests run when the data must not matter.
SYNTHETIC_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml")

# The tiny BERT of transformers' model testers.
TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)

# Five features, the tiny model's width (`word_features`); the extractor's default set is wider.
# A steady 180 Hz tone of 1 s at 16 kHz, and word timings for it.
FIVE = ["f0", "voiced", "energy", "energy_peak", "duration"]
TONE = (0.3 * np.sin(2 * np.pi * 180 * np.arange(16000) / 16000)).astype(np.float32)
TIMINGS = [("hello", 0.0, 0.5), ("there", 0.5, 1.0)]
TEXTS = ["what a wonderful movie", "the plot was terribly boring and the acting unconvincing", "meh"]
COVAREP = {"audio_feature_source": "covarep", "audio_feature_names": None}
TEXT_ONLY = {"audio_feature_source": "none", "audio_feature_names": None}


def word_features(text, seed=0):
    """Random word-level features, one row per white-space word (D = 5, the tiny model's extractor's width)."""
    return np.random.default_rng(seed).normal(size=(len(text.split()), 5)).astype(np.float32)


def variant(folder, target, config=None, extractor=None):
    """A copy of a saved model folder with changed config.json and feature extractor entries."""
    shutil.copytree(folder, target)
    for name, changes in (("config.json", config), ("processor_config.json", extractor)):
        path = target / name
        saved = json.loads(path.read_text())
        (saved["feature_extractor"] if name == "processor_config.json" else saved).update(changes or {})
        path.write_text(json.dumps(saved))
    return target


def recordings(folder, n, seed):
    """`n` WAV files (modulated tones over noise, 1-1.5 s) with their text and word timings, as a Dataset."""
    import datasets

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        seconds = 1.0 + 0.25 * i
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.2 * np.sin(2 * np.pi * (120 + 40 * i + 30 * seed) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        path = folder / f"utterance-{seed}-{i}.wav"
        sf.write(path, (wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32), 16000)
        words = ["so", "very", "good"][: 2 + i % 2]
        bounds = np.linspace(0.0, seconds, len(words) + 1)
        timings = [{"word": w, "start": a, "end": b} for w, a, b in zip(words, bounds[:-1], bounds[1:], strict=True)]
        rows.append({"audio": str(path), "text": " ".join(words), "word_timings": timings})
    return datasets.Dataset.from_list(rows)


def timed(row):
    return [(t["word"], t["start"], t["end"]) for t in row["word_timings"]]


def untrainable(tmp_path) -> list[str]:
    """Arguments of a run that fails at once if it gets as far as loading a model (bad input must fail before): an
    empty folder, which passes train.py's check that a local model path exists."""
    (tmp_path / "no-model").mkdir(exist_ok=True)
    return ["--config", SYNTHETIC_CONFIG, "--model_name_or_path", str(tmp_path / "no-model"), "--output_dir",
            str(tmp_path / "out")]  # fmt: skip


def write_search(folder: Path, space: dict, n_trials: int = 2, metric: str = "loss", **extra) -> str:
    """A search YAML in `folder` over `space`; returns its path."""
    path = folder / "search.yaml"
    recipe = {"metric": metric, "direction": "minimize", "n_trials": n_trials, "space": space, **extra}
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return str(path)


CRASH_AT_FIRST_CHECKPOINT = textwrap.dedent(
    """
    import os, sys
    from transformers import TrainerCallback
    from cmbert_hf import recipe

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            os._exit(17)  # die abruptly right after the first checkpoint is on disk

    recipe.main(sys.argv[1:], callbacks=[Crash()])
    """
)


def crash_at_first_checkpoint(args: list[str]) -> None:
    """Runs train.py's recipe with `args` in a child process that dies abruptly once its first checkpoint is saved."""
    crashed = subprocess.run([sys.executable, "-c", CRASH_AT_FIRST_CHECKPOINT, *args], capture_output=True, timeout=600)
    assert crashed.returncode == 17, crashed.stderr[-2000:]


class Steps(TrainerCallback):
    """Records the global step of every training step it sees."""

    def __init__(self):
        self.done = []

    def on_step_end(self, args, state, control, **kwargs):
        self.done.append(state.global_step)
