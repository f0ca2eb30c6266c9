"""cmbert-hf: CM-BERT (cross-modal BERT for text + audio sentiment) on the Hugging Face stack."""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoProcessor,
)

from .configuration_cmbert import CMBertConfig
from .data_collator import CMBertDataCollator
from .feature_extraction_cmbert import CMBertFeatureExtractor
from .metrics import compute_metrics, sentiment_metrics
from .modeling_cmbert import CMBertForSequenceClassification, CMBertModel, CMBertPreTrainedModel
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

__version__ = "0.1.0"
__all__ = [
    "CMBertConfig",
    "CMBertDataCollator",
    "CMBertFeatureExtractor",
    "CMBertForSequenceClassification",
    "CMBertModel",
    "CMBertPreTrainedModel",
    "CMBertProcessor",
    "compute_metrics",
    "sentiment_metrics",
]
