"""Dynamic padding for CM-BERT batches: text and aligned audio padded to the longest sample."""

from dataclasses import dataclass

import torch

TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class CMBertDataCollator:
    """Pads `input_ids`, `attention_mask`, `token_type_ids` and `audio_features` [L, D_a] per batch.

    Args:
        pad_token_id (`int`, *optional*, defaults to 0):
            Filler for `input_ids` (BERT's `[PAD]`).
        pad_to_multiple_of (`int`, *optional*):
            Rounds the padded length up, e.g. to 8 for tensor cores.
        max_length (`int`, *optional*):
            Pads every batch to exactly this length (the original's fixed 50) instead of the longest sample.
    """

    pad_token_id: int = 0
    pad_to_multiple_of: int | None = None
    max_length: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        lengths = [len(f["input_ids"]) for f in features]
        length = self.max_length or max(lengths)
        if max(lengths) > length:
            raise ValueError(f"a sample has {max(lengths)} tokens, more than max_length={length}.")
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {}
        for key in TEXT_KEYS:
            if key in features[0]:
                fill = self.pad_token_id if key == "input_ids" else 0
                batch[key] = torch.full((len(features), length), fill, dtype=torch.long)
                for row, f in zip(batch[key], features):
                    row[: len(f[key])] = torch.as_tensor(f[key])
        if "attention_mask" not in batch:
            raise ValueError("every sample needs an `attention_mask` (the processor makes one): without it the "
                             "model would attend to the padding.")
        if any(f.get("audio_features") is not None for f in features):
            batch["audio_features"] = self._pad_audio(features, lengths, length)
        label_key = "labels" if "labels" in features[0] else "label" if "label" in features[0] else None
        if label_key is not None:
            labels = torch.as_tensor([f[label_key] for f in features])
            batch["labels"] = labels.float() if labels.is_floating_point() else labels
        return batch

    @staticmethod
    def _pad_audio(features: list[dict], lengths: list[int], length: int) -> torch.Tensor:
        audio = []
        for i, (f, n) in enumerate(zip(features, lengths)):
            if f.get("audio_features") is None:
                raise ValueError(f"sample {i} of the batch has no `audio_features` while others have.")
            a = torch.as_tensor(f["audio_features"], dtype=torch.float32)
            width = audio[0].shape[-1] if audio else a.shape[-1]
            if a.ndim != 2 or a.shape != (n, width):
                raise ValueError(f"`audio_features` of sample {i} must have shape ({n}, {width}) (one row per "
                                 f"input id, the batch's width), got {tuple(a.shape)}.")
            audio.append(a)
        padded = torch.zeros(len(features), length, audio[0].shape[-1])
        for row, a in zip(padded, audio):
            row[: len(a)] = a
        return padded


__all__ = ["CMBertDataCollator"]
