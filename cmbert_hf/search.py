"""Hyperparameter search and seeds at scale: Optuna on one machine, Ray Tune on a cluster.

`train.py --config X.yaml --search configs/search/Y.yaml` runs the trials through `Trainer.hyperparameter_search`
on the train and validation splits only (the test split is not even encoded until the best trial is chosen), then
re-runs the best trial's arguments over `--seeds` (by default the best trial's seed) into `output_dir/seed-N` with
the `results.json` / `results.md` of a `--seeds` run; every trial is listed in `trials.md` and in
`results.json["search"]`. A search YAML:

    metric: loss            # a validation metric: `loss` or a key of `cmbert_hf.metrics` (no `eval_` prefix)
    direction: minimize     # or maximize
    n_trials: 8
    space:                  # each key a train.py argument (model or training), with its distribution
      learning_rate: {type: loguniform, low: 1.0e-5, high: 1.0e-4}
      warmup_steps: {type: uniform, low: 0.0, high: 0.2}
      fusion_dim: {type: int, low: 16, high: 64, step: 16}     # optional `step`, `log: true`
      weight_decay: {type: categorical, choices: [0.0, 0.01]}

A trial's objective is the metric at its last evaluation (the Trainer's convention). A trial that raises is
recorded as failed with its error and the search goes on.

Optuna (the default) runs the trials one after the other in this process; the study lives in
`output_dir/search/optuna.db` (SQLite), so a killed search run again with the same command resumes: finished trials
are kept, the interrupted one is run again with its parameters, and only the trials still missing are run.

Ray Tune (`--ray_address local|auto|HOST:PORT`) runs the trials, and then the seeds, in parallel over the nodes of a
Ray cluster, each with `--ray_cpus_per_trial` / `--ray_gpus_per_trial`. Every node needs this package installed
(workers import the recipe from it) and the driver's working directory on a shared file system: workers run there, so `output_dir`, `--dataset_cache_dir` and `--ray_storage_path` (Tune's results and
checkpoints, by default `output_dir/ray`) are seen by all nodes. The Optuna trials and sequential seeds get the
`callbacks` of `recipe.main`; Ray's workers do not. The search's Trainer is built in a spawned process, so a script
that calls `recipe.main` with `--search` and `--ray_address` does so under `if __name__ == "__main__":`. Ray's
session files go to `RAY_TMPDIR` (`/tmp/ray` if unset; keep it short, socket paths are limited to 107 characters);
usage statistics are off unless `RAY_USAGE_STATS_ENABLED` says otherwise. Tune is the tool
for many independent runs (trials, seeds), one per worker. A single run too large for one worker wants data-parallel
workers instead: Ray Train's `TorchTrainer` around the same Trainer (`ray.train.huggingface.transformers`), or
`accelerate launch` with `configs/accelerate/multi_node.yaml`.

Trials seed themselves: `Trainer.train` seeds with `args.seed` and calls `model_init` before it copies a trial's
parameters into `args`, so a `seed` in the space would reach the model's initialisation one trial late under Optuna
and never under Ray. `SearchTrainer.call_model_init` seeds with the trial's seed as `recipe.run` does, so a trial
trains exactly like a standalone run with the same arguments.
"""

import concurrent.futures
import copy
import dataclasses
import logging
import multiprocessing
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from transformers import EvalPrediction, HfArgumentParser, set_seed
from transformers.trainer_utils import enable_full_determinism

from . import recipe
from .run_folder import NOT_IN_FINGERPRINT, ArgumentError
from .training import CMBertTrainer
from .training_args import check_fusion_settings, parse_args

logger = logging.getLogger(__name__)

DISTRIBUTIONS = {"loguniform": {"low", "high"}, "uniform": {"low", "high"}, "int": {"low", "high", "step", "log"},
                 "categorical": {"choices"}}  # fmt: skip
