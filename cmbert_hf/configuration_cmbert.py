"""CM-BERT configuration.

CM-BERT: Cross-Modal BERT for Text-Audio Sentiment Analysis (Yang, Xu, Gao, ACM MM 2020).
The config holds the text encoder's own config as the sub-config `text_config` (any encoder family whose
`AutoModel` returns `last_hidden_state`: BERT, RoBERTa, DeBERTa-v2/v3, XLM-RoBERTa, ModernBERT, ELECTRA, ...)
and the fusion layer's settings, each declared once below with its type, default and help; `train.py`'s
arguments and the model card are derived from these declarations.
"""

from dataclasses import MISSING, field, fields
from typing import Any, Literal

import numpy as np
from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, BertConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import logging


logger = logging.get_logger(__name__)

# Facts of the task that several modules use (this file ships as remote code, so they live here).
LABEL_RANGE = (-3.0, 3.0)  # CMU-MOSI / MOSEI sentiment scores; predictions are clipped to it for the 7 classes
# The 7 classes, index = round(clip(score, *LABEL_RANGE)) + 3 with numpy's halves-to-even.
LABEL7_NAMES = (
    "strongly negative", "negative", "weakly negative", "neutral", "weakly positive", "positive", "strongly positive",
)  # fmt: skip
MAX_LENGTH = 50  # word-piece truncation length of the original recipe
# The pipeline's task name: pipeline_cmbert.py registers it, modeling_cmbert.py writes it into saved configs.
TASK = "multimodal-sentiment-analysis"
# Where the audio vectors a model was trained on came from: "none" for a model trained without audio (text only);
# None (not one of these) where it was not recorded (folders saved before it was): they take precomputed vectors.
AUDIO_FEATURE_SOURCES = ("extractor", "covarep", "synthetic", "none")
# Sizes far beyond any real encoder (the largest have about 48 layers, 250k word pieces, 4096 wide): a config.json
# asking for more (mistyped, or forged to exhaust memory) is refused before transformers allocates anything.
MAX_TEXT_SIZES = {
    "num_hidden_layers": 256, "hidden_size": 32768, "intermediate_size": 131072, "num_attention_heads": 1024,
    "vocab_size": 2_000_000, "max_position_embeddings": 1_048_576, "type_vocab_size": 1024,
}  # fmt: skip
MAX_FUSION_SIZE = 65536  # audio_feature_size and fusion_dim (the data's 5 to 74, the paper's 30)
MAX_LABELS = 10_000  # transformers builds one id2label entry per label
MAX_PARAMETERS = 20_000_000_000  # 80 GB in float32: the estimate of `estimated_parameters` above this is refused


def sentiment_class(score):
    """The 7-class index (into `LABEL7_NAMES`) of a score or an array of scores: `round(clip(score, -3, 3)) + 3`,
    numpy's halves-to-even as the original scoring code (2.5 -> 5, -0.5 -> 3)."""
    return np.round(np.clip(score, *LABEL_RANGE)).astype(int) + 3


# Keys of the layout saved before `text_config`: a flat `BertConfig` with the fusion settings beside its fields.
_LEGACY_BERT_KEYS = {f.name for f in fields(BertConfig)} - {f.name for f in fields(PreTrainedConfig)}


