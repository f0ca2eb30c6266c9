"""The loopback Hub (tests/hub_server.py) driven by the real huggingface_hub, transformers and datasets clients.

huggingface_hub runs in-process (the ``hub_env`` fixture redirects it); transformers and datasets run in fresh
subprocesses, each with an empty ``HF_HOME``, so every load must go through the server.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from torch.testing import assert_close

from hub_server import hub_env as make_env


# The leading newline keeps the result on its own line even after an unterminated prompt (trust_remote_code's).
# `digests(model)`: the sha256 of each weight's bytes, to compare weights bit for bit across processes.
EMIT = """import hashlib, json
def emit(obj):
    print('\\n' + json.dumps(obj))
def digests(model):
    return {k: hashlib.sha256(v.detach().contiguous().numpy().tobytes()).hexdigest()
            for k, v in model.state_dict().items()}
"""


def run_client(env, code):
    """Run ``code`` in a fresh interpreter and return what it ``emit``-ted. stdin is closed so that
    transformers' trust_remote_code prompt fails at once instead of waiting."""
    out = subprocess.run([sys.executable, "-c", EMIT + textwrap.dedent(code)], env=env, check=True, timeout=180,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.splitlines()[-1])


def fresh_env(server, tmp_path, name):
    home = tmp_path / name
    assert not home.exists()
    return make_env(server, home)


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    (src / "weights").mkdir(parents=True)
    (src / "notes.txt").write_text("hello hub\n")
    (src / "weights" / "model.safetensors").write_bytes(os.urandom(1 << 20))
    return src


def test_upload_then_download_same_bytes(hub_env, hub_server, folder, tmp_path):
    api = HfApi()
    assert api.create_repo("user/files").endswith("/user/files")
    assert api.create_repo("user/files", exist_ok=True).endswith("/user/files")  # 409 + url body
    oid = api.upload_folder(repo_id="user/files", folder_path=folder).oid
    lfs_sha = hashlib.sha256((folder / "weights/model.safetensors").read_bytes()).hexdigest()
    assert ("PUT", f"/lfs-upload/{lfs_sha}", 200) in hub_server.requests  # binary via LFS, text inline

    snapshot = Path(snapshot_download("user/files", revision=oid))
    for rel in ("notes.txt", "weights/model.safetensors"):
        assert (snapshot / rel).read_bytes() == (folder / rel).read_bytes()
    # the cache names blobs by ETag: git sha1 for regular files, sha256 (X-Linked-Etag) for LFS files
    notes = (folder / "notes.txt").read_bytes()
    assert (snapshot / "notes.txt").resolve().name == hashlib.sha1(b"blob %d\0" % len(notes) + notes).hexdigest()
    assert (snapshot / "weights/model.safetensors").resolve().name == lfs_sha
    single = hf_hub_download("user/files", "weights/model.safetensors", revision=oid, cache_dir=tmp_path / "other")
    assert Path(single).read_bytes() == (folder / "weights/model.safetensors").read_bytes()
    # both caches started empty, so the LFS file was fetched from the server twice
    assert hub_server.requests.count(("GET", f"/user/files/resolve/{oid}/weights/model.safetensors", 200)) == 2
    info = api.model_info("user/files", files_metadata=True)
    assert info.sha == oid and {s.rfilename for s in info.siblings} == {"notes.txt", "weights/model.safetensors"}


def test_commits_keep_old_revisions_and_delete(hub_env, folder):
    api = HfApi()
    api.create_repo("user/history")
    first = api.upload_folder(repo_id="user/history", folder_path=folder).oid
    second = api.upload_file(repo_id="user/history", path_or_fileobj=b"v2\n", path_in_repo="notes.txt").oid
    assert second != first and len(second) == 40
    assert Path(hf_hub_download("user/history", "notes.txt", revision=first)).read_text() == "hello hub\n"
    assert Path(hf_hub_download("user/history", "notes.txt")).read_text() == "v2\n"

    third = api.create_commit("user/history", [CommitOperationDelete("notes.txt")], commit_message="rm").oid
    assert api.list_repo_files("user/history") == ["weights/model.safetensors"]
    assert api.list_repo_files("user/history", revision=first) == ["notes.txt", "weights/model.safetensors"]
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("user/history", "notes.txt", revision=third)
    api.create_commit("user/history", [CommitOperationDelete("weights/")], commit_message="rm dir")
    assert api.list_repo_files("user/history") == []


