"""CMBertConfig and the CM-BERT models: shapes, loading, faithfulness to the original, audio reach."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from safetensors.torch import load_file, save_file
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModel, AutoModelForSequenceClassification, BertConfig, BertModel

from cmbert_hf import CMBertConfig, CMBertForSequenceClassification, CMBertModel
from helpers import TINY

# A tiny CM-BERT folder saved by the version before `text_config` (flat BertConfig fields, weights `bert.*`,
# `fusion.*`, `classifier.*`), with its inputs and the logits that version computed (expected.json).
FLAT_LAYOUT = Path(__file__).parent / "fixtures" / "cmbert_flat_bert_layout"


def tiny_config(**kwargs) -> CMBertConfig:
    return CMBertConfig(text_config=BertConfig(**TINY), **kwargs)


def original_config() -> CMBertConfig:
    return CMBertConfig.original(text_config=BertConfig(**TINY))


def make_batch(batch=4, length=9, seed=0, audio_width=5):
    """Padded batch in the original data's form: zero audio rows at [CLS] and padding."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 99, (batch, length), generator=g)
    lengths = torch.randint(3, length + 1, (batch,), generator=g)
    lengths[0] = length
    attention_mask = (torch.arange(length)[None] < lengths[:, None]).long()
    input_ids = input_ids * attention_mask
    audio = torch.randn(batch, length, audio_width, generator=g) * attention_mask[..., None]
    audio[:, 0] = 0
    return input_ids, attention_mask, audio


def model_for(config, seed=0):
    torch.manual_seed(seed)
    return CMBertForSequenceClassification(config).eval()


# --- config -----------------------------------------------------------------------------------


def test_config_defaults_are_batch_independent_and_regression():
    config = CMBertConfig()
    assert (config.audio_feature_size, config.fusion_dim, config.fusion_attention_dropout) == (5, 30, 0.3)
    assert (config.fusion_hidden_dropout, config.fusion_layer_norm_eps, config.head_dropout) == (0.1, 1e-12, 0.1)
    assert (config.text_scaling, config.audio_scaling, config.cls_audio) == ("sample", "sample", "mean")
    assert config.num_labels == 1 and config.model_type == "cmbert"
    assert config.text_config.model_type == "bert" and config.hidden_size == 768  # bert-base-uncased
    original = original_config()
    assert (original.text_scaling, original.audio_scaling, original.cls_audio) == ("batch", "none", "input")
    assert original.hidden_size == 32


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("text_scaling", "global", "'text_scaling' expected one of ('batch', 'sample', 'none'), got global"),
        ("audio_scaling", None, "'audio_scaling' expected one of"),
        ("cls_audio", "zero", "'cls_audio' expected one of ('input', 'mean'), got zero"),
        ("fusion_dim", 0, "'fusion_dim':\n    ValueError: must be a positive integer, got 0"),
        ("audio_feature_size", 2.5, "Field 'audio_feature_size' expected int, got float"),
        ("fusion_attention_dropout", 1.0, "must be a dropout probability in [0, 1), got 1.0"),
        ("fusion_layer_norm_eps", 0.0, "'fusion_layer_norm_eps':\n    ValueError: must be a positive number"),
    ],
)
def test_config_rejects_bad_values_at_init_and_on_assignment(field, value, message):
    with pytest.raises(StrictDataclassError) as error:
        CMBertConfig(**{field: value})
    assert message in str(error.value)
    # `from_pretrained(..., key=value)` assigns after init: the same check applies.
    config = tiny_config()
    with pytest.raises(StrictDataclassError) as error:
        setattr(config, field, value)
    assert message in str(error.value)


