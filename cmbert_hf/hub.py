"""Where models come from and go to: local folders told apart from Hub ids, and pushing a finished folder with a
message that says how to retry."""

import os
from pathlib import Path

from httpx2 import HTTPError  # huggingface_hub's HTTP client: connection failures are not HfHubHTTPError
from huggingface_hub import CommitInfo, HfApi, constants, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError, HfHubHTTPError
from huggingface_hub.utils import validate_repo_id

# Training leftovers that are not part of the model repository; run_args.json and training_args.bin record this
# machine's paths to resume or rerun the run locally.
IGNORE = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.tmp", "run_args.json", "training_args.bin"]
# The file that makes a folder pushable, per repository type.
REQUIRED = {"model": "config.json", "dataset": "README.md"}


class PushError(RuntimeError):
    """The push failed; the local folder is complete and the message holds the command to retry."""


def check_model_location(name: str) -> None:
    """Raises `FileNotFoundError` for a `name` that can only be a local folder and is not one, before the Hub
    client spends its retries on it: a path starting with `.`, `/` or `~`, with more than one `/` (Hub ids are
    NAMESPACE/NAME), or whose first component is an existing local folder (`outputs/typo`). With
    `HF_HUB_OFFLINE` set, a Hub id must be in the local cache."""
    if os.path.exists(os.path.expanduser(name)):
        return
    first = name.split("/", 1)[0]
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or ("/" in name and os.path.isdir(first)):
        raise FileNotFoundError(f"model folder not found: {name}")
    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise FileNotFoundError(f"{name} is neither a local folder nor in the Hub cache, and HF_HUB_OFFLINE is set")


def push_folder(
    folder,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload CM-BERT",
    repo_type: str = "model",
) -> CommitInfo:
    """Creates `repo_id` if needed (`private`: its visibility when created; None: the account's default) and
    uploads the Hub-ready `folder` as one commit. A repository this call created is deleted again if the upload
    fails, so a failed first push leaves nothing behind."""
    folder = Path(folder)
    if not (folder / REQUIRED[repo_type]).is_file():
        raise PushError(f"{folder} has no {REQUIRED[repo_type]}: it is not a finished folder, nothing was pushed.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PushError(f"--repo-id {repo_id!r} is not a Hub repository id NAMESPACE/NAME ({error})") from None
    api = HfApi(token=token)
    created = False
    try:
        created = not api.repo_exists(repo_id, repo_type=repo_type)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type)
        return api.upload_folder(
            repo_id=repo_id, folder_path=folder, ignore_patterns=IGNORE, commit_message=commit_message,
            repo_type=repo_type,
        )  # fmt: skip
    except (HTTPError, OSError, RuntimeError) as error:  # network, server or file errors (HfHubHTTPError: OSError)
        # huggingface_hub wraps a failed LFS upload (the server died mid-upload) in a RuntimeError
        if isinstance(error, RuntimeError) and not isinstance(error.__cause__, (HTTPError, OSError)):
            raise
        left = _delete_created(api, repo_id, repo_type) if created else ""
        retry = f"cmbert push {folder} --repo-id {repo_id}"
        retry += (" --private" if private else "") + ("" if repo_type == "model" else f" --repo-type {repo_type}")
        reason = error if error.__cause__ is None else f"{error} {type(error.__cause__).__name__}: {error.__cause__}"
        raise PushError(
            f"Pushing {folder} to {repo_id} failed ({type(error).__name__}: {reason}).{left} The folder is complete; "
            f"retry with: {retry}"
        ) from error


def _delete_created(api: HfApi, repo_id: str, repo_type: str) -> str:
    """Deletes the repository a failed push created; returns what the error message should add."""
    try:
        api.delete_repo(repo_id, repo_type=repo_type, missing_ok=True)
    except (HTTPError, HfHubHTTPError):
        delete = f"hf repos delete {repo_id}" + ("" if repo_type == "model" else f" --repo-type {repo_type}")
        return (f" The empty repository {repo_id} it created could not be deleted (the retry below fills it, or "
                f"delete it with: {delete}).")
    return ""


__all__ = ["PushError", "check_model_location", "push_folder"]