STUDY = "search"
# Arguments that say where and how a run is recorded, not how it trains: not hyperparameters (a trial's
# `output_dir` would write outside the search's folder).
NOT_SEARCHABLE = NOT_IN_FINGERPRINT - {"dataloader_num_workers", "dataloader_pin_memory",
                                       "dataloader_persistent_workers", "dataloader_prefetch_factor"}


# --- the search space --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """A validated search YAML. `targets` maps each searched argument to `model` or `training`."""

    path: str
    metric: str
    direction: str
    n_trials: int
    space: dict[str, dict]
    targets: dict[str, str]

    @classmethod
    def from_arguments(cls, search_args, model_args, data_args, training_args) -> "SearchSpace":
        """The space of `--search`, its number of trials `--n_trials` where given."""
        space = cls.from_yaml(search_args.search, model_args, data_args, training_args)
        return space if search_args.n_trials is None else dataclasses.replace(space, n_trials=search_args.n_trials)

    @classmethod
    def from_yaml(cls, path, model_args, data_args, training_args) -> "SearchSpace":
        """Reads and checks `path` against the recipe's parser (built from the argument dataclasses, so the check
        follows them when they change). The command line's checks of a run's arguments (`check_run_arguments`) run
        with each end of every range and each choice, so that no trial gets a value the command line refuses (they
        are all range checks: the ends bound them)."""
        try:
            recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ArgumentError(f"--search {path}: cannot read a search YAML ({' '.join(str(error).split())}).")
        expected = {"metric", "direction", "n_trials", "space"}
        if not isinstance(recipe, dict) or set(recipe) != expected:
            raise ArgumentError(f"{path}: a search YAML has exactly the keys {sorted(expected)}, got "
                             f"{sorted(recipe) if isinstance(recipe, dict) else type(recipe).__name__}.")
        if not isinstance(recipe["metric"], str):
            raise ArgumentError(f"{path}: metric must be a validation metric's name, got {recipe['metric']!r}.")
        if recipe["direction"] not in ("minimize", "maximize"):
            raise ArgumentError(f"{path}: direction must be minimize or maximize, got {recipe['direction']!r}.")
        n_trials = recipe["n_trials"]
        if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
            raise ArgumentError(f"{path}: n_trials must be a positive integer, got {n_trials!r}.")
        if not isinstance(recipe["space"], dict) or not recipe["space"]:
            raise ArgumentError(f"{path}: space must map train.py arguments to distributions.")

        arguments = (model_args, data_args, training_args)
        actions = {a.dest: a for a in HfArgumentParser([type(a) for a in arguments])._actions}
        kinds = ("model", "data", "training")
        owner = {f.name: kind for kind, a in zip(kinds, arguments) for f in dataclasses.fields(a)}
        targets = {}
        for name, spec in recipe["space"].items():
            where = f"{path}: space.{name}"
            if name not in actions:
                raise ArgumentError(f"{where}: not a train.py argument (python train.py --help lists them).")
            if owner.get(name) == "data" or name in ("model_name_or_path", "text_only"):
                raise ArgumentError(f"{where}: the data is encoded once for all trials, so it cannot vary by trial.")
            _check_distribution(where, spec, actions[name])
            if name in NOT_SEARCHABLE:
                raise ArgumentError(f"{where}: not a hyperparameter (it says where or how the run is recorded): set it "
                                    "on the command line, not in the search space.")
            targets[name] = owner[name]
            # Values the parser takes may still be refused by the dataclass (an unknown scheduler name, ...) or by
            # the command line's checks (a learning rate of 0, ...).
            index = kinds.index(owner[name])
            for value in spec.get("choices", [spec.get("low"), spec.get("high")]):
                candidate = list(arguments)
                try:
                    candidate[index] = dataclasses.replace(arguments[index], **{name: value})
                    check_run_arguments(*copy.deepcopy(candidate))
                except (TypeError, ValueError) as error:
                    reason = " ".join(str(error).split())
                    raise ArgumentError(f"{where}: {value!r} is not a valid value ({reason}).") from error
        return cls(str(path), recipe["metric"], recipe["direction"], n_trials, recipe["space"], targets)

    def check_metric(self, trainer) -> None:
        """Fails before the first trial if validation does not report `metric` (its names from a toy evaluation)."""
        toy = trainer.compute_metrics(EvalPrediction(predictions=np.array([[-1.0], [0.5], [2.0]]),
                                                     label_ids=np.array([-1.0, 1.0, 2.0])))  # fmt: skip
        reported = {"loss", *toy}
        if self.metric not in reported:
            raise ArgumentError(f"{self.path}: metric {self.metric!r} is not reported by validation; it reports "
                             f"{sorted(reported)}.")

    def sample(self, trial) -> dict:
        """Every searched argument's value in `trial` (an Optuna trial, Ray's config dict, or None)."""
        if trial is None:
            return {}
        if isinstance(trial, dict):
            return {name: trial[name] for name in self.space}
        values = {}
        for name, spec in self.space.items():
            kind = spec["type"]
            if kind == "categorical":
                values[name] = trial.suggest_categorical(name, spec["choices"])
            elif kind == "int":
                values[name] = trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1),
                                                 log=spec.get("log", False))  # fmt: skip
            else:
                values[name] = trial.suggest_float(name, spec["low"], spec["high"], log=kind == "loguniform")
        return values

    def hp_space(self, trial) -> dict:
        """`Trainer.hyperparameter_search`'s `hp_space`: Ray's domains for `None`, else the trial's training
        arguments (the model's are applied by `SearchTrainer.call_model_init`)."""
        if trial is None:
            return self.ray_domains()
        return {n: v for n, v in self.sample(trial).items() if self.targets[n] == "training"}

    def ray_domains(self) -> dict:
        from ray import tune

        domains = {}
        for name, spec in self.space.items():
            kind = spec["type"]
            if kind == "categorical":
                domains[name] = tune.choice(spec["choices"])
            elif kind == "int":
                step, upper = spec.get("step", 1), spec["high"] + 1  # Tune's integer upper bounds are exclusive
                domains[name] = (tune.lograndint(spec["low"], upper) if spec.get("log")
                                 else tune.qrandint(spec["low"], spec["high"], step) if step > 1
                                 else tune.randint(spec["low"], upper))  # fmt: skip
            else:
                domains[name] = (tune.loguniform if kind == "loguniform" else tune.uniform)(spec["low"], spec["high"])
        return domains

    def objective(self, metrics: dict) -> float:
        """`compute_objective`: the metric from an evaluation's metrics."""
        key = f"eval_{self.metric}"
        if key not in metrics:
            raise KeyError(f"{self.path}: metric {self.metric!r} is not in the validation metrics {sorted(metrics)}.")
        return metrics[key]