def test_config_nested_round_trip_and_flat_layout(tmp_path):
    config = CMBertConfig(text_config=BertConfig(**TINY), audio_feature_size=74, num_labels=7, fusion_dim=12)
    assert config.hidden_size == 32 and config.audio_feature_size == 74 and config.num_labels == 7
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["text_config"]["model_type"] == "bert" and "hidden_size" not in saved
    again = CMBertConfig.from_pretrained(tmp_path)
    assert again.to_dict() == config.to_dict()
    # The flat layout: BERT fields beside the fusion settings become `text_config`, fusion numbers taken from them.
    flat = CMBertConfig(**TINY, hidden_dropout_prob=0.2, layer_norm_eps=1e-5, fusion_dim=12)
    assert flat.text_config.to_dict() == BertConfig(**TINY, hidden_dropout_prob=0.2, layer_norm_eps=1e-5).to_dict()
    assert (flat.fusion_hidden_dropout, flat.head_dropout, flat.fusion_layer_norm_eps) == (0.2, 0.2, 1e-5)
    # Beside a `text_config` they are not the encoder's: the Trainer writes `use_cache` into every saved config.
    nested = CMBertConfig(text_config=BertConfig(**TINY), use_cache=False)
    assert nested.text_config.to_dict() == BertConfig(**TINY).to_dict()


# --- outputs ----------------------------------------------------------------------------------


def test_outputs_shapes_and_loss_only_with_labels():
    model = model_for(tiny_config())
    input_ids, attention_mask, audio = make_batch()
    out = model(input_ids, attention_mask, audio_features=audio, output_attentions=True)
    assert out.loss is None and out.logits.shape == (4, 1)
    assert out.text_attention.shape == out.multimodal_attention.shape == (4, 9, 9)
    # Each attention row is a distribution over the real tokens only.
    torch.testing.assert_close(out.multimodal_attention.sum(-1), torch.ones(4, 9))
    assert (out.multimodal_attention * (1 - attention_mask[:, None, :])).max() < 1e-6
    labels = torch.tensor([0.5, -1.0, 2.0, 0.0])
    out = model(input_ids, attention_mask, audio_features=audio, labels=labels)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits.view(-1), labels))
    assert model(input_ids, attention_mask, audio_features=audio).text_attention is None

    body = CMBertModel(tiny_config()).eval()
    hidden = body(input_ids, attention_mask, audio_features=audio)
    assert hidden.last_hidden_state.shape == (4, 9, 32)
    torch.testing.assert_close(hidden.pooler_output, hidden.last_hidden_state[:, 0])


@pytest.mark.parametrize("config", [tiny_config(), original_config()], ids=["default", "original"])
def test_cls_only_fusion_equals_the_full_sequence_row_0(config):
    model = model_for(config)
    input_ids, attention_mask, audio = make_batch()
    full = model(input_ids, attention_mask, audio_features=audio, output_attentions=True)  # every row fused
    fast = model(input_ids, attention_mask, audio_features=audio)  # [CLS] row only
    torch.testing.assert_close(fast.logits, full.logits, rtol=0, atol=1e-6)


def test_classification_head_uses_cross_entropy():
    model = model_for(tiny_config(num_labels=7))
    input_ids, attention_mask, audio = make_batch()
    labels = torch.tensor([0, 3, 6, 2])
    out = model(input_ids, attention_mask, audio_features=audio, labels=labels)
    assert out.logits.shape == (4, 7)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))


def test_missing_audio_is_the_text_only_model():
    model = model_for(tiny_config())
    input_ids, attention_mask, audio = make_batch()
    without = model(input_ids, attention_mask).logits
    zeros = model(input_ids, attention_mask, audio_features=torch.zeros_like(audio)).logits
    torch.testing.assert_close(without, zeros, rtol=0, atol=0)


def test_audio_shape_mismatch_is_a_clear_error():
    model = model_for(tiny_config())
    input_ids, attention_mask, audio = make_batch()
    with pytest.raises(ValueError, match=r"`audio_features` must have shape \(batch, seq_len, 5\)"):
        model(input_ids, attention_mask, audio_features=audio[:, :5])


