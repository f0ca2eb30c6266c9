"""CUDA only: does a CM-BERT training step force a host-device synchronisation?

    python bench/sync_check.py --backbone minilm

Runs forward, backward and the AdamW step of a warm CM-BERT model, each under
`torch.cuda.set_sync_debug_mode("error")`, which raises on any call that blocks the host on the GPU
(`.item()`, `.cpu()`, `nonzero`, a data-dependent `if`, ...). The loss is read (`.item()`) only after
the check. Controls: the original reference must fail (its numpy norm), which shows the check bites;
BertForSequenceClassification given a 2-D padding mask is reported for information.
"""

import torch

import _common as c


def phases(model, opt, batch, device):
    """Names the first phase that synchronises, or None."""
    phase = "forward"
    try:
        torch.cuda.set_sync_debug_mode("error")
        with c.autocast(device, model):
            loss = model(**batch).loss
        phase = "backward"
        loss.backward()
        phase = "optimizer.step"
        opt.step()
        opt.zero_grad(set_to_none=True)
        return None, loss
    except RuntimeError as e:
        return f"{phase}: {str(e).splitlines()[0][:160]}", None
    finally:
        torch.cuda.set_sync_debug_mode(0)


def main():
    args = c.parser(__doc__).parse_args()
    assert args.device.startswith("cuda"), "needs a GPU"
    c.setup(args)
    models = c.build_models(args.backbone, args.device)
    batch = c.fixed_batch(c.mosi_samples(c.BACKBONES[args.backbone]["vocab_size"]), args.batch_size, args.seq_len)
    report = {}
    for name, m in models.items():
        m.train()
        opt = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=2e-5)
        inputs = c.to_device(batch, args.device, text_only=name == "bert")
        for _ in range(2):  # warm-up: lazy CUDA/cuBLAS init and the optimizer state are allowed to sync
            c.train_step(m, opt, inputs, args.device)()
        torch.cuda.synchronize()
        sync, loss = phases(m, opt, inputs, args.device)
        report[name] = dict(sync_free=sync is None, first_sync=sync,
                            loss=None if loss is None else loss.item())  # .item() outside the check
        print(f"{name:9s} {'sync-free' if sync is None else 'SYNCS in ' + sync}")
    ok = report["cmbert"]["sync_free"] and not report["original"]["sync_free"]
    print("PASS" if ok else "FAIL", "(cmbert sync-free; the original's numpy norm detected)")
    c.write_json("sync", args, dict(report=report, passed=ok))


if __name__ == "__main__":
    main()
