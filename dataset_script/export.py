"""Export built configs as a data-only Hub dataset: Parquet shards plus a dataset card.

The folder loads without this code: `datasets.load_dataset(folder_or_repo_id, "text")` finds the
`configs:` / `data_files:` entries of the card's YAML front matter.

    folder/
      README.md                          card: YAML (configs, dataset_info) + description
      text/train-00000-of-00001.parquet  one shard per config and split
      ...
"""

import shutil
import tempfile
from pathlib import Path

from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from httpx2 import HTTPError  # huggingface_hub's HTTP client: connection failures are not HfHubHTTPError
from huggingface_hub import DatasetCard, DatasetCardData, HfApi

from dataset_script.mosi import CITATION, DESCRIPTION, load_mosi

CARD_BODY = """
# CMU-MOSI for CM-BERT

Data-only export of the `dataset_script` builder of cmbert-hf. Configs: {configs}.

```python
from datasets import load_dataset
dataset = load_dataset("<this repo>", "{first}")
```

## Features

{description}
## Licence

The terms of the original CMU-MOSI / CMU-MOSEI releases (and of the CM-BERT / MMSA feature
releases) apply to this data; this export adds no rights. Check them before redistributing.

## Citation

```bibtex
{citation}```
"""


def shard_path(config: str, split: str) -> str:
    """Where a config's split lives inside the exported folder (the Hub's single-shard naming)."""
    return f"{config}/{split}-00000-of-00001.parquet"


def export_to_folder(out_dir, configs=("text",), data_dir=None, cache_dir=None, **config_kwargs) -> Path:
    """Builds each config and writes its splits as Parquet plus a README.md dataset card.

    Args:
        out_dir (`str` or `Path`): folder to write (created if needed). Everything is built in a staging
            folder beside it first, so a failed build leaves `out_dir` as it was; then the shards replace
            their namesakes and the card comes last. Other files in `out_dir` are left alone.
        configs (`list[str]`): config names of `Mosi.BUILDER_CONFIGS`.
        data_dir (`str` or `dict[str, str]`, *optional*): source folder for every config, or one per config name.
        cache_dir (`str`, *optional*): the datasets cache used while building.
        **config_kwargs: `MosiConfig` fields passed to every config.

    Returns:
        The output folder as a `Path`.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dirs = data_dir if isinstance(data_dir, dict) else {name: data_dir for name in configs}
    metadata, infos = MetadataConfigs(), DatasetInfosDict()
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}-", dir=out_dir.parent) as staging:
        staging = Path(staging)
        shards = []
        for name in configs:
            dataset = load_mosi(name, data_dir=data_dirs.get(name), cache_dir=cache_dir, **config_kwargs)
            for split, part in dataset.items():
                shards.append(shard_path(name, split))
                (staging / name).mkdir(exist_ok=True)
                part.to_parquet(staging / shards[-1])
            metadata[name] = {"data_files": [{"split": split, "path": shard_path(name, split)} for split in dataset]}
            infos[name] = dataset["train"].info
        card_data = DatasetCardData(license="other", task_categories=["text-classification"], language=["en"], pretty_name="CMU-MOSI for CM-BERT")
        metadata.to_dataset_card_data(card_data)
        infos.to_dataset_card_data(card_data)
        body = CARD_BODY.format(configs=", ".join(configs), first=configs[0], description=DESCRIPTION, citation=CITATION)
        DatasetCard(f"---\n{card_data.to_yaml()}\n---\n{body}").save(staging / "README.md")
        for path in [*shards, "README.md"]:  # same file system: each move is a rename
            (out_dir / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(staging / path, out_dir / path)
    return out_dir


class ExportPushError(RuntimeError):
    """Uploading an export failed; the folder is complete and the message holds the command to retry."""


def push_to_hub(out_dir, repo_id: str, token: str | None = None, private: bool | None = None) -> str:
    """Creates the dataset repo if needed and uploads an exported folder as one commit; returns the commit URL.

    Raises:
        `ExportPushError`: the folder is no export (no README.md), or the Hub could not be reached or refused the
        upload; a repository this call created is deleted again, so a failed first push leaves nothing behind.
    """
    out_dir = Path(out_dir)
    if not (out_dir / "README.md").is_file():
        raise ExportPushError(f"{out_dir} has no README.md: it is not a finished export, nothing was pushed.")
    api = HfApi(token=token)
    created = False
    try:
        created = not api.repo_exists(repo_id, repo_type="dataset")
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="dataset")
        commit = api.upload_folder(repo_id=repo_id, folder_path=out_dir, repo_type="dataset",
                                   commit_message="Upload CMU-MOSI export")
    except (HTTPError, OSError) as error:  # network, server or file errors; HfHubHTTPError is an OSError
        left = ""
        if created:
            try:
                api.delete_repo(repo_id, repo_type="dataset", missing_ok=True)
            except (HTTPError, OSError):
                left = f" The empty repository {repo_id} it created could not be deleted."
        retry = f"cmbert push {out_dir} --repo-id {repo_id}" + (" --private" if private else "") + " --repo-type dataset"
        raise ExportPushError(
            f"Pushing {out_dir} to {repo_id} failed ({type(error).__name__}: {error}).{left} The folder is complete; "
            f"retry with: {retry}"
        ) from error
    return commit.commit_url


__all__ = ["ExportPushError", "export_to_folder", "push_to_hub", "shard_path"]
