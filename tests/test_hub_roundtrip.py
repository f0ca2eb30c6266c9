"""Round trips through the real clients and the loopback Hub (tests/hub_server.py): train.py's push, loading the
pushed repo with transformers' Auto classes and remote code only, a second revision, a failed push and its retry,
and the dataset export pushed and loaded back with `datasets`.

One server serves the whole module (``hub_server`` is overridden with module scope): the first push is made once
by the ``first_push`` fixture and every check pins the commit it is about, so later commits change nothing for it.
transformers and datasets run in fresh subprocesses with an empty ``HF_HOME``; huggingface_hub runs in-process
through the ``hub_env`` fixture of conftest.py.
"""

import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
from huggingface_hub import HfApi, ModelCard, hf_hub_download, metadata_load
from torch.testing import assert_close

from cmbert_hf import CMBertForSequenceClassification, CMBertModel, CMBertProcessor
from dataset_script import load_mosi
from hub_server import HubServer
from hub_server import hub_env as make_env
from helpers import MOSI_TEXT

ROOT = Path(__file__).resolve().parents[1]
REPO = "user/cm-bert-demo"
DATASET_REPO = "user/cmu-mosi"
CODE_FILES = ("configuration_cmbert.py", "modeling_cmbert.py", "processing_cmbert.py", "feature_extraction_cmbert.py")
# results.json test metric -> the model card's model-index metric name
CARD_METRICS = {"test_mae": "MAE", "test_corr": "Corr", "test_acc7": "Acc7", "test_acc2_has0": "Acc2 (has0)",
                "test_acc2_non0": "Acc2 (non0)", "test_f1_non0": "F1 (non0)"}
