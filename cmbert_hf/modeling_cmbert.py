"""CM-BERT: a text encoder with a masked multimodal attention layer over word-aligned audio.

Yang, Xu, Gao, "CM-BERT: Cross-Modal BERT for Text-Audio Sentiment Analysis", ACM MM 2020.
The text encoder is any transformers encoder built by `AutoModel` from `config.text_config` (BERT in the paper);
this file adds only the fusion layer (the paper's section 3.3, eq. 1-6) and the heads.
"""

import inspect
import math
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ModelOutput
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import logging

from .configuration_cmbert import TASK, CMBertConfig


logger = logging.get_logger(__name__)

# The original's additive mask value; kept so the original setting reproduces its numbers.
MASK_VALUE = -10000.0

# Encoder families checked to use a ready 4-D mask as it is (transformers' `create_bidirectional_mask` alone);
# others get the 2-D mask: DeBERTa-v2 builds its own pairwise mask, ModernBERT adds a sliding-window one.
FOUR_D_MASK_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "electra"})
# The body's weights in a saved CM-BERT folder: without them `from_pretrained` would initialise them at random.
CMBERT_WEIGHT_PREFIXES = ("bert.", "fusion.", "classifier.")
# `from_pretrained` keyword arguments that locate a checkpoint's files (passed on to `AutoConfig` as well).
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")

# Written into every saved config, so that a folder or Hub repo loads with any of the Auto classes
# (and `trust_remote_code=True`) whichever of the models was saved.
AUTO_MAP = {
    "AutoConfig": "configuration_cmbert.CMBertConfig",
    "AutoModel": "modeling_cmbert.CMBertModel",
    "AutoModelForSequenceClassification": "modeling_cmbert.CMBertForSequenceClassification",
}
# The sentiment pipeline ships beside the model code, so `pipeline(model=repo, trust_remote_code=True)` finds it;
# the entry is what `Pipeline.save_pretrained` writes for the registered pipeline (pipeline_cmbert.py).
PIPELINE_FILE = Path(__file__).with_name("pipeline_cmbert.py")
CUSTOM_PIPELINES = {
    TASK: {
        "impl": "pipeline_cmbert.CMBertSentimentPipeline",
        "pt": ["AutoModelForSequenceClassification"],
        "type": "multimodal",
    }
}


@dataclass
class CMBertModelOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
        The fused sequence `Y`.
    pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        The fused `[CLS]` vector `Y[:, 0]` that the heads read.
    text_attention (`torch.FloatTensor` of shape `(batch_size, sequence_length, sequence_length)`, *optional*):
        The text attention `alpha`, returned with `output_attentions=True`.
    multimodal_attention (`torch.FloatTensor` of shape `(batch_size, sequence_length, sequence_length)`, *optional*):
        The multimodal attention `W_m` (before dropout), returned with `output_attentions=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    text_attention: torch.FloatTensor | None = None
    multimodal_attention: torch.FloatTensor | None = None


@dataclass
class CMBertSequenceClassifierOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
        MSE for regression (`num_labels == 1`), cross-entropy otherwise.
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        The sentiment score (regression) or the class scores.
    text_attention, multimodal_attention (`torch.FloatTensor`, *optional*):
        As in [`CMBertModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    text_attention: torch.FloatTensor | None = None
    multimodal_attention: torch.FloatTensor | None = None


def _scale(x: torch.Tensor, mode: str, token_mask: torch.Tensor) -> torch.Tensor:
    """Divides `x` [B, L, d] by the square root of its detached Frobenius norm (paper eq. 2-3)."""
    if mode == "none":
        return x
    squares = x.detach().square()
    if mode == "batch":
        # The original: one norm for the whole padded batch tensor.
        norm = squares.sum().sqrt()
    else:
        # Only real tokens count, so that the amount of padding (dynamic or fixed) changes nothing.
        norm = (squares * token_mask[:, :, None]).sum(dim=(1, 2), keepdim=True).sqrt()  # [B, 1, 1]
    return x / norm.clamp_min(1e-12).sqrt()


