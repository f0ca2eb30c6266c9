"""CM-BERT over each encoder family: tiny random encoders, tokenizers trained here (WordPiece, byte-level BPE,
Unigram), forward and backward, audio reach, word-piece alignment, loading encoder checkpoints, remote code."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer, Tokenizer, models, pre_tokenizers
from tokenizers import normalizers as norms
from tokenizers import processors
from tokenizers.trainers import WordPieceTrainer
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    BertConfig,
    BertTokenizer,
    DebertaV2Config,
    DebertaV2Tokenizer,
    ElectraConfig,
    ModernBertConfig,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaTokenizer,
    XLMRobertaConfig,
    XLMRobertaTokenizer,
)

from transformers.modeling_outputs import BaseModelOutputWithPooling

from cmbert_hf import CMBertConfig, CMBertFeatureExtractor, CMBertForSequenceClassification, CMBertProcessor
from cmbert_hf import recipe
from cmbert_hf.modeling_cmbert import FOUR_D_MASK_TYPES, _encoder_mask


CORPUS = [
    "i absolutely loved this movie and the acting was wonderful",
    "the plot was terrible and i would not recommend it to anyone",
    "it was okay i guess some parts were funny but mostly boring",
    "what an unbelievably good performance by the whole cast",
    "honestly the soundtrack carried the entire film for me",
    "i did not expect to enjoy it this much but i really did",
] * 4
WORDS = "honestly unbelievably wonderful soundtrack recommend zebra".split()  # pieces split, one unknown word
FAMILIES = ("bert", "roberta", "deberta-v2", "xlm-roberta", "modernbert", "electra")
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def _unigram(special):
    trained = SentencePieceUnigramTokenizer()
    unk = "<unk>" if "<unk>" in special else "[UNK]"
    trained.train_from_iterator(CORPUS, vocab_size=150, special_tokens=special, unk_token=unk)
    return [tuple(piece) for piece in json.loads(trained.to_str())["model"]["vocab"]]


def _byte_bpe(special):
    trained = ByteLevelBPETokenizer()
    trained.train_from_iterator(CORPUS, vocab_size=300, special_tokens=special, show_progress=False)
    return trained


def _tokenizer(family):
    if family in ("bert", "electra"):  # WordPiece
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        wordpiece.normalizer = norms.BertNormalizer(lowercase=True)
        wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = WordPieceTrainer(vocab_size=120, special_tokens=special, show_progress=False)
        wordpiece.train_from_iterator(CORPUS, trainer)
        return BertTokenizer(vocab=wordpiece.get_vocab())
    if family == "roberta":  # byte-level BPE
        trained = _byte_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        merges = [tuple(pair) for pair in json.loads(trained._tokenizer.to_str())["model"]["merges"]]
        return RobertaTokenizer(vocab=trained.get_vocab(), merges=merges, add_prefix_space=True)
    if family == "deberta-v2":  # sentencepiece Unigram
        return DebertaV2Tokenizer(vocab=_unigram(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    if family == "xlm-roberta":
        return XLMRobertaTokenizer(vocab=_unigram(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    # ModernBERT: byte-level BPE framed by [CLS] ... [SEP], without token types (as its released tokenizer)
    trained = _byte_bpe(["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"])._tokenizer
    trained.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 0), ("[SEP]", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=trained, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]",
        mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"],
    )  # fmt: skip


def _text_config(family, tokenizer) -> PreTrainedConfig:
    vocab = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if family == "bert":
        return BertConfig(**TINY, **vocab)
    if family == "roberta":
        return RobertaConfig(**TINY, **vocab, bos_token_id=0, eos_token_id=2)
    if family == "xlm-roberta":
        return XLMRobertaConfig(**TINY, **vocab)
    if family == "deberta-v2":  # DeBERTa-v3's layout: relative positions only, no token-type embeddings
        return DebertaV2Config(
            **TINY, **vocab, relative_attention=True, position_biased_input=False, pos_att_type=["p2c", "c2p"],
            position_buckets=8, norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0,
        )  # fmt: skip
    if family == "modernbert":
        return ModernBertConfig(**TINY, **vocab, global_attn_every_n_layers=2, local_attention=8)
    return ElectraConfig(**TINY, **vocab, embedding_size=16)


@pytest.fixture(scope="session")
def families():
    """family -> (tokenizer, text_config): built once, trained on a tiny corpus in a few hundred milliseconds."""
    built = {}
    for family in FAMILIES:
        tokenizer = _tokenizer(family)
        built[family] = tokenizer, _text_config(family, tokenizer)
    return built


AUDIO = CMBertConfig().audio_feature_size  # the models' default width, not the feature extractor's


def _batch(tokenizer, seed=0):
    rng = np.random.default_rng(seed)
    texts = ["i loved the soundtrack", "honestly an unbelievably wonderful film to recommend", "boring"]
    processor = CMBertProcessor(CMBertFeatureExtractor(), tokenizer, audio_feature_size=AUDIO)
    features = [rng.normal(size=(len(t.split()), AUDIO)).astype(np.float32) for t in texts]
    return processor(text=texts, audio_features=features, padding=True, return_tensors="pt")


def _model(text_config, seed=0, **fusion):
    torch.manual_seed(seed)
    return CMBertForSequenceClassification(CMBertConfig(text_config=text_config.to_dict(), **fusion)).eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_and_backward_reach_encoder_and_fusion(families, family):
    tokenizer, text_config = families[family]
    model = _model(text_config).train()
    batch = _batch(tokenizer)
    assert type(model.bert).__name__.lower().startswith(family.replace("-", "").replace("v2", ""))
    assert ("token_type_ids" in batch) == (family not in ("roberta", "xlm-roberta", "modernbert"))
    out = model(**batch, labels=torch.tensor([0.5, -1.0, 2.0]))
    assert out.logits.shape == (3, 1) and torch.isfinite(out.loss)
    out.loss.backward()
    for name in ("bert.embeddings.word_embeddings.weight", "fusion.attention.audio_proj.weight", "classifier.weight"):
        grad = dict(model.named_parameters())[name.replace("bert.embeddings.word_embeddings", _embedding_name(model))]
        assert grad.grad is not None and torch.count_nonzero(grad.grad) > 0, name


def _embedding_name(model):
    return next(n for n, m in model.named_modules() if m is model.bert.get_input_embeddings())


@pytest.mark.parametrize("family", FAMILIES)
def test_audio_reaches_the_prediction_by_default_and_not_in_the_original(families, family):
    tokenizer, text_config = families[family]
    batch = _batch(tokenizer)
    other = {**batch, "audio_features": batch["audio_features"].flip(1) * batch["attention_mask"][..., None]}
    default = _model(text_config)
    with torch.no_grad():
        assert (default(**batch).logits - default(**other).logits).abs().min() > 1e-6
    original = _model(text_config, **CMBertConfig.original_fusion())
    with torch.no_grad():
        assert torch.equal(original(**batch).logits, original(**other).logits)


def _independent_alignment(tokenizer, words, features):
    """Word of each token from the tokenizer's offsets: with pre-split words, offsets count within each word, so a
    piece starts the next word once the current one is used up."""
    encoding = tokenizer(words, is_split_into_words=True, return_offsets_mapping=True, return_special_tokens_mask=True)
    rows, word, used = [], -1, 0
    for special, (start, end) in zip(encoding["special_tokens_mask"], encoding["offset_mapping"]):
        if special:
            rows.append(np.zeros(features.shape[1], dtype=np.float32))
            continue
        if word < 0 or used >= len(words[word]):
            word, used = word + 1, 0
        assert used <= end <= len(words[word]), (words[word], start, end)
        used = end
        rows.append(features[word])
    assert word == len(words) - 1
    return np.stack(rows)


@pytest.mark.parametrize("family", FAMILIES)
def test_processor_aligns_audio_to_word_pieces(families, family):
    tokenizer, _ = families[family]
    features = np.arange(1, len(WORDS) + 1, dtype=np.float32)[:, None].repeat(AUDIO, axis=1)
    processor = CMBertProcessor(CMBertFeatureExtractor(), tokenizer, audio_feature_size=AUDIO)
    out = processor(text=" ".join(WORDS), audio_features=features)
    aligned = np.asarray(out["audio_features"])
    assert len(out["input_ids"]) > len(WORDS) + 2  # some words are split into several pieces
    np.testing.assert_array_equal(aligned, _independent_alignment(tokenizer, WORDS, features))
    # Both ends are the family's markers (what `cls_audio="mean"` leaves out of the mean).
    ids = out["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id


def test_processor_rejects_a_tokenizer_without_word_ids(families):
    tokenizer, _ = families["bert"]
    slow = type("SlowTokenizer", (), {"is_fast": False, "__repr__": lambda self: "SlowTokenizer()"})()
    with pytest.raises(ValueError, match="needs a fast tokenizer"):
        CMBertProcessor(CMBertFeatureExtractor(), slow)


@pytest.mark.parametrize("family", sorted(FOUR_D_MASK_TYPES))
def test_ready_4d_mask_gives_the_encoders_own_result(families, family):
    tokenizer, text_config = families[family]
    batch = _batch(tokenizer)
    encoder = _model(text_config).bert
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "token_type_ids")}
    mask = batch["attention_mask"]
    ready = _encoder_mask(mask, encoder.config._attn_implementation, torch.float32)
    with torch.no_grad():
        expected = encoder(**inputs, attention_mask=mask).last_hidden_state
        got = encoder(**inputs, attention_mask=ready).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_from_encoder_loads_every_encoder_weight(families, family, tmp_path):
    """A checkpoint saved with a head keeps the encoder under the family's prefix (`roberta.`); all of it loads."""
    _, text_config = families[family]
    torch.manual_seed(1)
    pretrained = AutoModelForMaskedLM.from_config(text_config)
    pretrained.save_pretrained(tmp_path)
    model, info = CMBertForSequenceClassification.from_pretrained(tmp_path, fusion_dim=7, output_loading_info=True)
    assert model.config.fusion_dim == 7 and model.config.text_config.model_type == text_config.model_type
    assert {k.split(".")[0] for k in info["missing_keys"]} == {"fusion", "classifier"}
    expected = pretrained.base_model.state_dict()
    loaded = model.bert.state_dict()
    assert loaded.keys() <= expected.keys()
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key


