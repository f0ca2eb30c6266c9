import os

import pytest

from hub_server import HubServer, hub_env as _hub_env


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