def test_errors_reach_the_client(hub_env, hub_server):
    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("user/missing", "config.json")
    api.create_repo("user/errs")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("user/errs", "nope.txt")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("user/errs", revision="0" * 40)

    # An LFS upload whose bytes don't match the announced sha256 is refused and nothing is stored.
    op = CommitOperationAdd("w.safetensors", b"real bytes")
    wrong = hashlib.sha256(b"other bytes").digest()
    op.upload_info.sha256 = wrong
    with pytest.raises(RuntimeError) as err:
        api.preupload_lfs_files("user/errs", additions=[op])
    assert err.value.__cause__.response.status_code == 400
    assert not (hub_server.root / "blobs" / wrong.hex()).exists()


def test_transformers_push_and_load(hub_server, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]) + "\n")
    pushed = run_client(fresh_env(hub_server, tmp_path, "push"), f"""
        import torch
        from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
        torch.manual_seed(0)
        config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=37)
        model = BertForSequenceClassification(config).eval()
        # transformers 5 takes `vocab=` (a path or dict); a `vocab_file=` kwarg is silently ignored
        BertTokenizerFast(vocab={str(vocab)!r}).push_to_hub("user/tiny-bert")
        oid = model.push_to_hub("user/tiny-bert").oid
        logits = model(input_ids=torch.tensor([[2, 5, 6, 3]])).logits
        emit({{"oid": oid, "logits": logits.tolist(), "weights": digests(model)}})
    """)
    loaded = run_client(fresh_env(hub_server, tmp_path, "load"), f"""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        model = AutoModelForSequenceClassification.from_pretrained("user/tiny-bert", revision={pushed["oid"]!r})
        ids = AutoTokenizer.from_pretrained("user/tiny-bert", revision={pushed["oid"]!r})("hello world")["input_ids"]
        logits = model.eval()(input_ids=torch.tensor([ids])).logits
        emit({{"ids": ids, "logits": logits.tolist(), "weights": digests(model)}})
    """)
    assert loaded["ids"] == [2, 5, 6, 3]
    assert loaded["weights"] == pushed["weights"]  # every tensor bit for bit
    # Outputs only within float tolerance: the math kernels depend on memory alignment, which differs between the
    # pushing process's tensors and the reloaded (memory-mapped) ones.
    assert_close(torch.tensor(loaded["logits"]), torch.tensor(pushed["logits"]), atol=1e-6, rtol=0)


def test_datasets_push_and_load(hub_server, tmp_path):
    rows = {"text": ["a", "b", "c"], "label": [0, 1, 0]}
    run_client(fresh_env(hub_server, tmp_path, "push"), f"""
        import pathlib
        from datasets import Dataset
        from huggingface_hub import HfApi
        Dataset.from_dict({rows!r}).push_to_hub("user/ds", config_name="text")
        folder = pathlib.Path({str(tmp_path / "folder")!r})
        (folder / "data").mkdir(parents=True)
        Dataset.from_dict({{"x": [1, 2, 3]}}).to_parquet(str(folder / "data" / "nums.parquet"))
        card = "---\\nconfigs:\\n- config_name: nums\\n  data_files: data/nums.parquet\\n---\\n"
        (folder / "README.md").write_text(card)
        HfApi().create_repo("user/nums", repo_type="dataset")
        HfApi().upload_folder(repo_id="user/nums", repo_type="dataset", folder_path=folder)
        emit(None)
    """)
    loaded = run_client(fresh_env(hub_server, tmp_path, "load"), """
        from datasets import load_dataset
        emit([load_dataset("user/ds", "text", split="train").to_dict(),
              load_dataset("user/nums", "nums", split="train").to_dict()])
    """)
    assert loaded == [rows, {"x": [1, 2, 3]}]


