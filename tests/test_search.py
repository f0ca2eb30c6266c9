"""train.py --search: the space's checks, an Optuna search (test split unread, a failed trial, trials seeded like
standalone runs), a killed search that resumes, Ray Tune and seeds in parallel on a local two-node Ray cluster."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from datasets import DatasetDict
from ray.cluster_utils import Cluster
from transformers import TrainerCallback

import dataset_script
from cmbert_hf import recipe
from cmbert_hf.search import SearchSpace
from cmbert_hf.training_args import parse_args, parse_command
from helpers import SYNTHETIC_CONFIG, untrainable, write_search

ROOT = Path(__file__).resolve().parents[1]

SPACE = {
    "learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
    "fusion_dim": {"type": "categorical", "choices": [8, 16]},  # a model argument
}


class Events(TrainerCallback):
    """Every run's start and evaluation, in order, with the folder it writes to."""

    def __init__(self, log: list, fail_run: int | None = None):
        self.log, self.fail_run, self.runs = log, fail_run, 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.runs += 1
        self.log.append(("train", args.output_dir))
        if self.runs == self.fail_run:
            raise RuntimeError("injected failure")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if "eval_loss" in metrics:
            self.log.append(("eval", args.output_dir, state.global_step, metrics["eval_loss"]))


# --- bad input, before anything runs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space, message",
    [
        ({"learnig_rate": SPACE["learning_rate"]}, r"space.learnig_rate: not a train.py argument"),
        ({"seed": {"type": "uniform", "low": 1, "high": 9}}, r"uniform distribution does not fit .* \(use int\)"),
        ({"lr_scheduler_type": {"type": "int", "low": 1, "high": 3}}, r"int distribution does not fit .* categorical"),
        ({"lr_scheduler_type": {"type": "categorical", "choices": ["linear", "cosinus"]}}, r"'cosinus' is not a valid"),
        ({"fusion_dim": {"type": "categorical", "choices": [8, 0.5]}}, r"space.fusion_dim: choice 0.5 is not"),
        ({"learning_rate": {"type": "loguniform", "low": 0, "high": 1e-3}}, r"low < high and low > 0"),
        ({"learning_rate": {"type": "gaussian", "mean": 1e-3}}, r"expected \{type: loguniform\|uniform\|int"),
        ({"learning_rate": {"type": "uniform", "low": 1e-5}}, r"missing \['high'\]"),
        ({"max_length": {"type": "int", "low": 20, "high": 50}}, r"space.max_length: the data is encoded once"),
        ({"seeds": {"type": "categorical", "choices": [1]}}, r"a list argument cannot be searched"),
    ],
)
def test_a_bad_search_space_fails_before_anything_runs(tmp_path, space, message):
    config = write_search(tmp_path, space)
    with pytest.raises(ValueError, match=message):
        recipe.main([*untrainable(tmp_path), "--search", config])
    assert not (tmp_path / "out").exists()


def test_a_bad_search_file_names_the_field(tmp_path):
    config = write_search(tmp_path, SPACE, direction="down")
    with pytest.raises(ValueError, match=r"search.yaml: direction must be minimize or maximize, got 'down'"):
        recipe.main([*untrainable(tmp_path), "--search", config])
    config = write_search(tmp_path, SPACE, n_trials=0)
    with pytest.raises(ValueError, match=r"search.yaml: n_trials must be a positive integer, got 0"):
        recipe.main([*untrainable(tmp_path), "--search", config])


# search YAML: the recipe it searches around, its number of trials and what it searches
SEARCH_CONFIGS = {
    "mosi_minilm.yaml": ("tbert_mosi_minilm.yaml", 8, ["learning_rate", "fusion_learning_rate", "warmup_steps",
                                                        "weight_decay"]),
    "synthetic.yaml": ("synthetic.yaml", 4, ["learning_rate", "fusion_learning_rate"]),
}


def test_every_search_config_is_checked():
    assert sorted(p.name for p in (ROOT / "configs/search").glob("*.yaml")) == sorted(SEARCH_CONFIGS)


@pytest.mark.parametrize("name", sorted(SEARCH_CONFIGS))
def test_every_search_config_fits_its_recipe(name):
    path = ROOT / "configs/search" / name
    config, n_trials, searched = SEARCH_CONFIGS[name]
    space = SearchSpace.from_yaml(path, *parse_args(["--config", str(ROOT / "configs" / config)]))
    # The header's command names this file and its recipe.
    assert f"--config configs/{config} --search configs/search/{name}" in path.read_text()
    assert space.metric == "loss" and space.direction == "minimize" and space.n_trials == n_trials
    assert space.targets == dict.fromkeys(searched, "training")


