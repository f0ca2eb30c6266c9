"""Self-check: in eval mode the original reference (original_reference.py) equals CM-BERT's "original" setting
given the same weights, so the speed baseline computes the same function. Prints one line.

    python bench/reference_check.py
"""

import torch

import _common as c
from original_reference import OriginalCMBert


def main():
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

if __name__ == "__main__":
    main()