def check_run_arguments(model_args, data_args, training_args) -> None:
    """The checks the command line applies to a run's arguments: the recipe's `check_arguments` and the config's
    validators."""
    recipe.check_arguments(model_args, data_args, training_args)
    check_fusion_settings(model_args)


def _check_distribution(where: str, spec, action) -> None:
    """One clear error if `spec` is not a distribution this argument's type can take."""
    if not isinstance(spec, dict) or spec.get("type") not in DISTRIBUTIONS:
        raise ArgumentError(f"{where}: expected {{type: {'|'.join(DISTRIBUTIONS)}, ...}}, got {spec!r}.")
    kind = spec["type"]
    extra = set(spec) - {"type"} - DISTRIBUTIONS[kind]
    missing = {"low", "high", "choices"} & DISTRIBUTIONS[kind] - set(spec)
    if extra or missing:
        raise ArgumentError(f"{where}: a {kind} distribution takes {sorted(DISTRIBUTIONS[kind])}; "
                         f"unexpected {sorted(extra)}, missing {sorted(missing)}.")
    if action.nargs not in (None, "?"):
        raise ArgumentError(f"{where}: a list argument cannot be searched.")
    if kind == "categorical":
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ArgumentError(f"{where}: choices must be a non-empty list.")
        for choice in spec["choices"]:
            try:
                valid = action.type(str(choice)) == choice and (not action.choices or choice in action.choices)
            except (TypeError, ValueError):
                valid = False
            if not valid:
                raise ArgumentError(f"{where}: choice {choice!r} is not a valid value of this argument.")
        return
    fits = (int, float) if kind == "int" else (float,)  # an integer is a valid float, not the reverse
    if action.type not in fits:
        hint = {float: "use uniform or loguniform", int: "use int"}.get(action.type, "use categorical")
        raise ArgumentError(f"{where}: a {kind} distribution does not fit this argument's type ({hint}).")
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ArgumentError(f"{where}: low and high must be numbers, got {low!r} and {high!r}.")
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise ArgumentError(f"{where}: an int distribution needs integer low and high, got {low!r} and {high!r}.")
    if not low < high or (kind == "loguniform" and low <= 0):
        raise ArgumentError(f"{where}: needs low < high{' and low > 0' if kind == 'loguniform' else ''}, got "
                         f"low={low!r}, high={high!r}.")