def test_bad_encoders_are_clear_errors():
    class NoModelConfig(PreTrainedConfig):
        model_type = "no-automodel"
        hidden_size: int = 8

    with pytest.raises(StrictDataclassError, match="model type 'no-automodel', which has no `AutoModel` class"):
        CMBertConfig(text_config=NoModelConfig())
    with pytest.raises(StrictDataclassError, match=r"`text_config.hidden_size` must be a positive integer"):
        CMBertConfig(text_config={"model_type": "clip"})
    # An encoder whose output has no `last_hidden_state`, only a pooled vector.
    class PooledOnlyConfig(PreTrainedConfig):
        model_type = "pooled-only-encoder"
        hidden_size: int = 8

    class PooledOnlyModel(PreTrainedModel):
        config_class = PooledOnlyConfig

        def __init__(self, config):
            super().__init__(config)
            self.embeddings = torch.nn.Embedding(10, config.hidden_size)
            self.post_init()

        def forward(self, input_ids, attention_mask=None, return_dict=True):
            return BaseModelOutputWithPooling(pooler_output=self.embeddings(input_ids).mean(1))

    AutoModel.register(PooledOnlyConfig, PooledOnlyModel)
    model = CMBertForSequenceClassification(CMBertConfig(text_config=PooledOnlyConfig()))
    with pytest.raises(ValueError, match="pooled-only-encoder text encoder .PooledOnlyModel. returns no `last_hidden"):
        model(torch.ones(1, 4, dtype=torch.long))