class _FailOnHostSync(TorchDispatchMode):
    """`.item()`, `bool(tensor)` and data-dependent shapes all go through these ops."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default):
            raise AssertionError(f"host-device synchronisation in forward: {func}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("config", [tiny_config(), original_config()], ids=["default", "original"])
def test_forward_and_backward_have_no_host_sync(config):
    model = model_for(config).train()
    input_ids, attention_mask, audio = make_batch()
    with _FailOnHostSync():
        out = model(input_ids, attention_mask, audio_features=audio, labels=torch.zeros(4))
        out.loss.backward()


def test_sdpa_is_default_and_eager_is_honoured_inside(tmp_path):
    BertModel(BertConfig(**TINY)).save_pretrained(tmp_path)
    sdpa = CMBertForSequenceClassification.from_pretrained(tmp_path).eval()
    eager = CMBertForSequenceClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    for model, name in ((sdpa, "sdpa"), (eager, "eager")):
        assert model.config._attn_implementation == name
        assert model.bert.encoder.layer[0].attention.self.config._attn_implementation == name
    eager.load_state_dict(sdpa.state_dict())
    input_ids, attention_mask, audio = make_batch()
    torch.testing.assert_close(
        sdpa(input_ids, attention_mask, audio_features=audio).logits,
        eager(input_ids, attention_mask, audio_features=audio).logits,
        rtol=1e-4,
        atol=1e-5,
    )


# --- loading BERT checkpoints -----------------------------------------------------------------

FUSION_AND_HEAD = {
    "fusion.attention.text_proj.weight",
    "fusion.attention.audio_proj.weight",
    "fusion.attention.w_t",
    "fusion.attention.w_a",
    "fusion.attention.b",
    "fusion.dense.weight",
    "fusion.dense.bias",
    "fusion.LayerNorm.weight",
    "fusion.LayerNorm.bias",
    "classifier.weight",
    "classifier.bias",
}


def _assert_bert_weights_loaded(bert: BertModel, model, info):
    assert info["missing_keys"] == FUSION_AND_HEAD
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    expected = {k: v for k, v in bert.state_dict().items() if not k.startswith("pooler.")}
    loaded = model.bert.state_dict()
    assert expected.keys() == loaded.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_loads_a_plain_bert_checkpoint(tmp_path):
    torch.manual_seed(0)
    bert = BertModel(BertConfig(**TINY))
    bert.save_pretrained(tmp_path)
    model, info = CMBertForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    _assert_bert_weights_loaded(bert, model, info)
    assert model.config.num_labels == 1
    attention = model.fusion.attention
    assert attention.w_t.item() == 1.0 and attention.w_a.item() == 1.0 and attention.b.item() == 0.0
    assert float(model.classifier.bias.detach().abs().max()) == 0.0


def test_loads_the_offline_minilm_checkpoint(minilm_path):
    path = minilm_path
    bert = BertModel.from_pretrained(path)
    model, info = CMBertForSequenceClassification.from_pretrained(path, output_loading_info=True)
    _assert_bert_weights_loaded(bert, model, info)
    assert model.config.hidden_size == 384


def test_folder_of_the_flat_bert_layout_loads_with_the_same_weights_and_outputs():
    model, info = CMBertForSequenceClassification.from_pretrained(FLAT_LAYOUT, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    saved = load_file(FLAT_LAYOUT / "model.safetensors")
    state = model.state_dict()
    assert state.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
    config = model.config
    assert (config.text_config.model_type, config.hidden_size, config.fusion_dim) == ("bert", 16, 6)
    # The fusion layer keeps the numbers it took from the flat BERT fields.
    assert (config.fusion_hidden_dropout, config.head_dropout, config.fusion_layer_norm_eps) == (0.15, 0.15, 1e-7)
    expected = json.loads((FLAT_LAYOUT / "expected.json").read_text())
    with torch.no_grad():
        logits = model(
            torch.tensor(expected["input_ids"]),
            torch.tensor(expected["attention_mask"]),
            audio_features=torch.tensor(expected["audio_features"]),
        ).logits
    torch.testing.assert_close(logits, torch.tensor(expected["logits"]), rtol=0, atol=1e-6)


def test_saved_model_without_its_fusion_weights_is_an_error(tmp_path):
    shutil.copytree(FLAT_LAYOUT, tmp_path, dirs_exist_ok=True)
    weights = load_file(tmp_path / "model.safetensors")
    body_only = {k: v for k, v in weights.items() if not k.startswith(("fusion.", "classifier."))}
    save_file(body_only, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"is a saved CM-BERT model but lacks the weights \['classifier.bias'"):
        CMBertForSequenceClassification.from_pretrained(tmp_path)


def test_text_config_disagreeing_with_the_saved_fusion_layer_is_an_error(tmp_path):
    model_for(tiny_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["text_config"].update(hidden_size=16, num_attention_heads=2)
    (tmp_path / "config.json").write_text(json.dumps(config))
    message = r"saved weight fusion\.[\w.]+ has shape \(32,.*asks for \(16,.*`text_config.hidden_size` \(16\)"
    with pytest.raises(ValueError, match=message):
        CMBertForSequenceClassification.from_pretrained(tmp_path)


# --- remote code ------------------------------------------------------------------------------

REMOTE_LOAD = textwrap.dedent(
    """
    import sys
    sys.modules["cmbert_hf"] = None  # the package must not be importable: only the folder's code may run
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
    folder, inputs_path, out_path = sys.argv[1:4]
    inputs = torch.load(inputs_path)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    assert type(config).__module__.startswith("transformers_modules"), type(config).__module__
    head = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    body = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        torch.save({"state": head.state_dict(), "logits": head(**inputs).logits,
                    "hidden": body(**inputs).last_hidden_state}, out_path)
    """
)


def test_saved_folder_loads_as_remote_code_in_a_fresh_process(tmp_path):
    model = model_for(tiny_config())
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "configuration_cmbert.CMBertConfig",
        "AutoModel": "modeling_cmbert.CMBertModel",
        "AutoModelForSequenceClassification": "modeling_cmbert.CMBertForSequenceClassification",
    }
    assert {"configuration_cmbert.py", "modeling_cmbert.py"} <= {p.name for p in folder.iterdir()}

    input_ids, attention_mask, audio = make_batch()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "audio_features": audio}
    torch.save(inputs, tmp_path / "inputs.pt")
    subprocess.run(
        [sys.executable, "-c", REMOTE_LOAD, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        check=True,
        cwd=tmp_path,
        timeout=300,
    )
    remote = torch.load(tmp_path / "out.pt")
    # Weights are the same bits; float results may differ in the last place between processes.
    assert remote["state"].keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(remote["state"][key], value), key
    with torch.no_grad():
        torch.testing.assert_close(remote["logits"], model(**inputs).logits, rtol=0, atol=1e-6)
        body = CMBertModel(model.config).eval()
        body.load_state_dict(model.state_dict(), strict=False)
        torch.testing.assert_close(remote["hidden"], body(**inputs).last_hidden_state, rtol=0, atol=1e-6)


def test_auto_classes_work_in_process(tmp_path):
    model = model_for(tiny_config())
    model.save_pretrained(tmp_path)
    assert type(AutoModelForSequenceClassification.from_pretrained(tmp_path)) is CMBertForSequenceClassification
    assert type(AutoModel.from_pretrained(tmp_path)) is CMBertModel


# --- faithfulness to the original ---------------------------------------------------------------


def original_forward(model: CMBertForSequenceClassification, input_ids, attention_mask, audio):
    """The spec's original forward pass, written with plain torch ops (dropout off)."""
    fusion, attention = model.fusion, model.fusion.attention
    x_t = model.bert(input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, H]
    # Kernel-1 Conv1d projections over [B, C, L], as the original code does.
    t = F.conv1d(x_t.transpose(1, 2), attention.text_proj.weight[:, :, None]).transpose(1, 2)
    a = F.conv1d(audio.transpose(1, 2), attention.audio_proj.weight[:, :, None]).transpose(1, 2)
    t = t / torch.sqrt(torch.norm(t.detach()))  # whole-batch Frobenius norm; audio left unscaled
    alpha = F.relu(t @ t.transpose(1, 2))
    beta = F.relu(a @ a.transpose(1, 2))
    w_f = attention.w_t * alpha + attention.w_a * beta + attention.b
    m = (1.0 - attention_mask.float()) * -10000.0
    w_m = F.softmax(w_f + m[:, None, :] + m[:, :, None], dim=-1)
    z = w_m @ x_t + x_t
    y = F.layer_norm(fusion.dense(z), (z.shape[-1],), fusion.LayerNorm.weight, fusion.LayerNorm.bias, 1e-12)
    return model.classifier(y[:, 0]), y