# --- the trials' Trainer -------------------------------------------------------------------------------------------


class SearchTrainer(CMBertTrainer):
    """The Trainer of the trials. `model_init(model_args)` builds a model; `call_model_init` picks the trial's
    arguments, seeds with the trial's seed and sets the trial's fusion learning rate."""

    def __init__(self, *args, space: SearchSpace, model_defaults, **kwargs):
        self.space, self.model_defaults = space, model_defaults
        super().__init__(*args, **kwargs)

    def call_model_init(self, trial=None):
        values = self.space.sample(trial)
        seed = values.get("seed", self.args.seed)
        model_values = {n: v for n, v in values.items() if self.space.targets[n] == "model"}
        model_args = dataclasses.replace(self.model_defaults, **model_values)
        set_seed(seed)  # as recipe.run, before the model draws its new weights
        model = self.model_init(model_args)
        # As a standalone run, where Trainer.__init__ seeds again once the model is built.
        enable_full_determinism(seed) if self.args.full_determinism else set_seed(seed)
        return model

    def train(self, *args, trial=None, **kwargs):
        try:
            return super().train(*args, trial=trial, **kwargs)
        except Exception as error:
            if hasattr(trial, "set_user_attr"):  # Optuna keeps no error of its own; Tune keeps one per trial
                trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            raise
        finally:
            # A trial's checkpoints (model and optimizer state, about 170 MB each for MiniLM) only served its own
            # best-model reload: the search keeps its objective, and the best trial is trained again from scratch.
            if trial is not None:
                shutil.rmtree(self._get_output_dir(trial), ignore_errors=True)

    def evaluate(self, *args, **kwargs):
        metrics = super().evaluate(*args, **kwargs)
        if self.hp_search_backend is not None and self.hp_search_backend.value == "ray":
            import ray

            metrics["node_id"] = ray.get_runtime_context().get_node_id()  # reported to Tune with the metrics
        return metrics


def build_search_trainer(model_args, data_args, training_args, space, callbacks=None) -> SearchTrainer:
    """The trials' Trainer on train and validation (the test split is not read), its checkpoints under
    `output_dir/search`."""
    processor, splits, _ = recipe.prepare_data(model_args, data_args, training_args, ("train", "validation"))
    args = copy.deepcopy(training_args)
    args.output_dir = os.path.join(training_args.output_dir, "search")
    trainer = recipe.build_trainer(
        model_args, data_args, args, processor, splits, trainer_class=SearchTrainer, space=space,
        model_defaults=model_args, model_init=_ModelInit(processor), callbacks=callbacks,
    )  # fmt: skip
    space.check_metric(trainer)
    return trainer