def test_an_objective_validation_does_not_report_fails_before_the_first_trial(
    tiny_checkpoint, dataset_cache, tiny_args, tmp_path
):
    log = []
    config = write_search(tmp_path, SPACE, metric="mse")
    with pytest.raises(ValueError, match=r"metric 'mse' is not reported by validation; it reports \[.*'loss', 'mae'"):
        recipe.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path / "out", "--search", config),
                   callbacks=[Events(log)])  # fmt: skip
    assert log == [] and not (tmp_path / "out" / "trials.md").exists()


# --- Optuna -----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_optuna_search_picks_by_validation_and_reruns_the_best_like_a_standalone_run(
    tiny_checkpoint, dataset_cache, tiny_args, tmp_path, monkeypatch
):
    log = []
    load_mosi = dataset_script.load_mosi

    class Watched(DatasetDict):
        def __getitem__(self, split):
            if split == "test":
                log.append(("test",))
            return super().__getitem__(split)

    monkeypatch.setattr(dataset_script, "load_mosi", lambda *a, **k: Watched(load_mosi(*a, **k)))
    # A seed in the space: a trial must train from its own seed (not args.seed, not the previous trial's).
    config = write_search(tmp_path, {**SPACE, "seed": {"type": "int", "low": 1, "high": 10**6}}, n_trials=3)
    out = tmp_path / "out"
    args = tiny_args(tiny_checkpoint, dataset_cache, out, "--search", config, "--num_train_epochs", "1")
    results = recipe.main(args, callbacks=[Events(log, fail_run=2)])

    search = results["search"]
    trials = search["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[1]["error"] == "RuntimeError: injected failure" and trials[1]["value"] is None
    assert search["counts"] == {"complete": 2, "fail": 1, "pruned": 0}
    best = min((trials[0], trials[2]), key=lambda t: t["value"])
    assert search["best"] == best and search["backend"] == "optuna"
    table = (out / "trials.md").read_text()
    assert table.startswith("| trial | state | loss | learning_rate | fusion_dim | seed | error |")
    assert "| 1 | FAIL |" in table and "RuntimeError: injected failure |" in table
    assert f"3 trials: 2 complete, 1 failed, 0 pruned. Best: trial {best['trial']}" in table
    assert not list((out / "search").glob("run-*"))  # no trial keeps its checkpoints, the failed one included

    # The test split is first read after the last trial, by the re-run of the best trial.
    search_dir = str(out / "search")
    trial_events = [i for i, e in enumerate(log) if e[0] != "test" and e[1] == search_dir]
    assert len([e for e in log if e[:2] == ("train", search_dir)]) == 3
    assert log.index(("test",)) > max(trial_events)

    # The best trial's arguments re-run over its seed (no --seeds): results.json and results.md as for --seeds.
    seed = best["params"]["seed"]
    assert list(results["per_seed"]) == [seed]
    saved = json.loads((out / "results.json").read_text())
    assert saved["search"]["best"]["trial"] == best["trial"] and list(saved["per_seed"]) == [str(seed)]
    assert (out / "results.md").read_text().startswith("| seed | loss | mae |")
    run = json.loads((out / f"seed-{seed}" / "results.json").read_text())
    assert run["training"]["learning_rate"] == best["params"]["learning_rate"]
    assert run["model"]["fusion_dim"] == best["params"]["fusion_dim"] and run["seed"] == seed
    # ... and a standalone run of the best arguments trains exactly as the trial did.
    rerun = [e[3] for e in log if e[:2] == ("eval", str(out / f"seed-{seed}"))]
    assert rerun == pytest.approx(list(best["history"].values()), abs=1e-6)


KILL_AT_SECOND_TRIAL = textwrap.dedent(
    """
    import os, sys
    from transformers import TrainerCallback
    from cmbert_hf import recipe

    class Kill(TrainerCallback):
        runs = 0

        def on_train_begin(self, args, state, control, **kwargs):
            Kill.runs += 1
            if Kill.runs == 2:
                os._exit(17)  # die abruptly: trial 0 is stored, trial 1 is running

    recipe.main(sys.argv[2:], callbacks=[Kill()])
    """
)


@pytest.mark.slow
def test_a_killed_search_resumes_without_redoing_finished_trials(tiny_checkpoint, dataset_cache, tiny_args, tmp_path):
    config = write_search(tmp_path, SPACE, n_trials=2)
    out = tmp_path / "out"
    args = tiny_args(tiny_checkpoint, dataset_cache, out, "--search", config, "--num_train_epochs", "1")
    killed = subprocess.run([sys.executable, "-c", KILL_AT_SECOND_TRIAL, str(ROOT), *args], capture_output=True,
                            timeout=600)  # fmt: skip
    assert killed.returncode == 17, killed.stderr[-3000:]
    assert not (out / "trials.md").exists() and not (out / "results.json").exists()
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'search' / 'optuna.db'}")
    before = study.trials
    assert [t.state.name for t in before] == ["COMPLETE", "RUNNING"]
    assert not (out / "search" / "run-0").exists()  # a finished trial's checkpoints are gone

    log = []
    results = recipe.main(args, callbacks=[Events(log)])
    trained = [e[1] for e in log if e[0] == "train"]
    seed = yaml.safe_load(Path(SYNTHETIC_CONFIG).read_text())["seed"]  # no seed in the space: the recipe's
    assert trained == [str(out / "search"), str(out / f"seed-{seed}")]  # trial 1 again, then the best; not trial 0
    trials = results["search"]["trials"]
    assert [(t["trial"], t["state"]) for t in trials] == [(0, "COMPLETE"), (1, "FAIL"), (2, "COMPLETE")]
    assert trials[0]["value"] == before[0].value and trials[0]["params"] == before[0].params
    assert trials[1]["error"].startswith("interrupted") and trials[2]["params"] == before[1].params
    assert results["search"]["counts"]["complete"] == 2
    # The search keeps its study and nothing of its trials' checkpoints (the interrupted one's included).
    assert [p.name for p in (out / "search").iterdir()] == ["optuna.db"]