CONFIGURATION_X = """
from transformers import PretrainedConfig

class XConfig(PretrainedConfig):
    model_type = "x-tiny"

    def __init__(self, width=4, **kwargs):
        self.width = width
        super().__init__(**kwargs)
"""

MODELING_X = """
import torch
from transformers import PreTrainedModel
from .configuration_x import XConfig

class XModel(PreTrainedModel):
    config_class = XConfig

    def __init__(self, config):
        super().__init__(config)
        self.proj = torch.nn.Linear(config.width, config.width)
        self.post_init()

    def forward(self, x):
        return self.proj(x)
"""


def test_trust_remote_code_round_trip(hub_server, tmp_path):
    package = tmp_path / "xpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "configuration_x.py").write_text(CONFIGURATION_X)
    (package / "modeling_x.py").write_text(MODELING_X)
    pushed = run_client(fresh_env(hub_server, tmp_path, "push"), f"""
        import sys, torch
        sys.path.insert(0, {str(tmp_path)!r})
        from xpkg.configuration_x import XConfig
        from xpkg.modeling_x import XModel
        XConfig.register_for_auto_class()
        XModel.register_for_auto_class("AutoModel")
        torch.manual_seed(0)
        model = XModel(XConfig()).eval()
        oid = model.push_to_hub("user/x-remote").oid
        emit({{"oid": oid, "out": model(torch.ones(1, 4)).tolist(), "weights": digests(model)}})
    """)
    loaded = run_client(fresh_env(hub_server, tmp_path, "load"), f"""
        import torch
        from transformers import AutoModel
        try:
            AutoModel.from_pretrained("user/x-remote", revision={pushed["oid"]!r})
            refused = ""
        except ValueError as err:
            refused = str(err)
        model = AutoModel.from_pretrained("user/x-remote", revision={pushed["oid"]!r}, trust_remote_code=True)
        out = model(torch.ones(1, 4)).tolist()
        emit({{"refused": refused, "cls": type(model).__name__, "out": out, "weights": digests(model)}})
    """)
    assert "trust_remote_code=True" in loaded["refused"]
    assert ("GET", f"/user/x-remote/resolve/{pushed['oid']}/modeling_x.py", 200) in hub_server.requests
    assert (loaded["cls"], loaded["weights"]) == ("XModel", pushed["weights"])
    assert_close(torch.tensor(loaded["out"]), torch.tensor(pushed["out"]), atol=1e-6, rtol=0)


def test_a_failed_first_push_deletes_the_repo_it_created(hub_env, hub_server, tmp_path):
    from cmbert_hf.hub import PushError, push_folder

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    api = HfApi()
    api.create_repo("user/kept")
    hub_server.refuse_commits = True
    for repo in ("user/new", "user/kept"):
        with pytest.raises(PushError, match=f"retry with: cmbert push {folder} --repo-id {repo}"):
            push_folder(folder, repo)
    assert ("DELETE", "/api/repos/delete", 200) in hub_server.requests
    assert not api.repo_exists("user/new")  # created by the failed push: gone again
    assert api.repo_exists("user/kept")  # there before: kept
    with pytest.raises(PushError, match="has no README.md"):
        push_folder(folder, "user/data", repo_type="dataset")  # no README.md: refused before any request
    (folder / "README.md").write_text("---\n---\n")
    with pytest.raises(PushError, match="retry with: cmbert push .* --repo-id user/data --repo-type dataset"):
        push_folder(folder, "user/data", repo_type="dataset")
    assert not api.repo_exists("user/data", repo_type="dataset")
    hub_server.refuse_commits = False
    assert push_folder(folder, "user/data", repo_type="dataset").oid == api.dataset_info("user/data").sha