def test_original_setting_matches_an_independent_implementation():
    model = model_for(original_config())
    input_ids, attention_mask, audio = make_batch(batch=5, length=11)
    expected_logits, expected_y = original_forward(model, input_ids, attention_mask, audio)
    out = model(input_ids, attention_mask, audio_features=audio)
    torch.testing.assert_close(out.logits, expected_logits, rtol=0, atol=1e-5)
    body = CMBertModel(model.config).eval()
    body.load_state_dict(model.state_dict(), strict=False)
    fused = body(input_ids, attention_mask, audio_features=audio).last_hidden_state
    real = attention_mask.bool()
    torch.testing.assert_close(fused[real], expected_y[real], rtol=0, atol=1e-5)


def test_default_prediction_does_not_depend_on_the_rest_of_the_batch():
    model = model_for(tiny_config())
    input_ids, attention_mask, audio = make_batch(batch=4, length=9, seed=1)
    others_ids, others_mask, others_audio = make_batch(batch=4, length=12, seed=2)
    alone = model(input_ids[:1], attention_mask[:1], audio_features=audio[:1]).logits
    # Same sample among other samples, with more padding after it.
    ids = torch.cat([F.pad(input_ids[:1], (0, 3)), others_ids[1:]])
    mask = torch.cat([F.pad(attention_mask[:1], (0, 3)), others_mask[1:]])
    aud = torch.cat([F.pad(audio[:1], (0, 0, 0, 3)), others_audio[1:]])
    torch.testing.assert_close(model(ids, mask, audio_features=aud).logits[:1], alone, rtol=0, atol=1e-5)

    # The original's whole-batch norm makes the same comparison fail: the documented reason for the default.
    original = model_for(original_config())
    alone = original(input_ids[:1], attention_mask[:1], audio_features=audio[:1]).logits
    assert not torch.allclose(original(ids, mask, audio_features=aud).logits[:1], alone, atol=1e-5)