def _positive_int(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")


def _size(value):
    _positive_int(value)
    if value > MAX_FUSION_SIZE:
        raise ValueError(f"must be at most {MAX_FUSION_SIZE}, got {value!r}")


def _probability(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"must be a dropout probability in [0, 1), got {value!r}")


def _positive_float(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"must be a positive number, got {value!r}")


def fusion_setting(default, help: str, validator=None, original=MISSING) -> Any:
    """Declares one fusion setting: the dataclass field with its help, optional validator (beyond the type
    check) and the value the authors' code used when it differs from the default (`CMBertConfig.original`)."""
    metadata = {"help": help, "fusion_setting": True}
    if validator is not None:
        metadata["validator"] = validator
    if original is not MISSING:
        metadata["original"] = original
    return field(default=default, metadata=metadata)


@strict
class CMBertConfig(PreTrainedConfig):
    r"""
    Configuration of a [`CMBertModel`]: a text encoder's config (`text_config`) and the fusion layer's settings.

    The defaults are batch-independent and let the audio reach the prediction.
    [`CMBertConfig.original`] gives the behaviour of the authors' code instead.

    Args:
        text_config (`dict` or [`PreTrainedConfig`], *optional*):
            The text encoder's config, of any model type whose `AutoModel` returns `last_hidden_state`.
            Defaults to `bert-base-uncased`'s. A flat `BertConfig` layout (BERT fields beside the fusion settings,
            as folders saved before `text_config` existed) is read as the `text_config` of a BERT encoder.
        audio_feature_size (`int`, *optional*, defaults to 5):
            Width `D_a` of one acoustic vector (5 COVAREP columns for CMU-MOSI, 74 for CMU-MOSEI).
        audio_feature_source (`str`, *optional*):
            Where the training audio vectors came from: `"extractor"` (the saved `CMBertFeatureExtractor`, which
            then turns raw audio into them), `"covarep"` (the MOSI/MOSEI releases), `"synthetic"`, `"none"` when the
            model was trained without audio (text only: audio given to it is ignored), or `None` when not recorded
            (folders saved before this field: they take precomputed `audio_features` only).
        audio_feature_names (`list[str]`, *optional*):
            The names of those vectors' columns (the extractor's `features`), when known.
        fusion_dim, fusion_attention_dropout, fusion_hidden_dropout, fusion_layer_norm_eps, head_dropout,
        text_scaling, audio_scaling, cls_audio:
            The fusion settings: their types, defaults and help are declared on the fields below
            (`CMBertConfig.fusion_settings()` lists them).

    Example:

    ```python
    >>> from transformers import RobertaConfig
    >>> from cmbert_hf import CMBertConfig, CMBertForSequenceClassification

    >>> config = CMBertConfig()  # bert-base-uncased encoder, regression head (num_labels=1)
    >>> original = CMBertConfig.original()  # the authors' code, audio-blind
    >>> roberta = CMBertConfig(text_config=RobertaConfig(), fusion_dim=40)
    >>> model = CMBertForSequenceClassification(config)
    ```"""

    model_type = "cmbert"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    text_config: dict | PreTrainedConfig | None = None
    audio_feature_size: int = field(
        default=5, metadata={"help": "Width of one acoustic vector (set from the data).", "validator": _size}
    )
    audio_feature_source: Literal[AUDIO_FEATURE_SOURCES] | None = field(
        default=None, metadata={"help": "Where the training audio vectors came from (set by train.py)."}
    )
    audio_feature_names: list[str] | None = field(
        default=None, metadata={"help": "The names of the audio vectors' columns, when known (set by train.py)."}
    )
    fusion_dim: int = fusion_setting(30, "Size of the bias-free text and audio projections.", _size)
    fusion_attention_dropout: float = fusion_setting(
        0.3, "Dropout on the multimodal attention weights `W_m`.", _probability
    )
    fusion_hidden_dropout: float = fusion_setting(
        0.1, "Dropout on the fusion layer's dense output (BERT's hidden dropout in the original).", _probability
    )
    fusion_layer_norm_eps: float = fusion_setting(
        1e-12, "Epsilon of the fusion layer's LayerNorm (BERT's in the original).", _positive_float
    )
    head_dropout: float = fusion_setting(0.1, "Dropout before the classification head.", _probability)
    text_scaling: Literal["batch", "sample", "none"] = fusion_setting(
        "sample",
        "Division of the projected text by the square root of its detached Frobenius norm: `batch` over the whole "
        "padded batch (the original; results depend on the other samples), `sample` per sample over its real "
        "tokens, `none` not at all.",
        original="batch",
    )
    audio_scaling: Literal["batch", "sample", "none"] = fusion_setting(
        "sample", "The same for the projected audio; the paper scales it, the original code does not (`none`).",
        original="none",
    )
    cls_audio: Literal["input", "mean"] = fusion_setting(
        "mean",
        "Audio vector at the first position, the one the head reads: `input` keeps the input's row (zero in every "
        "released data file, so the prediction cannot see the audio: the original model); `mean` puts the mean "
        "audio row of the word-pieces there, so the audio reaches the prediction.",
        original="input",
    )

    def __post_init__(self, **kwargs):
        # Without `text_config`, BERT fields given beside the fusion settings are the flat layout's encoder.
        # (With it, such names are plain attributes: the Trainer sets `use_cache` on any model's config.)
        legacy = {key: kwargs.pop(key) for key in list(kwargs) if key in _LEGACY_BERT_KEYS and self.text_config is None}
        if legacy:
            self._adopt_legacy_bert_fields(legacy)
        # Sentiment is a score in LABEL_RANGE: regression unless the caller asks for classes.
        if self.id2label is None and kwargs.get("num_labels") is None:
            kwargs["num_labels"] = 1
        labels = kwargs.get("num_labels", 1)
        if isinstance(labels, bool) or not isinstance(labels, int) or not 1 <= labels <= MAX_LABELS:
            raise ValueError(f"`num_labels` must be an integer from 1 to {MAX_LABELS}, got {labels!r}.")
        super().__post_init__(**kwargs)

    def _adopt_legacy_bert_fields(self, legacy: dict) -> None:
        """A flat BertConfig layout: its BERT fields become `text_config`, and the fusion layer keeps the numbers it
        took from them (BERT's hidden dropout, LayerNorm epsilon and classifier dropout) where they are given."""
        self.text_config = BertConfig(**legacy)
        if "hidden_dropout_prob" in legacy:
            self.fusion_hidden_dropout = self.head_dropout = legacy["hidden_dropout_prob"]
        if legacy.get("classifier_dropout") is not None:
            self.head_dropout = legacy["classifier_dropout"]
        if "layer_norm_eps" in legacy:
            self.fusion_layer_norm_eps = legacy["layer_norm_eps"]

    def to_diff_dict(self) -> dict:
        # transformers leaves out the top level's `_name_or_path` (where the config was loaded from) but not the
        # encoder's: a saved folder, and the Hub repo pushed from it, would carry the local path of the checkpoint.
        serialized = super().to_diff_dict()
        if isinstance(serialized.get("text_config"), dict):
            serialized["text_config"].pop("_name_or_path", None)
        return serialized

    def validate_text_config(self):
        """The fusion layer reads `hidden_size` wide hidden states from an encoder that `AutoModel` can build."""
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        if type(self.text_config) not in MODEL_MAPPING:
            raise ValueError(
                f"`text_config` has model type {self.text_config.model_type!r}, which has no `AutoModel` class: "
                "expected an encoder config such as bert, roberta, deberta-v2, xlm-roberta, modernbert or electra."
            )
        hidden_size = getattr(self.text_config, "hidden_size", None)
        if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(
                f"`text_config.hidden_size` must be a positive integer (the width the fusion layer reads), got "
                f"{hidden_size!r} for model type {self.text_config.model_type!r}."
            )
        for name, limit in MAX_TEXT_SIZES.items():
            value = getattr(self.text_config, name, None)
            if isinstance(value, int) and value > limit:
                raise ValueError(f"`text_config.{name}` is {value}, beyond any real encoder (at most {limit}): "
                                 "is this config.json mistyped?")
        if self.estimated_parameters() > MAX_PARAMETERS:
            raise ValueError(f"this config asks for about {self.estimated_parameters():.3g} parameters, more than "
                             f"{MAX_PARAMETERS:.3g}: is this config.json mistyped?")

    def estimated_parameters(self) -> int:
        """About how many parameters the model of this config has (embeddings, encoder layers, fusion): what
        bounds its memory before it is built."""
        text = self.text_config
        hidden = text.hidden_size
        size = {name: getattr(text, name, None) or 0 for name in MAX_TEXT_SIZES}
        embeddings = (size["vocab_size"] + size["max_position_embeddings"] + size["type_vocab_size"]) * hidden
        layers = size["num_hidden_layers"] * (4 * hidden * hidden + 2 * hidden * (size["intermediate_size"] or hidden))
        fusion = (hidden + self.audio_feature_size) * self.fusion_dim + 2 * hidden * hidden
        return embeddings + layers + fusion

    @property
    def hidden_size(self) -> int:
        """The encoder's width: the size of the fused sequence."""
        return self.text_config.hidden_size

    @classmethod
    def fusion_settings(cls) -> tuple:
        """The dataclass fields of the fusion settings: what `train.py` exposes and the model card reports."""
        return tuple(f for f in fields(cls) if f.metadata.get("fusion_setting"))

    @classmethod
    def original(cls, **kwargs) -> "CMBertConfig":
        """The authors' code: whole-batch text scaling, unscaled audio, the input's zero `[CLS]` audio row."""
        return cls(**{**cls.original_fusion(), **kwargs})

    @classmethod
    def original_fusion(cls) -> dict:
        """The fusion settings whose value in the authors' code differs from the default."""
        return {f.name: f.metadata["original"] for f in cls.fusion_settings() if "original" in f.metadata}


__all__ = [
    "AUDIO_FEATURE_SOURCES", "MAX_LABELS", "MAX_PARAMETERS", "MAX_TEXT_SIZES", "CMBertConfig", "LABEL7_NAMES",
    "LABEL_RANGE", "MAX_LENGTH", "TASK", "fusion_setting", "sentiment_class",
]  # fmt: skip
