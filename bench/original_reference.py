"""The ORIGINAL CM-BERT computation (thuiar/Cross-Modal-BERT), rebuilt from the spec as a speed baseline.

Kept deliberately as the authors wrote it, costs included (spec: ../../shared/spec/cm-bert.md):
eager attention in fp32; BERT's pooler and its dropout run and thrown away; the projections as
kernel-1 `nn.Conv1d` over transposed tensors; the whole-batch norm of `T` taken on the host through
numpy every step (a device-to-host copy and sync on a GPU); unscaled audio; the mask added along both
axes; `ReLU(W_f)` computed for visualisation; loss `0.5 * (y_hat - y)^2`. Inputs are expected padded
to the original's fixed 50 (the benchmarks do this).
"""

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from transformers import BertModel


class OriginalCMBert(nn.Module):
    original_fp32 = True  # the benchmarks run it without autocast

    def __init__(self, bert_config, bert_path=None, fusion_dim: int = 30, audio_feature_size: int = 5):
        super().__init__()
        if bert_path:
            self.bert = BertModel.from_pretrained(bert_path, attn_implementation="eager")  # pooler included
        else:
            bert_config._attn_implementation = "eager"
            self.bert = BertModel(bert_config)
        config = self.bert.config
        h = config.hidden_size
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.proj_t = nn.Conv1d(h, fusion_dim, kernel_size=1, bias=False)
        self.proj_a = nn.Conv1d(audio_feature_size, fusion_dim, kernel_size=1, bias=False)
        self.weight_t = nn.Parameter(torch.ones(1))
        self.weight_a = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.attention_dropout = nn.Dropout(0.3)
        self.dense = nn.Linear(h, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(h, 1)
        for layer in (self.dense, self.classifier):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, input_ids, attention_mask, token_type_ids, audio_features, labels=None):
        out = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        text, pooled = out.last_hidden_state, out.pooler_output  # [B, L, H], [B, H]
        pooled = self.dropout(pooled)  # computed and discarded, as in the original
        t = self.proj_t(text.transpose(1, 2)).transpose(1, 2)  # [B, L, d]
        # The original's norm: to the host, numpy, back (a sync per step on a GPU; no gradient through it).
        norm = np.linalg.norm(t.reshape(-1).detach().cpu().numpy(), ord=2)
        t = t / float(np.sqrt(norm))
        a = self.proj_a(audio_features.transpose(1, 2)).transpose(1, 2)  # [B, L, d], unscaled
        alpha = torch.relu(t @ t.transpose(1, 2))  # [B, L, L]
        beta = torch.relu(a @ a.transpose(1, 2))
        fusion = self.weight_t * alpha + self.weight_a * beta + self.bias
        fusion_vis = torch.relu(fusion)  # returned for visualisation only  # noqa: F841
        mask = (1.0 - attention_mask.to(fusion.dtype)) * -10000.0  # [B, L]
        fusion = fusion + mask[:, None, :] + mask[:, :, None]
        weights = self.attention_dropout(torch.softmax(fusion, dim=-1))
        fused = weights @ text + text
        fused = self.LayerNorm(self.dropout(self.dense(fused)))
        logits = self.classifier(self.dropout(fused[:, 0]))  # [B, 1]
        loss = None if labels is None else (0.5 * (logits.view(-1) - labels.view(-1)) ** 2).mean()
        return SimpleNamespace(loss=loss, logits=logits)


if __name__ == "__main__":
    # Self-check: in eval mode the reference equals CM-BERT's "original" setting given the same weights
    # (so the speed baseline computes the same function): python bench/original_reference.py
    import _common as c

    CMBertConfig, modeling, Collator = c.import_cmbert()
    bert_config = c.bert_config("tiny")
    ref = OriginalCMBert(bert_config).eval()
    config = CMBertConfig.original(text_config=c.bert_config("tiny"), num_labels=1, attn_implementation="eager")
    ours = modeling.CMBertForSequenceClassification(config).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("bert.pooler")}
    rename = {"proj_t": "fusion.attention.text_proj", "proj_a": "fusion.attention.audio_proj",
              "weight_t": "fusion.attention.w_t", "weight_a": "fusion.attention.w_a", "bias": "fusion.attention.b",
              "dense": "fusion.dense", "LayerNorm": "fusion.LayerNorm"}
    mapped = {}
    for k, v in state.items():
        head, _, rest = k.partition(".")
        mapped[(rename[head] + ("." + rest if rest else "")) if head in rename else k] = v.squeeze(-1) if v.dim() == 3 else v
    ours.load_state_dict(mapped, strict=True)
    batch = c.fixed_batch(c.mosi_samples(bert_config.vocab_size), 8, 50)
    with torch.no_grad():
        a, b = ref(**batch).logits, ours(**batch).logits
    print("max |reference - CMBertConfig.original()| =", (a - b).abs().max().item())
    assert torch.allclose(a, b, atol=1e-5), (a, b)
