"""CM-BERT configuration.

CM-BERT: Cross-Modal BERT for Text-Audio Sentiment Analysis (Yang, Xu, Gao, ACM MM 2020).
The config is a `BertConfig` (so any BERT checkpoint can be the text encoder) plus the
hyperparameters of the masked multimodal attention layer.
"""

from transformers import BertConfig
from transformers.utils import logging


logger = logging.get_logger(__name__)

SCALING_MODES = ("batch", "sample", "none")
CLS_AUDIO_MODES = ("input", "mean")
# Where the audio vectors a model was trained on came from: "none" for a model trained without audio (text only);
# None where it was not recorded (folders saved before it was), which accept precomputed vectors only.
AUDIO_FEATURE_SOURCES = ("extractor", "covarep", "synthetic", "none", None)
# The fusion settings of the authors' code (`CMBertConfig.original()`, `train.py --original`).
ORIGINAL_FUSION = {"text_scaling": "batch", "audio_scaling": "none", "cls_audio": "input"}


class CMBertConfig(BertConfig):
    r"""
    Configuration of a [`CMBertModel`]: the BERT encoder's hyperparameters (inherited from
    [`BertConfig`], defaults of `bert-base-uncased`) and those of the fusion layer.

    The defaults are batch-independent and let the audio reach the prediction.
    [`CMBertConfig.original`] gives the behaviour of the authors' code instead.

    Args:
        audio_feature_size (`int`, *optional*, defaults to 5):
            Width `D_a` of one acoustic vector (5 COVAREP columns for CMU-MOSI, 74 for CMU-MOSEI).
        fusion_dim (`int`, *optional*, defaults to 30):
            Size `d` of the bias-free text and audio projections that build the attention maps.
        fusion_attention_dropout (`float`, *optional*, defaults to 0.3):
            Dropout on the multimodal attention weights `W_m`.
        text_scaling (`str`, *optional*, defaults to `"sample"`):
            How the projected text `T` is divided by the square root of its (detached) Frobenius norm:
            `"batch"` over the whole batch tensor padding included, as the original code does (results then
            depend on the other samples in the batch); `"sample"` per sample over its real tokens;
            `"none"` not at all.
        audio_scaling (`str`, *optional*, defaults to `"sample"`):
            The same for the projected audio `A`. The paper scales it; the original code does not (`"none"`).
        cls_audio (`str`, *optional*, defaults to `"mean"`):
            The audio vector used at the `[CLS]` position. `"input"` keeps the input's row, which is zero in
            every released data file, so the prediction (read at `[CLS]`) cannot depend on the audio: that is
            the original model. `"mean"` puts the mean of the audio rows of the real tokens there, so the
            `[CLS]` row of the multimodal attention, and with it the prediction, sees the audio.
        audio_feature_source (`str`, *optional*):
            Where the training audio vectors came from: `"extractor"` (the saved `CMBertFeatureExtractor`, which
            then turns raw audio into them), `"covarep"` (the MOSI/MOSEI releases), `"synthetic"`, `"none"` when the
            model was trained without audio (text only: audio given to it is ignored), or `None` when not recorded
            (folders saved before this field: they take precomputed `audio_features` only).
        audio_feature_names (`list[str]`, *optional*):
            The names of those vectors' columns (the extractor's `features`), when known.

    Example:

    ```python
    >>> from cmbert_hf import CMBertConfig, CMBertForSequenceClassification

    >>> config = CMBertConfig()  # bert-base-uncased sized, regression head (num_labels=1)
    >>> original = CMBertConfig.original()  # the authors' code, audio-blind
    >>> model = CMBertForSequenceClassification(config)
    ```"""

    model_type = "cmbert"

    audio_feature_size: int = 5
    fusion_dim: int = 30
    fusion_attention_dropout: float = 0.3
    text_scaling: str = "sample"
    audio_scaling: str = "sample"
    cls_audio: str = "mean"
    audio_feature_source: str | None = None
    audio_feature_names: list[str] | None = None

    def __post_init__(self, **kwargs):
        # Sentiment is a score in [-3, 3]: regression unless the caller asks for classes.
        if self.id2label is None and kwargs.get("num_labels") is None:
            kwargs["num_labels"] = 1
        super().__post_init__(**kwargs)
        self._check_fusion_fields()

    def _check_fusion_fields(self):
        for name, allowed in (
            ("text_scaling", SCALING_MODES),
            ("audio_scaling", SCALING_MODES),
            ("cls_audio", CLS_AUDIO_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.audio_feature_source not in AUDIO_FEATURE_SOURCES:
            raise ValueError(
                f"`audio_feature_source` must be one of {AUDIO_FEATURE_SOURCES}, got {self.audio_feature_source!r}."
            )
        for name in ("audio_feature_size", "fusion_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if not 0.0 <= self.fusion_attention_dropout < 1.0:
            raise ValueError(
                f"`fusion_attention_dropout` must be in [0, 1), got {self.fusion_attention_dropout!r}."
            )

    @classmethod
    def original(cls, **kwargs) -> "CMBertConfig":
        """The authors' code: whole-batch text scaling, unscaled audio, the input's zero `[CLS]` audio row."""
        kwargs = {**ORIGINAL_FUSION, **kwargs}
        return cls(**kwargs)

    @classmethod
    def from_bert_config(cls, bert_config: BertConfig, **fusion_kwargs) -> "CMBertConfig":
        """Builds a CM-BERT config around any BERT config (`bert-base-uncased`, MiniLM, a tiny random one)."""
        encoder = bert_config.to_dict()
        for key in ("model_type", "architectures", "auto_map", "transformers_version", "id2label", "label2id"):
            encoder.pop(key, None)
        return cls(**{**encoder, **fusion_kwargs})


__all__ = ["CMBertConfig"]
