"""End-to-end training throughput on the real MOSI length distribution: padding and batching strategies.

    python bench/bench_mosi.py --backbone minilm   # ~2-3 min on 2 CPUs

Configurations (each: collate + forward + backward + AdamW step, batch 24, frozen embeddings):
  original        the original computation, fixed padding to 50, shuffled batches
  cmbert_fixed50  CM-BERT, fixed padding to 50, shuffled
  cmbert_dynamic  CM-BERT, `CMBertDataCollator` dynamic padding, shuffled (train.py's default)
  cmbert_grouped  CM-BERT, dynamic padding + length-grouped batches (Trainer's group_by_length sampler)
  bert_grouped    BertForSequenceClassification, dynamic + grouped (the text-only floor)
Each round builds each configuration's epoch (seeded per round) and runs the same randomly chosen
batch positions of it, so the sample is an unbiased fraction of an epoch (grouped epochs start with
their longest batch; a prefix would not be). Throughput = samples / wall time.
"""

import statistics

import torch
from transformers.trainer_pt_utils import get_length_grouped_indices

import _common as c


def epoch_batches(lengths, batch_size, grouped, generator):
    """Index batches of one epoch: a plain shuffle, or exactly what Trainer's `train_sampling_strategy=
    "group_by_length"` draws (megabatches of min(50, N // 4B) batches, each sorted by length, longest first)."""
    if grouped:
        order = get_length_grouped_indices(lengths, batch_size, generator=generator)
    else:
        order = torch.randperm(len(lengths), generator=generator).tolist()
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


def main():
    p = c.parser(__doc__)
    p.add_argument("--batches", type=int, default=3, help="Batches per configuration per round.")
    args = p.parse_args()
    c.setup(args)
    _, _, Collator = c.import_cmbert()
    samples = c.mosi_samples(c.BACKBONES[args.backbone]["vocab_size"])
    lengths = [len(s["input_ids"]) for s in samples]
    models = c.maybe_compile(c.build_models(args.backbone, args.device, ("cmbert", "bert", "original")), args)
    opts = {n: torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=2e-5) for n, m in models.items()}
    configs = {  # name: (model, padded length or None for dynamic, grouped)
        "original": ("original", args.seq_len, False),
        "cmbert_fixed50": ("cmbert", args.seq_len, False),
        "cmbert_dynamic": ("cmbert", None, False),
        "cmbert_grouped": ("cmbert", None, True),
        "bert_grouped": ("bert", None, True),
    }
    picked = {}  # per round: configuration -> batches to run

    def runner(name):
        model_name, length, _ = configs[name]
        model, opt, collate = models[model_name], opts[model_name], Collator(max_length=length)

        def run():
            for idx in picked[name]:
                batch = c.to_device(collate([samples[i] for i in idx]), args.device, text_only=model_name == "bert")
                c.train_step(model, opt, batch, args.device)()
        return run

    fns = {n: runner(n) for n in configs}
    g = torch.Generator().manual_seed(0)
    for m in models.values():
        m.train()
    for n, (_, _, grouped) in configs.items():  # warm-up: one long batch each
        picked[n] = [sorted(range(len(lengths)), key=lambda i: -lengths[i])[:args.batch_size]]
        fns[n]()
    times, padded, real = {n: [] for n in configs}, {n: 0 for n in configs}, {n: 0 for n in configs}
    for r in range(args.repeats):
        g.manual_seed(r)
        n_batches = len(lengths) // args.batch_size  # full batches only
        positions = torch.randperm(n_batches, generator=g)[:args.batches].tolist()
        for n, (_, length, grouped) in configs.items():
            picked[n] = [epoch_batches(lengths, args.batch_size, grouped, torch.Generator().manual_seed(r))[k]
                         for k in positions]
            padded[n] += sum(length or max(lengths[i] for i in b) for b in picked[n]) * args.batch_size
            real[n] += sum(lengths[i] for b in picked[n] for i in b)
        round_times = c.interleaved(fns, 1, 1, args.device) if r % 2 == 0 else \
            c.interleaved(dict(reversed(list(fns.items()))), 1, 1, args.device)
        for n in configs:
            times[n].append(round_times[n][0] / (args.batches * args.batch_size))  # seconds per sample
    sps = {n: round(1 / statistics.median(v), 1) for n, v in times.items()}
    speedup = {n: 1 / c.paired_ratio(times, n, "original") for n in configs}
    pad_frac = {n: 1 - real[n] / padded[n] for n in configs}  # share of the positions computed that are padding
    print(f"MOSI train epoch fraction, backbone={args.backbone}, batch={args.batch_size}, device={args.device}, "
          f"threads={torch.get_num_threads()}, {args.repeats} rounds x {args.batches} batches, "
          f"mean length {statistics.mean(lengths):.1f} (max {max(lengths)})")
    rows = [(n, sps[n], c.fmt_ratio(speedup[n]), f"{pad_frac[n]:.2f}") for n in configs]
    print(c.table(rows, ("config", "samples/s", "x original", "padding")))
    cm_over_bert = c.paired_ratio(times, "cmbert_grouped", "bert_grouped")
    print(f"cmbert_grouped / bert_grouped time per sample: {cm_over_bert:.3f}")
    path = c.write_json("mosi", args, dict(samples_per_s=sps, speedup_over_original=speedup, padding_fraction=pad_frac,
                                           cmbert_over_bert_grouped_time=cm_over_bert,
                                           mean_length=statistics.mean(lengths)))
    print("wrote", path)


if __name__ == "__main__":
    main()