@dataclass(frozen=True)
class _ModelInit:
    """`recipe.build_model` for the data's processor (its audio width and provenance; picklable, for Ray)."""

    processor: Any

    def __call__(self, model_args):
        return recipe.build_model(model_args, self.processor)


# --- Optuna ----------------------------------------------------------------------------------------------------------


def optuna_search(trainer: SearchTrainer, space: SearchSpace, folder: str, seed: int) -> list[dict]:
    """Runs the trials still missing from the study in `folder/optuna.db`; returns every trial's record."""
    import optuna
    from optuna.trial import TrialState

    os.makedirs(folder, exist_ok=True)
    database = os.path.join(folder, "optuna.db")
    storage = optuna.storages.RDBStorage(f"sqlite:///{os.path.abspath(database)}")
    study = optuna.create_study(storage=storage, study_name=STUDY, direction=space.direction, load_if_exists=True)
    settings = {"metric": space.metric, "direction": space.direction, "space": space.space}
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
    elif stored != settings:
        raise ArgumentError(f"{database} holds a search with other settings ({stored}); {space.path} asks for "
                         f"{settings}. Search with another --output_dir, or go back to that search YAML.")
    study_id = storage.get_study_id_from_name(STUDY)
    for trial in study.get_trials(states=(TrialState.RUNNING,)):  # left running by a search that was killed
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "error", "interrupted: the search stopped during this trial")
        storage.set_trial_user_attr(trial_id, "interrupted", True)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        # Its checkpoints, in the Trainer's folder for an Optuna trial: it is run again from scratch.
        shutil.rmtree(os.path.join(trainer.args.output_dir, f"run-{trial.number}"), ignore_errors=True)
        study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
        logger.warning("trial %d was interrupted: it runs again with its parameters", trial.number)
    done = [t for t in study.trials if t.state.is_finished() and not t.user_attrs.get("interrupted")]
    remaining = space.n_trials - len(done)
    logger.warning("%s: %d of %d trials done, %d to run", database, len(done), space.n_trials, max(remaining, 0))
    if remaining > 0:
        try:
            trainer.hyperparameter_search(
                hp_space=space.hp_space, compute_objective=space.objective, n_trials=remaining,
                direction=space.direction, backend="optuna", storage=storage, study_name=STUDY, load_if_exists=True,
                # Seeded past the trials already made, so that a resumed search does not draw the same points again.
                sampler=optuna.samplers.TPESampler(seed=seed + len(study.trials)), catch=(Exception,),
                pruner=optuna.pruners.NopPruner(),  # every trial trains to its end, as the re-run of the best will
            )  # fmt: skip
        except ValueError:  # transformers asks for the best trial, which Optuna refuses when none completed
            if any(t.state == TrialState.COMPLETE for t in study.get_trials()):
                raise
    records = []
    for trial in study.trials:
        if trial.state == TrialState.WAITING:
            continue
        records.append({
            "trial": trial.number, "state": trial.state.name, "value": trial.value, "params": trial.params,
            "error": trial.user_attrs.get("error"),
            "history": {str(step): value for step, value in trial.intermediate_values.items()},
        })  # fmt: skip
    return records


# --- Ray -----------------------------------------------------------------------------------------------------------


