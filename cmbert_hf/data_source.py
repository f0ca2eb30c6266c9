"""The data a run trains on when a YAML recipe and the command line both name it.

A recipe's `data_dir` belongs to its `dataset_config`: `--config configs/demo.yaml --dataset_config recordings`
without `--data_dir` would otherwise read the demo's corpus as "recordings" and train on it, exit 0, with the
demo's numbers. Such a run, and one of the `recordings` config without any folder, stop with one line.
"""

from .run_folder import ArgumentError


def check_data_source(recipe: str | None, defaults: dict, argv: list[str], data_args) -> None:
    """Raises `ArgumentError` when `argv` changes the `dataset_config` of the YAML `recipe` (whose keys are
    `defaults`) but the run would still read the recipe's `data_dir`, or when the `recordings` config has no
    `data_dir`."""
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    inherited = "--data_dir" not in given and defaults.get("data_dir") is not None
    if inherited and "--dataset_config" in given and data_args.dataset_config != defaults.get("dataset_config"):
        raise ArgumentError(
            f"--dataset_config {data_args.dataset_config} replaces {recipe}'s dataset_config "
            f"{defaults.get('dataset_config')!r} but would read its data_dir {defaults['data_dir']!r}, that config's "
            f"data: pass --data_dir with the folder of the {data_args.dataset_config!r} data."
        )
    if data_args.dataset_config == "recordings" and not data_args.data_dir:
        raise ArgumentError(
            "--dataset_config recordings needs --data_dir: the folder of your audio files and their metadata.csv or "
            "metadata.jsonl (configs/recordings.yaml describes the columns)."
        )


__all__ = ["check_data_source"]
