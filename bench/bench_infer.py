"""Inference latency at batch 1 and batch 32: CM-BERT vs BertForSequenceClassification vs the original.

    python bench/bench_infer.py --backbone minilm     # ~1-2 min on 2 CPUs
    python bench/bench_infer.py --backbone minilm --compile   # on CUDA

Eval mode under `torch.inference_mode()`, inputs padded to --seq-len (50), the same utterances for every model.
Latency = wall time of one forward call (host to logits), median over interleaved rounds.
"""

import torch

import _common as c


def main():
    p = c.parser(__doc__)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--calls", type=int, default=10, help="Forward calls per model per round (batch 1; fewer at 32).")
    args = p.parse_args()
    c.setup(args)
    models = c.build_models(args.backbone, args.device, ("cmbert", "bert", "original"))
    for m in models.values():
        m.eval()
    models = c.maybe_compile(models, args)
    samples = c.mosi_samples(c.BACKBONES[args.backbone]["vocab_size"])
    results, lines = {}, []
    for bs in args.batch_sizes:
        batch = c.fixed_batch(samples, bs, args.seq_len, seed=bs)
        batch.pop("labels")
        fns = {}
        for name, m in models.items():
            inputs = c.to_device(batch, args.device, text_only=name == "bert")

            def fn(m=m, inputs=inputs):
                with torch.inference_mode(), c.autocast(args.device, m):
                    return m(**inputs).logits

            for _ in range(3):  # warm-up (and compilation for each shape)
                fn()
            fns[name] = fn
        calls = max(1, args.calls // (1 if bs == 1 else 4))
        times = c.interleaved(fns, args.repeats, calls, args.device)
        ms = c.median_ms(times)
        ratios = {n: c.paired_ratio(times, n, "bert") for n in models}
        mins = {n: c.min_ratio(times, n, "bert") for n in models}
        results[f"b{bs}"] = dict(ms=ms, over_bert=ratios, over_bert_min=mins)
        lines += [(f"b{bs}", n, ms[n], c.fmt_ratio(ratios[n]), c.fmt_ratio(mins[n])) for n in models]
    print(f"inference latency, backbone={args.backbone}, seq_len={args.seq_len}, device={args.device}, "
          f"threads={torch.get_num_threads()}, rounds={args.repeats}")
    print(c.table(lines, ("batch", "model", "ms", "time/bert", "min/min")))
    path = c.write_json("infer", args, dict(latency=results))
    print("wrote", path)


if __name__ == "__main__":
    main()