def connect_ray(address: str) -> str:
    """Joins (or for `local` starts) a Ray cluster; returns its address. An unreachable HOST:PORT fails in seconds.

    Workers import the recipe from the installed package (and this process's PYTHONPATH, if set)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address not in ("local", "auto"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as error:
            raise ConnectionError(f"--ray_address {address}: no Ray cluster answers there ({error}). Start one with "
                                  "`ray start --head`, or pass --ray_address local.") from error
    if ray.is_initialized():
        if address == ray.get_runtime_context().gcs_address:
            return address
        ray.shutdown()  # connected elsewhere (an earlier call in this process): join the cluster asked for
    path = os.environ.get("PYTHONPATH")
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}} if path else None)  # fmt: skip
    except ConnectionError as error:
        raise ConnectionError(f"--ray_address {address}: {error}") from error
    return ray.get_runtime_context().gcs_address


def _load_arguments(cwd: str, argv: list[str], params: dict, targets: dict):
    """The recipe's arguments parsed from `argv` in a fresh process or Ray worker, in the driver's working directory,
    with `params` applied."""
    os.chdir(cwd)  # relative paths in the arguments mean what they meant to the driver
    arguments = parse_args(argv)
    apply_params(params, targets, *arguments)
    return arguments


def ray_search(cwd, argv, search_args, address) -> list[dict]:
    """The trials on Ray Tune, their Trainer built in this fresh process; returns every trial's record."""
    from ray.tune import ExperimentAnalysis
    from ray.tune.search import BasicVariantGenerator

    model_args, data_args, training_args = _load_arguments(cwd, argv, {}, {})
    space = SearchSpace.from_arguments(search_args, model_args, data_args, training_args)
    connect_ray(address)
    training_args.output_dir = os.path.abspath(training_args.output_dir)  # Tune runs each trial in its own folder
    trainer = build_search_trainer(model_args, data_args, training_args, space)
    storage = os.path.abspath(search_args.ray_storage_path or os.path.join(training_args.output_dir, "ray"))
    try:
        trainer.hyperparameter_search(
            hp_space=space.hp_space, compute_objective=space.objective, n_trials=space.n_trials,
            direction=space.direction, backend="ray", name=STUDY, storage_path=storage, raise_on_failed_trial=False,
            resources_per_trial={"cpu": search_args.ray_cpus_per_trial, "gpu": search_args.ray_gpus_per_trial},
            search_alg=BasicVariantGenerator(random_state=training_args.seed), verbose=1,
        )  # fmt: skip
        failed_to_pick = None
    except AttributeError as error:  # transformers reads `None.trial_id` when no trial completed: the records say why
        failed_to_pick = error
    records = []
    trials = sorted(ExperimentAnalysis(os.path.join(storage, STUDY)).trials, key=lambda t: t.trial_id)
    for number, trial in enumerate(trials):
        result = trial.last_result or {}
        error = Path(trial.error_file).read_text().strip().splitlines()[-1] if trial.error_file else None
        records.append({
            "trial": number, "trial_id": trial.trial_id, "state": "COMPLETE" if error is None else "FAIL",
            "value": result.get("objective") if error is None else None, "params": space.sample(trial.config),
            "error": error, "node_id": result.get("node_id"), "node_ip": result.get("node_ip"),
        })  # fmt: skip
    if failed_to_pick is not None and any(r["state"] == "COMPLETE" for r in records):
        raise failed_to_pick
    return records


def _seed_task(cwd, argv, params, targets, seed) -> dict:
    import ray

    model_args, data_args, training_args = _load_arguments(cwd, argv, params, targets)
    metrics = recipe.run(model_args, data_args, recipe.seed_args(training_args, seed), reuse_finished=True)
    node = {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}
    return {**metrics, "node": node}


def ray_seeds(argv, search_args, params, targets, seeds) -> dict[int, dict]:
    """`recipe.run` once per seed, in parallel on the cluster, into `output_dir/seed-N`."""
    import ray

    task = ray.remote(_seed_task).options(num_cpus=search_args.ray_cpus_per_trial,
                                          num_gpus=search_args.ray_gpus_per_trial)  # fmt: skip
    futures = {seed: task.remote(os.getcwd(), argv, params, targets, seed)
               for seed in seeds}  # fmt: skip
    return {seed: ray.get(future) for seed, future in futures.items()}


# --- the whole search -------------------------------------------------------------------------------------------


def apply_params(params: dict, targets: dict, model_args, data_args, training_args) -> None:
    """Sets a trial's values on the argument dataclasses, in each field's type."""
    for name, value in params.items():
        target = model_args if targets[name] == "model" else training_args
        current = getattr(target, name)
        setattr(target, name, value if current is None else type(current)(value))


