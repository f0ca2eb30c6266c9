"""Sentiment metrics of CMU-MOSI papers, with numpy and scikit-learn only.

Conventions (../shared/spec/cm-bert.md, "Metrics"): MAE, Pearson Corr, Acc7 on rounded scores, and
binary accuracy / weighted F1 three ways: `has0` (positive = >= 0, all samples),
`non0` (zero labels dropped, positive = > 0) and `original` (positive = > 0, all samples, F1 with
truth and prediction swapped as the CM-BERT code scored it). Accuracies and F1 are percentages.

Every metric scores the model's *score*: its regression output as it is, the value the pipeline and
`cmbert predict` report; only Acc7 clips it to the label range [-3, 3] before rounding, as the spec and the CM-BERT
and MMSA scoring code do, so MAE and Corr compare with published figures. Training, `cmbert evaluate` and the
model card all go through `sentiment_metrics`, so they agree.
"""

import numpy as np
from sklearn.metrics import f1_score

from .configuration_cmbert import sentiment_class


def _binary(pred_pos: np.ndarray, true_pos: np.ndarray, swap_f1: bool = False) -> tuple[float, float]:
    if pred_pos.size == 0:  # `non0` of a subset whose labels are all 0: nothing to score
        return float("nan"), float("nan")
    acc = float(np.mean(pred_pos == true_pos) * 100)
    f1 = f1_score(pred_pos, true_pos, average="weighted") if swap_f1 else f1_score(true_pos, pred_pos, average="weighted")
    return acc, float(f1 * 100)


def sentiment_metrics(predictions, labels) -> dict[str, float]:
    """All metrics of the spec for model scores `predictions` and `labels` (array-likes; labels in [-3, 3])."""
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape or p.size == 0:
        raise ValueError(f"predictions and labels must be non-empty and of one length, got {p.size} and {y.size}.")
    for name, values in (("predictions", p), ("labels", y)):
        if not np.isfinite(values).all():
            raise ValueError(f"{name} hold NaN or inf at index {int(np.flatnonzero(~np.isfinite(values))[0])}.")
    # np.round rounds halves to even, as the original scoring code (numpy) did: 2.5 -> 2, -0.5 -> -0.
    acc7 = float(np.mean(sentiment_class(p) == sentiment_class(y)) * 100)
    corr = float(np.corrcoef(p, y)[0, 1]) if p.std() > 0 and y.std() > 0 else float("nan")
    metrics = {"mae": float(np.mean(np.abs(p - y))), "corr": corr, "acc7": acc7}
    metrics["acc2_has0"], metrics["f1_has0"] = _binary(p >= 0, y >= 0)
    nonzero = y != 0
    metrics["acc2_non0"], metrics["f1_non0"] = _binary(p[nonzero] > 0, y[nonzero] > 0)
    metrics["acc2_original"], metrics["f1_original"] = _binary(p > 0, y > 0, swap_f1=True)
    return metrics


def compute_metrics(eval_pred) -> dict[str, float]:
    """`Trainer` hook: regression logits `[N, 1]` against float labels."""
    predictions, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(predictions, tuple):  # extra outputs (attention maps) follow the logits
        predictions = predictions[0]
    return sentiment_metrics(predictions, labels)


TIMING = ("_runtime", "_per_second", "_epoch")


def summarize(per_seed: dict[int, dict]) -> dict:
    """Mean and standard deviation over seeds of every test metric (loss and `sentiment_metrics`)."""
    names = [n for n in next(iter(per_seed.values()))["test"] if not n.endswith(TIMING)]
    values = {name: [run["test"][name] for run in per_seed.values()] for name in names}
    return {name: {"mean": float(np.mean(v)), "std": float(np.std(v))} for name, v in values.items()}


def markdown_table(per_seed: dict[int, dict], summary: dict | None = None) -> str:
    """The test metrics of each seed's run as a markdown table, with a mean ± std row when `summary` is given."""
    names = [n for n in next(iter(per_seed.values()))["test"] if not n.endswith(TIMING)]
    lines = ["| seed | " + " | ".join(n.removeprefix("test_") for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for seed, run_metrics in per_seed.items():
        lines.append(f"| {seed} | " + " | ".join(f"{run_metrics['test'][n]:.3f}" for n in names) + " |")
    if summary is not None:
        spread = (f"{summary[n]['mean']:.3f} ± {summary[n]['std']:.3f}" for n in names)
        lines.append("| mean ± std | " + " | ".join(spread) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["compute_metrics", "markdown_table", "sentiment_metrics", "summarize"]
