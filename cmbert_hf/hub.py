"""Pushing a finished run folder to the Hub, with a message that says how to retry."""

from pathlib import Path

from huggingface_hub import CommitInfo, HfApi

# Training leftovers that are not part of the model repository.
IGNORE = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.tmp"]


class PushError(RuntimeError):
    """The push failed; the local folder is complete and the message holds the command to retry."""


def push_folder(
    folder, repo_id: str, token: str | None = None, private: bool | None = None, commit_message: str = "Upload CM-BERT"
) -> CommitInfo:
    """Creates `repo_id` if needed (`private`: its visibility when created; None: the account's default) and
    uploads the Hub-ready `folder` as one commit."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise PushError(f"{folder} has no config.json: it is not a finished run folder, nothing was pushed.")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id, folder_path=folder, ignore_patterns=IGNORE, commit_message=commit_message
        )
    except Exception as error:  # any network or server failure: the local folder is intact either way
        raise PushError(
            f"Pushing {folder} to {repo_id} failed ({type(error).__name__}: {error}). The folder is complete; "
            f"retry with: cmbert push {folder} --repo-id {repo_id}{' --private' if private else ''}"
        ) from error


__all__ = ["PushError", "push_folder"]