class CMBertMaskedMultimodalAttention(nn.Module):
    """`W_m = softmax(w_t * alpha + w_a * beta + b + M)` with `alpha`, `beta` from scaled text and audio."""

    def __init__(self, config: CMBertConfig):
        super().__init__()
        self.text_scaling = config.text_scaling
        self.audio_scaling = config.audio_scaling
        # Kernel-1 Conv1d without bias in the original: the same map as a bias-free Linear.
        self.text_proj = nn.Linear(config.hidden_size, config.fusion_dim, bias=False)
        self.audio_proj = nn.Linear(config.audio_feature_size, config.fusion_dim, bias=False)
        self.w_t = nn.Parameter(torch.ones(1))
        self.w_a = nn.Parameter(torch.ones(1))
        self.b = nn.Parameter(torch.zeros(1))
        self.dropout = nn.Dropout(config.fusion_attention_dropout)

    def forward(self, text, audio, attention_mask, cls_only: bool = False):
        """Attention rows of every position, or of `[CLS]` alone (`cls_only`, Q = 1) when only it is read."""
        token_mask = attention_mask.to(text.dtype)  # [B, L]
        queries = slice(0, 1) if cls_only else slice(None)
        t = _scale(self.text_proj(text), self.text_scaling, token_mask)  # [B, L, d]
        alpha = torch.relu(t[:, queries] @ t.transpose(1, 2))  # [B, Q, L]
        scores = self.w_t * alpha + self.b
        if audio is not None:
            a = _scale(self.audio_proj(audio), self.audio_scaling, token_mask)  # [B, L, d]
            scores = scores + self.w_a * torch.relu(a[:, queries] @ a.transpose(1, 2))
        # The original masks rows too; a constant added to a whole row leaves its softmax unchanged,
        # so masking the key axis alone gives the same weights.
        scores = scores + (1.0 - token_mask)[:, None, :] * MASK_VALUE
        weights = torch.softmax(scores, dim=-1)  # [B, Q, L]
        return self.dropout(weights), alpha, weights


class CMBertFusionLayer(nn.Module):
    """`Y = LayerNorm(Dropout(Dense(W_m X_t + X_t)))`, the fused sequence."""

    def __init__(self, config: CMBertConfig):
        super().__init__()
        self.cls_audio = config.cls_audio
        self.attention = CMBertMaskedMultimodalAttention(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.fusion_hidden_dropout)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.fusion_layer_norm_eps)

    def forward(self, text, audio, attention_mask, cls_only: bool = False):
        if audio is not None:
            audio = audio.to(text.dtype)
            if self.cls_audio == "mean":
                audio = _with_utterance_audio_at_cls(audio, attention_mask)
        dropped, alpha, weights = self.attention(text, audio, attention_mask, cls_only)
        residual = text[:, :1] if cls_only else text
        # Every step after the attention acts row by row: with `cls_only` only row 0 is computed.
        fused = self.LayerNorm(self.dropout(self.dense(dropped @ text + residual)))  # [B, Q, H]
        return fused, alpha, weights