REMOTE_LOAD = textwrap.dedent(
    """
    import sys
    sys.modules["cmbert_hf"] = None  # only the folders' own code may run
    import torch
    from transformers import AutoModelForSequenceClassification
    results = {}
    for source, inputs in zip(sys.argv[2::2], sys.argv[3::2]):
        model = AutoModelForSequenceClassification.from_pretrained(source, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            results[source] = {"state": model.state_dict(), "logits": model(**torch.load(inputs)).logits}
    torch.save(results, sys.argv[1])
    """
)


def _remote_load(sources: dict, tmp_path, env=None) -> dict:
    """Each source's (a folder or a Hub repo id) weights and logits on its inputs file (`sources`: source -> path),
    as loaded from its own code in a fresh process."""
    pairs = [str(arg) for source, inputs in sources.items() for arg in (source, inputs)]
    subprocess.run([sys.executable, "-c", REMOTE_LOAD, str(tmp_path / "out.pt"), *pairs], check=True, cwd=tmp_path,
                   timeout=300, env=env)
    return torch.load(tmp_path / "out.pt")


def test_every_family_round_trips_as_remote_code_in_a_fresh_process(families, tmp_path):
    expected = {}
    for family in FAMILIES:
        tokenizer, text_config = families[family]
        model = _model(text_config)
        folder = str(tmp_path / family)
        model.save_pretrained(folder)
        inputs = dict(_batch(tokenizer))
        torch.save(inputs, folder + "/inputs.pt")
        with torch.no_grad():
            expected[folder] = model.state_dict(), model(**inputs).logits
    remote = _remote_load({folder: folder + "/inputs.pt" for folder in expected}, tmp_path)
    for folder, (state, logits) in expected.items():
        assert remote[folder]["state"].keys() == state.keys(), folder
        for key, value in state.items():
            assert torch.equal(remote[folder]["state"][key], value), (folder, key)
        torch.testing.assert_close(remote[folder]["logits"], logits, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_train_py_fine_tunes_saves_pushes_and_reloads_every_family(families, tiny_args, dataset_cache, hub_env,
                                                                   hub_server, tmp_path):
    """train.py end to end over each family's encoder checkpoint (the tiny synthetic run): it trains, pushes the
    folder to the loopback Hub, and the pushed repo loads as remote code in a fresh process with the weights and
    outputs the run saved."""

    expected, inputs_files = {}, {}
    for family in FAMILIES:
        tokenizer, text_config = families[family]
        checkpoint = tmp_path / f"{family}-encoder"
        torch.manual_seed(0)
        AutoModel.from_config(text_config).save_pretrained(checkpoint)
        tokenizer.save_pretrained(checkpoint)
        folder, repo = tmp_path / f"{family}-run", f"user/cmbert-{family}"
        few = ("--max_train_samples", "16", "--max_eval_samples", "8", "--num_train_epochs", "1")
        metrics = recipe.main(tiny_args(checkpoint, dataset_cache, folder, *few, "--push_to_hub", "true",
                                       "--hub_model_id", repo))  # fmt: skip
        assert metrics["train"]["train_loss"] > 0 and np.isfinite(metrics["test"]["test_mae"]), family
        saved = CMBertForSequenceClassification.from_pretrained(folder).eval()
        assert saved.config.text_config.model_type == text_config.model_type
        inputs_files[repo] = tmp_path / f"{family}-inputs.pt"
        inputs = dict(_batch(tokenizer))
        torch.save(inputs, inputs_files[repo])
        with torch.no_grad():
            expected[repo] = saved.state_dict(), saved(**inputs).logits
    remote = _remote_load(inputs_files, tmp_path, env=hub_env)
    for repo, (state, logits) in expected.items():
        served = {path.rsplit("/", 1)[1] for method, path, status in hub_server.requests
                  if method == "GET" and status == 200 and path.startswith(f"/{repo}/resolve/")}  # fmt: skip
        assert {"model.safetensors", "modeling_cmbert.py"} <= served, repo  # the repo's, not a local folder's
        assert all(torch.equal(remote[repo]["state"][key], value) for key, value in state.items()), repo
        torch.testing.assert_close(remote[repo]["logits"], logits, rtol=0, atol=1e-6)