# --- the audio must reach the prediction --------------------------------------------------------


def _fusion_and_head_grads(model, input_ids, attention_mask, audio):
    model.zero_grad()
    model(input_ids, attention_mask, audio_features=audio, labels=torch.ones(len(input_ids))).loss.backward()
    named = dict(model.named_parameters())
    return {name: named[name].grad for name in FUSION_AND_HEAD}


def test_original_setting_is_audio_blind():
    model = model_for(original_config())
    input_ids, attention_mask, audio = make_batch()
    with_audio = model(input_ids, attention_mask, audio_features=audio).logits
    other_audio = model(input_ids, attention_mask, audio_features=audio * 5 + 1 * (audio != 0)).logits
    without = model(input_ids, attention_mask).logits
    assert torch.equal(with_audio, other_audio) and torch.equal(with_audio, without)
    grads = _fusion_and_head_grads(model, input_ids, attention_mask, audio)
    assert torch.count_nonzero(grads["fusion.attention.audio_proj.weight"]) == 0
    assert torch.count_nonzero(grads["fusion.attention.w_a"]) == 0


def test_default_lets_audio_reach_the_prediction():
    model = model_for(tiny_config())
    input_ids, attention_mask, audio = make_batch()
    assert float(audio[:, 0].abs().max()) == 0.0  # [CLS] rows are zero, as in every data file
    with_audio = model(input_ids, attention_mask, audio_features=audio).logits
    other_audio = model(input_ids, attention_mask, audio_features=audio.flip(1) * attention_mask[..., None]).logits
    assert (with_audio - other_audio).abs().min() > 1e-6
    grads = _fusion_and_head_grads(model.train(), input_ids, attention_mask, audio)
    for name, grad in grads.items():
        assert grad is not None and torch.count_nonzero(grad) > 0, name


def test_cls_audio_is_the_mean_of_the_word_pieces():
    from cmbert_hf.modeling_cmbert import _with_utterance_audio_at_cls

    lengths = [7, 3, 5]  # real tokens: [CLS], 5 / 1 / 3 word-pieces, [SEP]
    audio = torch.randn(3, 7, 5)
    attention_mask = torch.zeros(3, 7, dtype=torch.long)
    expected = []
    for row, n in enumerate(lengths):
        attention_mask[row, :n] = 1
        expected.append(audio[row, 1 : n - 1].mean(0))
    out = _with_utterance_audio_at_cls(audio, attention_mask)
    torch.testing.assert_close(out[:, 0], torch.stack(expected))
    assert torch.equal(out[:, 1:], audio[:, 1:])
