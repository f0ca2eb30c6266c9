"""cmbert-hf: CM-BERT (cross-modal BERT for text + audio sentiment) on the Hugging Face stack."""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoProcessor,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_cmbert import CMBertConfig
from .data_collator import CMBertDataCollator
from .feature_extraction_cmbert import CMBertFeatureExtractor
from .metrics import compute_metrics, sentiment_metrics
from .modeling_cmbert import CMBertForSequenceClassification, CMBertModel, CMBertPreTrainedModel
from .pipeline_cmbert import TASK as PIPELINE_TASK
from .pipeline_cmbert import CMBertSentimentPipeline
from .processing_cmbert import CMBertProcessor

# In-process use: the Auto classes know "cmbert" once this package is imported.
AutoConfig.register("cmbert", CMBertConfig)
AutoModel.register(CMBertConfig, CMBertModel)
AutoModelForSequenceClassification.register(CMBertConfig, CMBertForSequenceClassification)
AutoFeatureExtractor.register(CMBertConfig, CMBertFeatureExtractor)
AutoProcessor.register(CMBertConfig, CMBertProcessor)

# Remote code: save_pretrained/push_to_hub ship the model files with an `auto_map`.
CMBertConfig.register_for_auto_class()
CMBertModel.register_for_auto_class("AutoModel")
CMBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
CMBertFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
CMBertProcessor.register_for_auto_class("AutoProcessor")
# `pipeline("multimodal-sentiment-analysis", model=model, processor=processor)`. Saved folders name the pipeline in
# `custom_pipelines` (modeling_cmbert.py), which transformers loads only with `trust_remote_code=True` or an explicit
# `pipeline_class=CMBertSentimentPipeline`.
PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK,
    pipeline_class=CMBertSentimentPipeline,
    pt_model=AutoModelForSequenceClassification,
    type="multimodal",
)

__version__ = "0.1.0"
__all__ = [
    "CMBertConfig",
    "CMBertDataCollator",
    "CMBertFeatureExtractor",
    "CMBertForSequenceClassification",
    "CMBertModel",
    "CMBertPreTrainedModel",
    "CMBertProcessor",
    "CMBertSentimentPipeline",
    "compute_metrics",
    "sentiment_metrics",
]