def _with_utterance_audio_at_cls(audio: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Puts the mean audio vector of the word-pieces (the real tokens but the start and end markers) at position 0.

    The mean is over rows, so a word split into k pieces, whose vector fills k rows, counts k times.

    With a zero `[CLS]` row (every released data file) the `[CLS]` row of `beta` is zero and the prediction
    is blind to the audio (spec, "A flaw in the original"). An utterance-level vector there lets the `[CLS]`
    query weigh each word by how its prosody matches the whole utterance's, which is the cross-modal
    reweighting the paper intends, and it needs no new parameters, so BERT checkpoints load unchanged.
    """
    # The start marker (position 0: `[CLS]`, `<s>`) and the end marker (the last real token: `[SEP]`, `</s>`; padding
    # is on the right) have zero audio rows, which would shrink the mean of short utterances the most. Every encoder
    # family's tokenizer frames a sequence so; `CMBertProcessor` checks it.
    sep = attention_mask.sum(1, keepdim=True) - 1  # [B, 1]
    mask = attention_mask.to(audio.dtype).scatter(1, sep, 0.0)
    mask[:, 0] = 0.0
    mean = (audio * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)  # [B, D_a]
    return torch.cat([mean[:, None], audio[:, 1:]], dim=1)


def _encoder_mask(attention_mask: torch.Tensor, attn_implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """A ready 4-D mask for the encoder's self-attention.

    Given a 2-D mask, transformers checks it for padding with `.all()` to skip it, a host-device sync on
    every step; a 4-D mask is used as it is.
    """
    keep = attention_mask[:, None, None, :].bool()  # [B, 1, 1, L]
    if attn_implementation == "sdpa":
        return keep
    if attn_implementation == "eager":
        return (~keep).to(dtype) * torch.finfo(dtype).min
    return attention_mask  # flash and other kernels take the 2-D mask


def _text_encoder(config) -> PreTrainedModel:
    """`AutoModel.from_config(config.text_config)`, without the pooler that BERT-like encoders add by default: the
    fusion layer reads the last hidden states, and an unused pooler would be trained by nothing."""
    model_class = MODEL_MAPPING[type(config.text_config)]  # present: CMBertConfig.validate_text_config checks it
    kwargs = {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(model_class).parameters else {}
    return AutoModel.from_config(config.text_config, **kwargs)


class CMBertPreTrainedModel(PreTrainedModel):
    config_class = CMBertConfig
    # The text encoder's attribute, of any family: `bert`, as in every folder saved so far.
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    # Pre-training heads and poolers are not used: the fusion layer reads the last hidden states.
    _keys_to_ignore_on_load_unexpected = [r"pooler\.", r"^cls\."]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, CMBertMaskedMultimodalAttention):
            # The original keeps PyTorch's default Conv1d initialisation for the projections.
            for proj in (module.text_proj, module.audio_proj):
                init.kaiming_uniform_(proj.weight, a=math.sqrt(5))
            init.ones_(module.w_t)
            init.ones_(module.w_a)
            init.zeros_(module.b)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        r"""
        Loads a saved CM-BERT model, or a plain text encoder checkpoint of any family through
        [`~CMBertPreTrainedModel.from_encoder`] (what the model type in its `config.json` tells apart).

        A saved CM-BERT model must hold all its weights: a folder without its fusion layer or head is an error,
        not a model initialised at random. Other arguments are those of [`PreTrainedModel.from_pretrained`].
        """
        config = kwargs.get("config")
        if isinstance(config, PreTrainedConfig):
            model_type = config.model_type
        else:
            hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
            config_dict, _ = PreTrainedConfig.get_config_dict(config or pretrained_model_name_or_path, **hub_kwargs)
            model_type = config_dict.get("model_type")
        if model_type != cls.config_class.model_type:
            return cls.from_encoder(pretrained_model_name_or_path, *model_args, **kwargs)
        return_info = kwargs.pop("output_loading_info", False)
        # Mismatched weights are reported below with the config field at fault, rather than as transformers' error.
        kwargs["ignore_mismatched_sizes"] = True
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
        _check_loaded(pretrained_model_name_or_path, info, missing_allowed=())
        if info["mismatched_keys"]:
            # The fusion layer's weights name the setting at fault best.
            key, saved, expected = min(info["mismatched_keys"], key=lambda m: (not m[0].startswith("fusion."), m[0]))
            raise ValueError(
                f"{pretrained_model_name_or_path}: the saved weight {key} has shape {tuple(saved)} but the config asks "
                f"for {tuple(expected)}: does `text_config.hidden_size` ({model.config.hidden_size}), "
                f"`fusion_dim` ({model.config.fusion_dim}) or `audio_feature_size` ({model.config.audio_feature_size}) "
                "disagree with the saved model?"
            )
        return (model, info) if return_info else model

    @classmethod
    def from_encoder(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        r"""
        Loads a text encoder checkpoint (Hub id or folder) of any family under a new fusion layer and head: only
        those are initialised, every weight of the encoder is the checkpoint's.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`):
                An encoder checkpoint (`bert-base-uncased`, `roberta-large`, `microsoft/deberta-v3-large`, a folder),
                whether saved from the bare encoder (`RobertaModel`) or from a model with a head (keys under the
                family's prefix, `roberta.`); the head's weights are ignored.
            kwargs:
                [`CMBertConfig`] fields (`fusion_dim=40`, `num_labels=7`, `audio_feature_size=74`, ...) and the
                arguments of [`PreTrainedModel.from_pretrained`] (`attn_implementation`, `dtype`, `revision`, ...).

        Example:

        ```python
        >>> model = CMBertForSequenceClassification.from_encoder("FacebookAI/roberta-large", fusion_dim=40)
        ```"""
        if kwargs.get("config") is not None:
            raise ValueError("`from_encoder` builds the CM-BERT config itself: pass its fields as keyword arguments.")
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        text_config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        if text_config.model_type == cls.config_class.model_type:
            raise ValueError(f"{pretrained_model_name_or_path} is a CM-BERT model: load it with `from_pretrained`.")
        config_fields = {f.name for f in fields(cls.config_class)} | {"num_labels"}
        config_kwargs = {key: kwargs.pop(key) for key in list(kwargs) if key in config_fields}
        config = cls.config_class(text_config=text_config, **config_kwargs)
        # Checkpoints saved with a head keep the encoder under the family's prefix (`roberta.`); it is `bert.` here.
        prefix = MODEL_MAPPING[type(text_config)].base_model_prefix
        if prefix and prefix != cls.base_model_prefix:
            kwargs["key_mapping"] = {rf"^{prefix}\.": f"{cls.base_model_prefix}."}
        return_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, config=config, output_loading_info=True, **kwargs
        )
        _check_loaded(pretrained_model_name_or_path, info, missing_allowed=("fusion.", "classifier."))
        return (model, info) if return_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        # Remote code loaded without the pipeline has no pipeline file beside it: then no entry may point to one.
        self.config.custom_pipelines = CUSTOM_PIPELINES if PIPELINE_FILE.is_file() else {}
        if PIPELINE_FILE.is_file():  # copied first, so that `push_to_hub=True` uploads it too
            Path(save_directory).mkdir(parents=True, exist_ok=True)
            for source in (PIPELINE_FILE, PIPELINE_FILE.with_name("transcription_cmbert.py")):  # and its import
                # The content only: a read-only installed file would make the folder's copy unwritable by a later save.
                shutil.copyfile(source, Path(save_directory) / source.name)
        return super().save_pretrained(save_directory, *args, **kwargs)


def _check_loaded(path, info: dict, missing_allowed: tuple[str, ...]) -> None:
    """Every weight the checkpoint should hold was there: anything else would be silently random."""
    missing = sorted(key for key in info["missing_keys"] if not key.startswith(missing_allowed))
    if missing:
        what = "a saved CM-BERT model" if not missing_allowed else "an encoder checkpoint"
        raise ValueError(
            f"{path} is {what} but lacks the weights {missing}; they would be initialised at random. "
            + ("Save the whole model again." if not missing_allowed else "Is it a checkpoint of this encoder family?")
        )


class CMBertModel(CMBertPreTrainedModel):
    """The text encoder followed by the masked multimodal attention fusion layer: the body every head builds on."""

    def __init__(self, config: CMBertConfig):
        super().__init__(config)
        self._build(config)
        self.post_init()

    def _build(self, config: CMBertConfig) -> None:
        """The modules, in the order their new weights are drawn: a head adds its own after the body's. They sit
        at the top level (`bert.`, `fusion.`, then the head's), the state-dict keys of every folder saved so far."""
        self.bert = _text_encoder(config)
        self.fusion = CMBertFusionLayer(config)

    def fuse(self, input_ids, attention_mask, token_type_ids, audio_features, cls_only=False):
        """The body: the text encoder, then the fusion layer. Returns the fused states `[B, L, H]` (only row 0 is
        computed with `cls_only`), `alpha` and `W_m`."""
        if input_ids is None:
            raise ValueError("CM-BERT needs `input_ids` (the fusion layer works on word-piece positions).")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if audio_features is not None and audio_features.shape != (*input_ids.shape, self.config.audio_feature_size):
            raise ValueError(
                f"`audio_features` must have shape (batch, seq_len, {self.config.audio_feature_size}) matching "
                f"`input_ids` {tuple(input_ids.shape)}, got {tuple(audio_features.shape)}."
            )
        text_config = self.config.text_config
        encoder_kwargs = {}
        if token_type_ids is not None:
            if "token_type_ids" not in inspect.signature(self.bert.forward).parameters:
                raise ValueError(f"the {text_config.model_type} text encoder takes no `token_type_ids`; leave them out.")
            encoder_kwargs["token_type_ids"] = token_type_ids
        if text_config.model_type in FOUR_D_MASK_TYPES:
            encoder_mask = _encoder_mask(attention_mask, text_config._attn_implementation, self.dtype)
        else:
            encoder_mask = attention_mask
        output = self.bert(input_ids, attention_mask=encoder_mask, return_dict=True, **encoder_kwargs)
        text = getattr(output, "last_hidden_state", None)  # [B, L, H]
        if text is None:
            raise ValueError(
                f"the {text_config.model_type} text encoder ({type(self.bert).__name__}) returns no "
                "`last_hidden_state`: `text_config` must be the config of an encoder whose outputs have one."
            )
        return self.fusion(text, audio_features, attention_mask, cls_only)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
        output_attentions: bool = False,
        return_dict: bool | None = None,
    ) -> CMBertModelOutput | tuple:
        r"""
        audio_features (`torch.FloatTensor` of shape `(batch_size, sequence_length, audio_feature_size)`, *optional*):
            One acoustic vector per word-piece position, zero at `[CLS]`, `[SEP]` and padding (see
            [`CMBertProcessor`]). Omitted: treated as zeros, which gives the text-only model.
        """
        fused, alpha, weights = self.fuse(input_ids, attention_mask, token_type_ids, audio_features)
        output = CMBertModelOutput(
            last_hidden_state=fused,
            pooler_output=fused[:, 0],
            text_attention=alpha if output_attentions else None,
            multimodal_attention=weights if output_attentions else None,
        )
        return output if return_dict is not False else output.to_tuple()


class CMBertForSequenceClassification(CMBertModel):
    """CM-BERT with a linear head on the fused `[CLS]` vector: regression when `num_labels == 1`. The body is
    `CMBertModel`'s (its modules and `fuse`); this class adds the head."""

    def _build(self, config: CMBertConfig) -> None:
        super()._build(config)
        self.num_labels = config.num_labels
        self.dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        audio_features: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        return_dict: bool | None = None,
    ) -> CMBertSequenceClassifierOutput | tuple:
        r"""
        audio_features (`torch.FloatTensor` of shape `(batch_size, sequence_length, audio_feature_size)`, *optional*):
            As in [`CMBertModel.forward`].
        labels (`torch.Tensor` of shape `(batch_size,)`, *optional*):
            Sentiment scores (float) when `num_labels == 1`, class indices otherwise.
        """
        # The head reads `[CLS]` only: unless the attention maps are asked for, fuse that row alone.
        fused, alpha, weights = self.fuse(
            input_ids, attention_mask, token_type_ids, audio_features, cls_only=not output_attentions
        )
        logits = self.classifier(self.dropout(fused[:, 0]))  # [B, num_labels]
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = nn.functional.mse_loss(logits.view(-1), labels.view(-1).to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        output = CMBertSequenceClassifierOutput(
            loss=loss,
            logits=logits,
            text_attention=alpha if output_attentions else None,
            multimodal_attention=weights if output_attentions else None,
        )
        return output if return_dict is not False else output.to_tuple()


__all__ = [
    "CMBertPreTrainedModel",
    "CMBertModel",
    "CMBertForSequenceClassification",
    "CMBertModelOutput",
    "CMBertSequenceClassifierOutput",
]
