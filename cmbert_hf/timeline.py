"""A sentiment timeline of a whole recording or video: scored utterances written as a table, drawn over time.

The pipeline (`pipe({"audio": path})`) transcribes and scores; this module writes its rows, all or nothing: the
table is written beside its destination and renamed into place only once every utterance is scored.
"""

import json
import os
import tempfile
import textwrap
from pathlib import Path

TIMELINE_FORMATS = (".jsonl", ".csv", ".parquet")
COLUMNS = ("start", "end", "text", "score", "label", "polarity")


def checked_suffix(path, formats=TIMELINE_FORMATS) -> str:
    """The suffix of an output path, or a `ValueError` naming the path and the suffixes allowed."""
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        raise ValueError(f"{path}: expected a file ending in {' or '.join(formats)}")
    return suffix


def write_timeline(rows: list[dict], path) -> None:
    """Writes the rows (`COLUMNS`) to `path` as JSON lines, CSV or Parquet by its suffix; atomically."""
    import pandas as pd

    suffix = checked_suffix(path)
    table = pd.DataFrame([{key: row[key] for key in COLUMNS} for row in rows], columns=list(COLUMNS))
    if suffix == ".jsonl":
        records = table.to_dict("records")
        _write_atomically(path, lambda staging: Path(staging).write_text("".join(json.dumps(r) + "\n" for r in records)))
    elif suffix == ".csv":
        _write_atomically(path, lambda staging: table.to_csv(staging, index=False))
    else:
        _write_atomically(path, lambda staging: table.to_parquet(staging, index=False))


def _write_atomically(path, write) -> None:
    """`write(staging)` on a file beside `path`, then renamed to `path`: a failure leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        write(staging)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def timeline_figure(rows: list[dict], title: str = ""):
    """Sentiment over time: each utterance a horizontal bar at its score from `start` to `end`, its text written
    above it (wrapped), on the [-3, 3] scale with the positive and negative halves shaded."""
    from matplotlib.figure import Figure

    duration = max([row["end"] for row in rows], default=1.0)
    figure = Figure(figsize=(min(4 + duration / 4, 40), 5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.axhspan(0, 3.3, color="tab:green", alpha=0.06)
    axes.axhspan(-3.3, 0, color="tab:red", alpha=0.06)
    axes.axhline(0, color="grey", linewidth=0.8)
    for row in rows:
        color = "tab:green" if row["score"] >= 0 else "tab:red"
        axes.plot([row["start"], row["end"]], [row["score"]] * 2, color=color, linewidth=4, solid_capstyle="butt")
        # Text above positive bars and below negative ones keeps it inside the axes.
        above = row["score"] < 2
        axes.annotate(
            textwrap.fill(row["text"], 24), ((row["start"] + row["end"]) / 2, row["score"]),
            xytext=(0, 8 if above else -8), textcoords="offset points", ha="center",
            va="bottom" if above else "top", fontsize=8,
        )  # fmt: skip
    # Room on the right for the last utterance's text, which is centred on its bar.
    axes.set(xlim=(0, duration + 1.5), ylim=(-3.3, 3.3), xlabel="time (s)", ylabel="sentiment score", title=title)
    return figure


def predict_timeline(args) -> None:
    """`cmbert predict --audio FILE` without `--text`: the file's utterances scored, written to `--output` (JSON
    lines on stdout without it) and drawn to `--plot`. Nothing is written unless the whole file was processed."""
    import sys

    from .cli import CLIError, load_pipeline
    from .transcription_cmbert import check_audio_file

    if args.timings or args.features:
        raise CLIError("--timings and --features go with --text; without it the audio is transcribed")
    for path, formats in ((args.output, TIMELINE_FORMATS), (args.plot, (".png",))):
        if path is not None:
            checked_suffix(path, formats)  # before the work, not after
    check_audio_file(args.audio)  # before the models load
    pipe = load_pipeline(args.model, args.trust_remote_code)
    rows = []
    for row in pipe.timeline(args.audio, args.asr_model):
        rows.append(row)
        print(f"{row['start']:8.2f}-{row['end']:.2f} s  {row['score']:+.2f}  {row['text']}", file=sys.stderr)
    if not rows:
        print(f"{args.audio}: no speech found; the timeline is empty", file=sys.stderr)
    if args.output is None:
        for row in rows:
            print(json.dumps({key: row[key] for key in COLUMNS}))
    else:
        write_timeline(rows, args.output)
        print(f"wrote {len(rows)} utterances to {args.output}", file=sys.stderr)
    if args.plot is not None:
        figure = timeline_figure(rows, title=Path(args.audio).name)
        _write_atomically(args.plot, figure.savefig)
        print(f"wrote {args.plot}", file=sys.stderr)


__all__ = ["TIMELINE_FORMATS", "checked_suffix", "predict_timeline", "timeline_figure", "write_timeline"]
