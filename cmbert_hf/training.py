"""The CM-BERT training recipe (spec, "Training recipe") as Trainer parts.

Parameter groups come from the model's structure, not from name substrings:
- `fusion`: the fusion layer's weights (projections, `w_t`, `w_a`, dense and LayerNorm weights) at the
  fusion learning rate (`CMBertTrainingArguments.fusion_learning_rate`) with weight decay;
- `no_decay`: every bias (the fusion scalar `b` included) and the encoder's LayerNorm weights, at the base
  learning rate without weight decay;
- `decay`: all other trainable weights (encoder, head) at the base learning rate with weight decay.
Frozen parameters (the embeddings; the head too in the original code) are in no group.
"""

import torch
from torch import nn
from transformers import Trainer

from .modeling_cmbert import CMBertForSequenceClassification
from .training_args import CMBertTrainingArguments


def freeze(
    model: CMBertForSequenceClassification, embeddings: bool = True, head: bool = False, audio: bool = False
) -> None:
    """Freezes the word-piece embeddings (the paper), the head (the original code's oversight) and, for a
    text-only model, the audio path: `w_a = 0` so that the saved model ignores any audio it is later given."""
    frozen = ([model.bert.embeddings] if embeddings else []) + ([model.classifier] if head else [])
    if audio:
        attention = model.fusion.attention
        with torch.no_grad():
            attention.w_a.zero_()
        frozen += [attention.audio_proj]
        attention.w_a.requires_grad_(False)
    for module in frozen:
        module.requires_grad_(False)


def parameter_groups(model: CMBertForSequenceClassification) -> dict[str, list[nn.Parameter]]:
    """Every trainable parameter in exactly one of `fusion`, `no_decay`, `decay`."""
    fusion_modules = set(model.fusion.modules())
    scalar_bias = model.fusion.attention.b
    groups = {"fusion": [], "no_decay": [], "decay": []}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if name == "bias" or param is scalar_bias:
                groups["no_decay"].append(param)
            elif module in fusion_modules:
                groups["fusion"].append(param)
            elif isinstance(module, nn.LayerNorm):
                groups["no_decay"].append(param)
            else:
                groups["decay"].append(param)
    return groups


class CMBertTrainer(Trainer):
    """A `Trainer` whose optimiser uses the recipe's parameter groups and the fusion learning rate of its
    `CMBertTrainingArguments` (a trial of a search sets it as any other training argument)."""

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            if not isinstance(self.args, CMBertTrainingArguments):
                raise TypeError(f"CMBertTrainer needs CMBertTrainingArguments (they hold the fusion learning rate), "
                                f"got {type(self.args).__name__}.")
            groups = parameter_groups(self.model if model is None else model)
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args)
            self.optimizer = optimizer_cls(
                [
                    {"params": groups["fusion"], "lr": self.args.fusion_learning_rate, "weight_decay": self.args.weight_decay,
                     "name": "fusion"},
                    {"params": groups["no_decay"], "weight_decay": 0.0, "name": "no_decay"},
                    {"params": groups["decay"], "weight_decay": self.args.weight_decay, "name": "decay"},
                ],
                **optimizer_kwargs,
            )
        return self.optimizer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Logs the base (encoder) learning rate as `learning_rate` and the fusion layer's as
        `learning_rate_fusion`; the Trainer would log only the first group's, which is the fusion layer's."""
        if "learning_rate" in logs and self.optimizer is not None:
            rates = {group.get("name"): group["lr"] for group in self.optimizer.param_groups}
            if {"decay", "fusion"} <= rates.keys():  # the groups of create_optimizer (not a wrapper's)
                logs["learning_rate"], logs["learning_rate_fusion"] = rates["decay"], rates["fusion"]
        super().log(logs, start_time)


__all__ = ["CMBertTrainer", "freeze", "parameter_groups"]
