"""cmbert-hf: CM-BERT (cross-modal BERT for text + audio sentiment) on the Hugging Face stack."""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration_cmbert import CMBertConfig
from .data_collator import CMBertDataCollator
from .metrics import compute_metrics, sentiment_metrics
from .modeling_cmbert import CMBertForSequenceClassification, CMBertModel, CMBertPreTrainedModel
from .processing_cmbert import CMBertProcessor

# In-process use: the Auto classes know "cmbert" once this package is imported.
AutoConfig.register("cmbert", CMBertConfig)
AutoModel.register(CMBertConfig, CMBertModel)
AutoModelForSequenceClassification.register(CMBertConfig, CMBertForSequenceClassification)

# Remote code: save_pretrained/push_to_hub ship the model files with an `auto_map`.
CMBertConfig.register_for_auto_class()
CMBertModel.register_for_auto_class("AutoModel")
CMBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__version__ = "0.1.0"
__all__ = [
    "CMBertConfig",
    "CMBertDataCollator",
    "CMBertForSequenceClassification",
    "CMBertModel",
    "CMBertPreTrainedModel",
    "CMBertProcessor",
    "compute_metrics",
    "sentiment_metrics",
]
