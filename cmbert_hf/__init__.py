"""cmbert-hf: CM-BERT (cross-modal BERT for text + audio sentiment) on the Hugging Face stack.

Lazy, like transformers' own `__init__`: importing the package loads no torch, transformers, librosa, datasets or
scikit-learn (the `cmbert` command parses its arguments before it imports what the command needs). The public names
below are imported on first use. The Auto classes learn `cmbert` (`AutoConfig`, `AutoModel...`, `AutoProcessor`,
`AutoFeatureExtractor`, the pipeline task) as soon as transformers is imported in a process that imported this
package, in whichever order the two are imported.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# Public name -> the module that defines it.
_NAMES = {
    "CMBertConfig": "configuration_cmbert",
    "CMBertDataCollator": "data_collator",
    "CMBertFeatureExtractor": "feature_extraction_cmbert",
    "CMBertForSequenceClassification": "modeling_cmbert",
    "CMBertModel": "modeling_cmbert",
    "CMBertPreTrainedModel": "modeling_cmbert",
    "CMBertProcessor": "processing_cmbert",
    "CMBertSentimentPipeline": "pipeline_cmbert",
    "PIPELINE_TASK": "pipeline_cmbert",
    "compute_metrics": "metrics",
    "sentiment_metrics": "metrics",
}
_SOURCE_NAMES = {"PIPELINE_TASK": "TASK"}


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_NAMES[name]}", __name__)
    value = getattr(module, _SOURCE_NAMES.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_NAMES])


_registered = False


def register_auto_classes() -> None:
    """Teaches the Auto classes and the pipeline registry `cmbert` (in-process use, without remote code), and marks
    the classes for remote code: `save_pretrained`/`push_to_hub` ship the model files with an `auto_map`."""
    global _registered
    if _registered:
        return
    from transformers import (
        AutoConfig,
        AutoFeatureExtractor,
        AutoModel,
        AutoModelForSequenceClassification,
        AutoProcessor,
    )
    from transformers.pipelines import PIPELINE_REGISTRY

    try:
        from .configuration_cmbert import CMBertConfig
        from .feature_extraction_cmbert import CMBertFeatureExtractor
        from .modeling_cmbert import CMBertForSequenceClassification, CMBertModel
        from .pipeline_cmbert import TASK, CMBertSentimentPipeline
        from .processing_cmbert import CMBertProcessor
    except ImportError:
        # transformers was imported by one of these modules, still half-initialised: the import hook
        # (`_RegisterAfterTransformers`) tries again once it is complete. Nothing is registered yet.
        return
    if _registered:  # by the retry after one of these imports (`_RegisterAfterTransformers`)
        return
    _registered = True

    AutoConfig.register("cmbert", CMBertConfig)
    AutoModel.register(CMBertConfig, CMBertModel)
    AutoModelForSequenceClassification.register(CMBertConfig, CMBertForSequenceClassification)
    AutoFeatureExtractor.register(CMBertConfig, CMBertFeatureExtractor)
    AutoProcessor.register(CMBertConfig, CMBertProcessor)
    CMBertConfig.register_for_auto_class()
    CMBertModel.register_for_auto_class("AutoModel")
    CMBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    CMBertFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
    CMBertProcessor.register_for_auto_class("AutoProcessor")
    # `pipeline("multimodal-sentiment-analysis", model=model, processor=processor)`. Saved folders name the pipeline
    # in `custom_pipelines` (modeling_cmbert.py), which transformers loads only with `trust_remote_code=True` or an
    # explicit `pipeline_class=CMBertSentimentPipeline`.
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=CMBertSentimentPipeline, pt_model=AutoModelForSequenceClassification, type="multimodal"
    )


# The modules whose classes are registered: an import of transformers from inside one of them cannot register (the
# module is half-initialised), so registration is tried again when each of them has finished loading.
_REGISTERED_MODULES = {
    f"{__name__}.{module}"
    for module in (
        "configuration_cmbert", "feature_extraction_cmbert", "modeling_cmbert", "pipeline_cmbert", "processing_cmbert",
    )
}  # fmt: skip


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Registers the Auto classes as soon as both transformers and the classes can be imported: registration needs
    torch and transformers, which a process that only asks `cmbert --help` should not pay for. Tries after
    transformers is imported, and after each of `_REGISTERED_MODULES` is; leaves `sys.meta_path` once registered."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "transformers" and fullname not in _REGISTERED_MODULES:
            return None
        for finder in sys.meta_path:  # the finders after this one find the module itself
            spec = None if finder is self else finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                register_auto_classes()
                if _registered and self in sys.meta_path:
                    sys.meta_path.remove(self)

            spec.loader.exec_module = exec_module
        return spec


if "transformers" in sys.modules:
    register_auto_classes()
else:
    sys.meta_path.insert(0, _RegisterAfterTransformers())

__all__ = [*_NAMES, "register_auto_classes"]
