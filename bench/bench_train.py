"""Training step time and peak memory: CM-BERT vs BertForSequenceClassification vs the original computation.

    python bench/bench_train.py --backbone minilm          # the recipe: batch 24, padded to 50 (~2-3 min, 2 CPUs)
    python bench/bench_train.py --backbone tiny --repeats 3
    python bench/bench_train.py --backbone minilm --compile # on CUDA

All models see the same batch (random MOSI utterances, padded to --seq-len like the original) and train
with AdamW and frozen embeddings.
"""

import statistics

import torch

import _common as c


def main():
    p = c.parser(__doc__)
    p.add_argument("--steps", type=int, default=1,
                   help="Optimiser steps per model per round (1: models alternate step by step, the tightest pairing).")
    p.add_argument("--models", nargs="+", default=["cmbert", "bert", "original"],
                   help="Subset to run (bert is the reference of every ratio and is always run).")
    p.set_defaults(repeats=15)  # one step per round: more rounds for the same time, tighter medians
    args = p.parse_args()
    c.setup(args)
    names = ["bert"] + [n for n in args.models if n != "bert"]
    models = c.build_models(args.backbone, args.device, names)
    models = c.maybe_compile(models, args)
    batch = c.fixed_batch(c.mosi_samples(c.BACKBONES[args.backbone]["vocab_size"]), args.batch_size, args.seq_len)
    steps, opts, batches = {}, {}, {}
    for name, m in models.items():
        m.train()
        opts[name] = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=2e-5)
        batches[name] = c.to_device(batch, args.device, text_only=name == "bert")
        steps[name] = c.train_step(m, opts[name], batches[name], args.device)
        for _ in range(2 if not args.compile else 4):  # warm-up: allocator, optimizer state, compilation
            steps[name]()
    times = c.interleaved(steps, args.repeats, args.steps, args.device)
    peak = {n: c.peak_memory(steps[n], models[n], opts[n], batches[n], args.device) for n in models}

    ms = c.median_ms(times)
    rows = [(n, ms[n], round(args.batch_size / statistics.median(times[n]), 1), round(peak[n] / 2**20, 1),
             c.fmt_ratio(c.paired_ratio(times, n, "bert")), c.fmt_ratio(c.min_ratio(times, n, "bert")),
             c.fmt_ratio(peak[n] / peak["bert"])) for n in models]
    print(f"train step, backbone={args.backbone}, batch={args.batch_size}x{args.seq_len}, device={args.device}, "
          f"threads={torch.get_num_threads()}, rounds={args.repeats}x{args.steps} steps")
    print(c.table(rows, ("model", "ms/step", "samples/s", "peak MiB", "time/bert", "min/min", "peak/bert")))
    ratios = {f"{a}_over_{b}_step_time": c.paired_ratio(times, a, b)
              for a, b in [("cmbert", "bert"), ("original", "cmbert")] if a in models and b in models}
    ratios.update({f"{a}_over_bert_step_time_min": c.min_ratio(times, a, "bert") for a in models if a != "bert"})
    ratios.update({f"{a}_over_bert_peak_memory": peak[a] / peak["bert"] for a in ("cmbert",) if a in models})
    for k, v in ratios.items():
        print(f"{k:38s} {v:.3f}")
    path = c.write_json("train", args, dict(ms_per_step=ms, peak_mib={n: round(v / 2**20, 1) for n, v in peak.items()},
                                            ratios=ratios))
    print("wrote", path)


if __name__ == "__main__":
    main()