# --- Ray ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, message",
    [("127.0.0.1:9", "no Ray cluster answers there"), ("auto", "Could not find any running Ray instance")],
)
def test_an_unreachable_ray_address_fails_in_seconds(tmp_path, monkeypatch, address, message):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no cluster of another process to find
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=rf"--ray_address {address}: {message}"):
        recipe.main([*untrainable(tmp_path), "--ray_address", address])
    assert time.monotonic() - started < 20 and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def ray_cluster():
    """Two Ray nodes of one CPU each on this machine; Ray's files in a fresh short folder (socket paths are
    limited to 107 characters), nothing in the home folder or /tmp/ray."""
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_TMPDIR=folder, RAY_USAGE_STATS_ENABLED="0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    for key, value in saved.items():
        os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_ray_runs_trials_and_seeds_on_both_nodes_like_the_sequential_sweep(
    ray_cluster, tiny_checkpoint, dataset_cache, tiny_args, tmp_path
):
    config = write_search(tmp_path, SPACE, n_trials=2)
    common = ("--num_train_epochs", "1", "--seeds", "1", "2")
    on_ray = recipe.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path / "ray", "--search", config, *common,
                                  "--ray_address", ray_cluster.address))  # fmt: skip
    nodes = {node.node_id for node in ray_cluster.list_all_nodes()}
    trials = on_ray["search"]["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"] and on_ray["search"]["backend"] == "ray"
    assert {t["node_id"] for t in trials} == nodes  # one CPU per node, one per trial: both ran at once
    assert {on_ray["per_seed"][s]["node"]["node_id"] for s in (1, 2)} == nodes
    assert (tmp_path / "ray" / "ray" / "search").is_dir()  # Tune's storage_path: output_dir/ray
    assert "| node |" in (tmp_path / "ray" / "trials.md").read_text()

    best = on_ray["search"]["best"]["params"]
    flags = ("--learning_rate", repr(best["learning_rate"]), "--fusion_dim", str(best["fusion_dim"]))
    sequential = recipe.main(tiny_args(tiny_checkpoint, dataset_cache, tmp_path / "seq", *common, *flags))
    for seed in (1, 2):
        for key, value in sequential["per_seed"][seed]["test"].items():
            if not key.endswith(("_runtime", "_per_second")):
                assert on_ray["per_seed"][seed]["test"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (seed, key)


def test_n_trials_flag_overrides_the_search_yaml(tmp_path):
    config = write_search(tmp_path, SPACE, n_trials=3)
    search_args, *arguments = parse_command(["--config", SYNTHETIC_CONFIG, "--search", config])
    assert SearchSpace.from_arguments(search_args, *arguments).n_trials == 3
    search_args, *arguments = parse_command(["--config", SYNTHETIC_CONFIG, "--search", config, "--n_trials", "5"])
    assert SearchSpace.from_arguments(search_args, *arguments).n_trials == 5