# Inputs both sides feed through their processor: three utterances of different lengths, one acoustic row per word.
TEXTS = ["I really liked this movie", "it was boring", "the plot was not good but the acting was great"]
AUDIO = [[[round(0.37 * w - 0.11 * d + 0.05 * i, 3) for d in range(5)] for w in range(len(t.split()))]
         for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def hub_server():
    """One loopback Hub for the module (overrides conftest's per-test server; conftest's ``hub_env`` uses it)."""
    with HubServer() as server:
        yield server


def client_env(url_or_server, home):
    """A subprocess env (conftest's recipe) with a fresh, not yet existing HF_HOME."""
    home = Path(home)
    assert not home.exists(), home
    if isinstance(url_or_server, str):  # a bare endpoint, e.g. a port nobody listens on
        url_or_server = SimpleNamespace(url=url_or_server)
    env = make_env(url_or_server, home)
    assert "HF_HUB_OFFLINE" not in env and env["HF_ENDPOINT"] == url_or_server.url
    return env


def run(command, env, timeout, expect=0):
    """Runs a subprocess (stdin closed, so transformers' trust_remote_code prompt fails at once)."""
    done = subprocess.run(command, env=env, cwd=ROOT, timeout=timeout, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def train_command(tiny_args, tiny_checkpoint, dataset_cache, output_dir, *extra):
    return [sys.executable, str(ROOT / "train.py"), *tiny_args(tiny_checkpoint, dataset_cache, output_dir, *extra),
            "--push_to_hub", "--hub_model_id", REPO]


def hub_files(folder):
    """What a push of a run folder must upload: every file (a finished run has deleted its checkpoints) but the
    local records of how to rerun it, which hold this machine's paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name not in ("run_args.json", "training_args.bin"))


def local_outputs(folder):
    """Processor inputs, logits and fused hidden states of a run folder, loaded with this package's code."""
    processor = CMBertProcessor.from_pretrained(folder)
    inputs = processor(text=TEXTS, audio_features=AUDIO, padding=True, return_tensors="pt")
    model = CMBertForSequenceClassification.from_pretrained(folder).eval()
    base = CMBertModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return {"inputs": dict(inputs), "logits": model(**inputs).logits, "hidden": base(**inputs).last_hidden_state,
                "weights": model.state_dict()}


LOAD_FROM_HUB = """
import sys
sys.modules["cmbert_hf"] = None  # this package cannot be imported: every class must come from the repo's code
import json, os, torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoProcessor

repo, revisions, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
texts, audio = json.loads(sys.argv[4])
assert not os.path.exists(os.environ["HF_HOME"]), "the cache must start empty"
try:
    import cmbert_hf
    raise SystemExit("cmbert_hf is importable")
except ImportError:
    pass

refused = {}
for auto in (AutoModelForSequenceClassification, AutoProcessor):
    try:
        auto.from_pretrained(repo, revision=revisions[0])
        refused[auto.__name__] = "loaded without trust_remote_code"
    except Exception as error:
        refused[auto.__name__] = f"{type(error).__name__}: {error}"

results = {"refused": refused}
for revision in revisions:
    kw = dict(revision=revision, trust_remote_code=True)
    config = AutoConfig.from_pretrained(repo, **kw)
    processor = AutoProcessor.from_pretrained(repo, **kw)
    model = AutoModelForSequenceClassification.from_pretrained(repo, **kw).eval()
    base = AutoModel.from_pretrained(repo, **kw).eval()
    inputs = processor(text=texts, audio_features=audio, padding=True, return_tensors="pt")
    with torch.no_grad():
        results[revision] = {
            "classes": [f"{type(x).__module__}.{type(x).__name__}" for x in (config, processor, model, base)],
            "inputs": dict(inputs),
            "logits": model(**inputs).logits,
            "hidden": base(**inputs).last_hidden_state,
            "weights": model.state_dict(),
        }
torch.save(results, out)
"""


def load_from_hub(env, revisions, out):
    """Loads REPO at each revision in a fresh interpreter (no cmbert_hf, empty cache); returns what it computed."""
    run([sys.executable, "-c", LOAD_FROM_HUB, REPO, ",".join(revisions), str(out), json.dumps([TEXTS, AUDIO])],
        env, timeout=240)
    return torch.load(out, weights_only=False)


def assert_same_outputs(remote, local):
    assert remote["inputs"].keys() == local["inputs"].keys() and "audio_features" in local["inputs"]
    for key, value in local["inputs"].items():
        assert torch.equal(remote["inputs"][key], value), key
    assert remote["weights"].keys() == local["weights"].keys()
    for key, value in local["weights"].items():  # weights bit for bit
        assert torch.equal(remote["weights"][key], value), key
    # Outputs within float tolerance only: the math kernels depend on memory alignment, which differs between
    # processes (safetensors memory-maps the weights).
    assert_close(remote["logits"], local["logits"], atol=1e-6, rtol=0)
    assert_close(remote["hidden"], local["hidden"], atol=1e-6, rtol=0)


def assert_loaded_from_repo_code(remote, hub_server, revision, methods=("GET",)):
    """The classes are the repo's code, fetched from the server at that revision (`methods`: a second revision
    with the same code files only needs HEAD: the client links the blobs it already holds)."""
    # transformers imports remote code as transformers_modules.<repo>.<commit>.<file>
    assert [c.rsplit(".", 1)[1] for c in remote["classes"]] == [
        "CMBertConfig", "CMBertProcessor", "CMBertForSequenceClassification", "CMBertModel"]
    assert all(c.startswith("transformers_modules.") for c in remote["classes"]), remote["classes"]
    for name in CODE_FILES:
        assert {(m, f"/{REPO}/resolve/{revision}/{name}", 200) for m in methods} & set(hub_server.requests), name


@pytest.fixture(scope="module")
def first_push(hub_server, tiny_checkpoint, dataset_cache, tiny_args, tmp_path_factory):
    """`train.py --push_to_hub --hub_model_id user/cm-bert-demo` in a subprocess: (output_dir, pushed commit)."""
    tmp = tmp_path_factory.mktemp("first-push")
    output_dir = tmp / "run"
    done = run(train_command(tiny_args, tiny_checkpoint, dataset_cache, output_dir, "--hub_private_repo", "true"),
               client_env(hub_server, tmp / "hf_home"), timeout=300)
    assert ("POST", f"/api/models/{REPO}/commit/main", 200) in hub_server.requests, done.stderr[-3000:]
    sha = HfApi(endpoint=hub_server.url, token="hf_loopback_dummy_token").model_info(REPO).sha
    return output_dir, sha


def test_train_push_uploads_the_whole_folder_with_a_parseable_card(first_push, hub_env, hub_server):
    output_dir, sha = first_push
    api = HfApi()
    assert api.model_info(REPO).private  # --hub_private_repo reached the repository's creation
    assert api.list_repo_files(REPO, revision=sha) == hub_files(output_dir)
    assert {"config.json", "model.safetensors", "results.json", "README.md", *CODE_FILES} <= set(hub_files(output_dir))
    weights = {s.rfilename: s for s in api.model_info(REPO, revision=sha, files_metadata=True).siblings}
    local_sha = hashlib.sha256((output_dir / "model.safetensors").read_bytes()).hexdigest()
    assert weights["model.safetensors"].lfs.sha256 == local_sha

    card_path = hf_hub_download(REPO, "README.md", revision=sha)
    assert Path(card_path).read_bytes() == (output_dir / "README.md").read_bytes()
    card, metadata = ModelCard.load(card_path), metadata_load(card_path)
    assert card.data.library_name == "transformers" and "custom_code" in card.data.tags
    assert f'repo = "{REPO}"' in card.text and "trust_remote_code=True" in card.text
    (index,) = metadata["model-index"]
    assert index["name"] == REPO
    (result,) = index["results"]
    assert result["dataset"]["split"] == "test" and result["dataset"]["config"] == "synthetic"
    reported = {m["name"]: m["value"] for m in result["metrics"]}
    test = json.loads((output_dir / "results.json").read_text())["test"]
    assert reported == {name: test[key] for key, name in CARD_METRICS.items()}  # exact: YAML and JSON keep floats
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == reported


def test_pushed_repo_loads_with_remote_code_only(first_push, hub_server, tmp_path):
    output_dir, sha = first_push
    remote = load_from_hub(client_env(hub_server, tmp_path / "client_load"), [sha], tmp_path / "remote.pt")

    for auto, message in remote["refused"].items():  # transformers' own custom-code refusal, not a crash
        assert message.startswith("ValueError:") and "contains custom code" in message, (auto, message)
        assert "trust_remote_code=True" in message, (auto, message)
    assert_loaded_from_repo_code(remote[sha], hub_server, sha)
    assert_same_outputs(remote[sha], local_outputs(output_dir))


def test_failed_push_then_cmbert_push_makes_a_second_revision(
    first_push, hub_server, hub_env, tiny_checkpoint, dataset_cache, tiny_args, tmp_path
):
    first_dir, first_sha = first_push
    with socket.socket() as sock:  # a port nobody listens on: the Hub is down for the whole run
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    output_dir = tmp_path / "retrained"
    failed = run(train_command(tiny_args, tiny_checkpoint, dataset_cache, output_dir, "--seed", "2222"),
                 client_env(dead, tmp_path / "client_dead"), timeout=300, expect=1)
    assert f"retry with: cmbert push {output_dir} --repo-id {REPO}" in failed.stderr
    assert "Traceback" not in failed.stderr  # a message, not a crash
    files = set(hub_files(output_dir))
    assert {"config.json", "model.safetensors", "results.json", "README.md", "processor_config.json",
            "tokenizer.json", *CODE_FILES} <= files
    assert json.loads((output_dir / "results.json").read_text())["global_step"] == 8

    cmbert = shutil.which("cmbert", path=str(Path(sys.executable).parent))
    assert cmbert, "the cmbert console script is not installed next to this interpreter"
    pushed = run([cmbert, "push", str(output_dir), "--repo-id", REPO], client_env(hub_server, tmp_path / "client_push"),
                 timeout=120)
    second_sha = re.fullmatch(rf"pushed {re.escape(str(output_dir))} to {REPO} at revision ([0-9a-f]{{40}})\n",
                              pushed.stdout)[1]
    api = HfApi()
    assert second_sha != first_sha and api.model_info(REPO).sha == second_sha
    assert api.list_repo_files(REPO, revision=second_sha) == sorted(files)
    assert api.list_repo_files(REPO, revision=first_sha) == hub_files(first_dir)

    remote = load_from_hub(client_env(hub_server, tmp_path / "client_load"), [first_sha, second_sha],
                           tmp_path / "remote.pt")
    old, new = local_outputs(first_dir), local_outputs(output_dir)
    assert not torch.equal(old["logits"], new["logits"])  # the retrained model really differs
    assert_same_outputs(remote[first_sha], old)  # the first revision still gives the old outputs
    assert_same_outputs(remote[second_sha], new)
    assert_loaded_from_repo_code(remote[second_sha], hub_server, second_sha, methods=("GET", "HEAD"))


def test_dataset_export_pushes_and_loads_back_row_for_row(hub_server, hub_env, tmp_path):
    assert MOSI_TEXT.is_dir(), f"the MOSI transcripts are missing at {MOSI_TEXT}"
    cache = tmp_path / "build-cache"
    cli = run([sys.executable, "-m", "dataset_script", "export", "--config", "text", "--config", "synthetic",
               "--data-dir", str(MOSI_TEXT), "--out", str(tmp_path / "export"), "--cache-dir", str(cache),
               "--push-to-hub", DATASET_REPO], client_env(hub_server, tmp_path / "client_push"), timeout=240)
    sha = HfApi().dataset_info(DATASET_REPO).sha
    assert cli.stdout.endswith(f"{hub_server.url}/datasets/{DATASET_REPO}/commit/{sha}\n")
    exported = sorted(p.relative_to(tmp_path / "export").as_posix() for p in (tmp_path / "export").rglob("*")
                      if p.is_file())
    assert HfApi().list_repo_files(DATASET_REPO, repo_type="dataset") == exported

    loaded = tmp_path / "loaded"
    run([sys.executable, "-c", textwrap.dedent("""
        import os, sys
        from datasets import load_dataset
        assert not os.path.exists(os.environ["HF_HOME"]), "the cache must start empty"
        for config in ("text", "synthetic"):
            load_dataset(sys.argv[1], config).save_to_disk(os.path.join(sys.argv[2], config))
        """), DATASET_REPO, str(loaded)], client_env(hub_server, tmp_path / "client_load"), timeout=240)
    assert ("GET", f"/datasets/{DATASET_REPO}/resolve/{sha}/text/train-00000-of-00001.parquet", 200) \
        in hub_server.requests

    for config, data_dir in (("text", MOSI_TEXT), ("synthetic", None)):
        local = load_mosi(config, data_dir=data_dir, cache_dir=cache)
        remote = datasets.load_from_disk(str(loaded / config))
        assert list(remote) == list(local) == ["train", "validation", "test"]
        if config == "text":
            assert [len(local[split]) for split in local] == [1284, 229, 686]
        for split in local:
            assert len(local[split]) > 0 and remote[split].features == local[split].features, (config, split)
            assert remote[split].column_names == local[split].column_names
            for column in local[split].column_names:  # Arrow equality: every row, floats bit for bit
                assert remote[split].data.table.column(column).equals(local[split].data.table.column(column)), \
                    (config, split, column)


def test_dataset_export_with_the_hub_down_says_how_to_retry(hub_server, hub_env, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    out, repo = tmp_path / "export", "user/mosi-retry"
    failed = run([sys.executable, "-m", "dataset_script", "export", "--config", "synthetic", "--out", str(out),
                  "--cache-dir", str(tmp_path / "cache"), "--push-to-hub", repo],
                 client_env(dead, tmp_path / "client_dead"), timeout=240, expect=1)
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("dataset_script export: error: Pushing") and "Traceback" not in failed.stderr
    assert last.endswith(f"retry with: cmbert push {out} --repo-id {repo} --repo-type dataset")
    cmbert = shutil.which("cmbert", path=str(Path(sys.executable).parent))
    run([cmbert, "push", str(out), "--repo-id", repo, "--repo-type", "dataset"],
        client_env(hub_server, tmp_path / "client_push"), timeout=120)  # the printed retry works
    exported = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert HfApi().list_repo_files(repo, repo_type="dataset") == exported