def main(argv, model_args, data_args, training_args, search_args, callbacks=None) -> dict:
    """Search (if `--search`), then the best (or given) arguments over the seeds; on Ray with `--ray_address`.
    `argv` is the recipe's command line (Ray's workers parse it again)."""
    if training_args.world_size > 1:
        raise ArgumentError("--search and --ray_address run one process per trial or seed: start train.py with python, "
                         "not accelerate launch (Ray gives each trial --ray_gpus_per_trial).")
    space = search_args.search and SearchSpace.from_arguments(search_args, model_args, data_args, training_args)
    address = search_args.ray_address and connect_ray(search_args.ray_address)
    root = training_args.output_dir
    extra, params = {}, {}
    if space:
        if address:
            # Tune pickles the Trainer, which fails once any Trainer trained in this process (accelerate's
            # GradientState keeps weak references): the search's Trainer is built in a fresh process.
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                records = pool.submit(ray_search, os.getcwd(), argv, search_args, address).result()
        else:
            trainer = build_search_trainer(model_args, data_args, training_args, space, callbacks)
            records = optuna_search(trainer, space, os.path.join(root, "search"), training_args.seed)
        best = select_best(records, space)
        Path(root, "trials.md").write_text(trials_table(records, space, best))
        if best is None:
            first = next((r["error"] for r in records if r["error"]), "no error recorded")
            raise ArgumentError(f"no trial of {space.path} completed (the first error: {first}); "
                                f"{Path(root, 'trials.md')} lists every trial's error.")
        params = best["params"]
        apply_params(params, space.targets, model_args, data_args, training_args)
        extra["search"] = {"config": space.path, "metric": space.metric, "direction": space.direction,
                           "backend": "ray" if address else "optuna", "best": best, "counts": _counts(records),
                           "trials": records}  # fmt: skip
    seeds = training_args.seeds or [training_args.seed]
    if address:
        per_seed = ray_seeds(argv, search_args, params, space.targets if space else {}, seeds)
    else:
        per_seed = recipe.train_seeds(model_args, data_args, training_args, seeds, callbacks)
    return recipe.write_seed_results(root, per_seed, **extra)


def select_best(records: list[dict], space: SearchSpace) -> dict | None:
    complete = [r for r in records if r["state"] == "COMPLETE" and r["value"] is not None]
    if not complete:
        return None
    pick = min if space.direction == "minimize" else max
    return pick(complete, key=lambda r: r["value"])


def _counts(records: list[dict]) -> dict[str, int]:
    states = [r["state"] for r in records]
    return {state.lower(): states.count(state) for state in ("COMPLETE", "FAIL", "PRUNED")}


def trials_table(records: list[dict], space: SearchSpace, best: dict | None) -> str:
    """Every trial as a markdown row: state, objective, parameters, node (Ray) and error."""
    names = list(space.space)
    nodes = any(r.get("node_id") for r in records)
    header = ["trial", "state", space.metric, *names] + (["node"] if nodes else []) + ["error"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for r in records:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        params = [f"{r['params'][n]:.4g}" if isinstance(r["params"].get(n), float) else str(r["params"].get(n, ""))
                  for n in names]  # fmt: skip
        node = [(r.get("node_id") or "")[:8]] if nodes else []
        error = (r["error"] or "").replace("|", "/").replace("\n", " ")
        lines.append("| " + " | ".join([str(r["trial"]), r["state"], value, *params, *node, error]) + " |")
    counts = _counts(records)
    summary = (f"{len(records)} trials: {counts['complete']} complete, {counts['fail']} failed, "
               f"{counts['pruned']} pruned.")
    if best is not None:
        summary += f" Best: trial {best['trial']} ({space.metric} {best['value']:.4f}, {space.direction})."
    return "\n".join(lines) + "\n\n" + summary + "\n"


__all__ = ["SearchSpace", "SearchTrainer", "main"]
