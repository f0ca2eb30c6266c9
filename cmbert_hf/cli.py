"""The `cmbert` command line: train, push a run folder, predict, evaluate and explain with a trained model.

The arguments are parsed first; each command imports what it needs (so `--help` and argument errors are quick).
"""

import argparse
import json
import sys
from pathlib import Path

TABLE_FORMATS = (".tsv", ".parquet")
# One utterance's audio is decoded whole (about 150 MB a minute through feature extraction): longer files are refused
# before decoding. Utterances of CMU-MOSI last seconds.
MAX_AUDIO_SECONDS = 300
BATCH_COLUMNS = """Batch files (.tsv or .parquet) hold one utterance per row: `text` (required) and optionally
`audio` (an audio file), `timings` (a word timings file for that audio) and `features` (a .npy of word-level
features); paths are relative to the input file's folder, empty cells mean none. The output repeats the input
columns and adds `score`, `label` and `polarity`. Word timings files hold one `word<TAB>start_s<TAB>end_s` line per
word, with an optional `word<TAB>start<TAB>end` header."""


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


def _push(args) -> int:
    from .hub import PushError, push_folder
    from .model_card import card_for_repo

    if args.repo_type == "model":
        card_for_repo(args.folder, args.repo_id)  # its usage must load the repo it is pushed to
    try:
        commit = push_folder(
            args.folder, args.repo_id, token=args.token, private=args.private or None, repo_type=args.repo_type
        )
    except PushError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"pushed {args.folder} to {args.repo_id} at revision {commit.oid}")
    return 0


def load_pipeline(model: str, trust_remote_code: bool = False):
    """The sentiment pipeline of a local folder or Hub repo: this package's code, or with `trust_remote_code`
    the folder's or repo's own code for every part (model, processor, pipeline).

    The remote classes are fetched the way the Auto classes fetch them, from the `auto_map` entries, because
    the Auto classes themselves prefer the classes this package registers on import over remote code.
    """
    import torch
    from huggingface_hub.errors import StrictDataclassError
    from safetensors import SafetensorError

    from .hub import check_model_location

    check_model_location(model)
    try:
        pipe = _load_pipeline(model, trust_remote_code)
    except SafetensorError as error:
        raise CLIError(f"{model}: cannot read model.safetensors ({error})") from error
    except StrictDataclassError as error:  # the config's validators: sizes, dropouts, ...
        raise CLIError(f"{model}: invalid config.json ({' '.join(str(error).split())})") from error
    for name, tensor in pipe.model.state_dict().items():
        if not torch.isfinite(tensor).all():
            raise CLIError(f"{model}: the weight {name} holds NaN or inf values; the model folder is damaged")
    return pipe


def _load_pipeline(model: str, trust_remote_code: bool):
    from transformers import AutoConfig, pipeline
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    from transformers.utils import cached_file

    from .pipeline_cmbert import TASK, CMBertSentimentPipeline

    if not trust_remote_code:
        return pipeline(TASK, model=model, pipeline_class=CMBertSentimentPipeline)
    config = AutoConfig.from_pretrained(model, trust_remote_code=True)
    if not getattr(config, "auto_map", None) or TASK not in (getattr(config, "custom_pipelines", None) or {}):
        raise CLIError(f"{model} has no model code of its own (no auto_map in its config.json): run it without "
                       "--trust-remote-code")
    processor_config = json.loads(Path(cached_file(model, "processor_config.json")).read_text())

    def remote(reference: str):
        return get_class_from_dynamic_module(reference, model)

    processor = remote(processor_config["auto_map"]["AutoProcessor"]).from_pretrained(model)
    # The processor resolves its feature extractor by class name, which again finds this package's class.
    extractor = processor_config["feature_extractor"]["auto_map"]["AutoFeatureExtractor"]
    processor.feature_extractor = remote(extractor).from_pretrained(model)
    network = remote(config.auto_map["AutoModelForSequenceClassification"]).from_pretrained(model)
    return remote(config.custom_pipelines[TASK]["impl"])(model=network, processor=processor)


def _existing(path, base: Path | None = None) -> Path:
    path = Path(path) if base is None else base / path
    if not path.is_file():
        raise CLIError(f"file not found: {path}")
    return path


def _check_duration(path: Path) -> None:
    """Refuses audio longer than `MAX_AUDIO_SECONDS` from its header, before decoding it into memory."""
    import soundfile

    try:
        seconds = soundfile.info(str(path)).duration
    except RuntimeError:  # a format libsndfile cannot read (LibsndfileError): the extractor decodes it its own way
        return
    if seconds > MAX_AUDIO_SECONDS:
        raise CLIError(f"{path} lasts {seconds:.0f} s; one utterance may last at most {MAX_AUDIO_SECONDS} s: cut the "
                       "recording into utterances and score them with --input")


def read_timings(path) -> list[tuple[str, float, float]]:
    """Reads a word timings file: one `word<TAB>start_s<TAB>end_s` line per word, optional header."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CLIError(f"{path}: a word timings file must be UTF-8 text ({error})") from error
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    if rows and rows[0] == ["word", "start", "end"]:
        rows = rows[1:]
    try:
        return [(word, float(start), float(end)) for word, start, end in rows]
    except ValueError as error:
        raise CLIError(f"{path}: each line must be word<TAB>start_s<TAB>end_s ({error})") from error


def make_input(text: str, audio=None, timings=None, features=None, base: Path | None = None) -> dict:
    """One pipeline input from the command line's or a batch row's text and optional file paths."""
    if not text or not text.strip():
        raise CLIError("no text: every utterance needs at least one word")
    if timings and not audio:
        raise CLIError(f"word timings {timings} given without the audio they time")
    example = {"text": text}
    if audio:
        example["audio"] = str(_existing(audio, base))
        _check_duration(Path(example["audio"]))
        if timings:
            example["word_timings"] = read_timings(_existing(timings, base))
    if features:
        import numpy as np

        example["audio_features"] = np.load(_existing(features, base))
    return example


def _check_audio(pipe, missing: list[str], args) -> None:
    """Refuses utterances without audio (`missing`: what names them) for a model trained with audio, unless
    --text-only asks to score their text alone: one line naming them and the flag."""
    if not missing:
        return
    from .processing_cmbert import check_audio_given

    try:
        check_audio_given(pipe.model.config.audio_feature_source, False, args.text_only, hint="--text-only")
    except ValueError as error:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CLIError(f"{shown}: {error}") from error


def _has_audio(example: dict) -> bool:
    return "audio" in example or "audio_features" in example


def _table_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise CLIError(f"{path}: batch files must end in {' or '.join(TABLE_FORMATS)}")
    return suffix


def _read_table(path: str):
    import pandas as pd

    if _table_format(path) == ".tsv":
        # Strings throughout: empty cells stay "" (no audio) instead of becoming NaN floats.
        table = pd.read_csv(_existing(path), sep="\t", dtype=str, keep_default_na=False)
    else:
        table = pd.read_parquet(_existing(path))
    if "text" not in table.columns:
        raise CLIError(f"{path} has no `text` column (columns: {list(table.columns)})")
    return table


def _predict_batch(args) -> None:
    from tqdm.auto import tqdm

    _table_format(args.output)  # fail before the work, not after
    table = _read_table(args.input)
    base = Path(args.input).parent
    optional = [c for c in ("audio", "timings", "features") if c in table.columns]
    # Built up front so that a missing file is reported before any prediction runs.
    inputs = []
    for i, row in table.iterrows():
        try:
            inputs.append(make_input(row["text"], **{c: row[c] or None for c in optional}, base=base))
        except CLIError as error:
            raise CLIError(f"{args.input}, row {i}: {error}") from error
    pipe = load_pipeline(args.model, args.trust_remote_code)
    _check_audio(pipe, [f"{args.input}, row {i}" for i, example in enumerate(inputs) if not _has_audio(example)], args)
    pulled = []  # the pipeline preprocesses each input as it pulls it: the last one pulled is the one that failed

    def rows():
        for i, example in enumerate(inputs):
            pulled.append(i)
            yield example

    # A generator makes the pipeline stream results, so the bar moves as they come.
    try:
        scored = pipe(
            rows(), batch_size=args.batch_size, text_only=args.text_only, check_transcript=args.check_transcript
        )
        results = list(tqdm(scored, total=len(inputs), desc="predict"))
    except ValueError as error:
        raise CLIError(f"{args.input}, row {pulled[-1]}: {error}") from error
    for key in ("score", "label", "polarity"):
        table[key] = [result[key] for result in results]
    if _table_format(args.output) == ".tsv":
        table.to_csv(args.output, sep="\t", index=False)
    else:
        table.to_parquet(args.output, index=False)
    with_audio = sum(_has_audio(example) for example in inputs)
    labels = ", ".join(f"{n} {label}" for label, n in table["label"].value_counts().items())
    print(f"wrote {len(table)} predictions to {args.output} ({with_audio} with audio, {len(table) - with_audio} text "
          f"only; {labels})")


def _predict(args) -> None:
    if args.text is None and args.input is None and args.audio is not None:
        from .timeline import predict_timeline

        return predict_timeline(args)
    if args.plot is not None:
        raise CLIError("--plot draws the timeline of --audio without --text")
    if (args.text is None) == (args.input is None):
        raise CLIError("pass either --text (one utterance) or --input with --output (a batch file)")
    if args.input is not None and args.output is None:
        raise CLIError("--input needs --output")
    if args.input is not None and (args.audio or args.timings or args.features):
        raise CLIError("--audio, --timings and --features go with --text; a batch file names them per row")
    if args.input is not None:
        return _predict_batch(args)
    print(json.dumps(_score_one(args)))


def _score_one(args, **options) -> dict:
    """The pipeline's result for the utterance of --text and its files."""
    example = make_input(args.text, args.audio, args.timings, args.features)
    pipe = load_pipeline(args.model, args.trust_remote_code)
    _check_audio(pipe, [] if _has_audio(example) else [repr(args.text)], args)
    return pipe(example, text_only=args.text_only, check_transcript=args.check_transcript, **options)


def _evaluate(args) -> None:
    # `datasets` is imported here because only this command needs it.
    from datasets.exceptions import ManualDownloadError
    from tqdm.auto import tqdm

    from dataset_script import audio_facts, load_mosi
    from dataset_script.mosi import config_options

    from .featurize import alignment_counts, featurize_for_model
    from .hub import check_model_location
    from .metrics import sentiment_metrics

    check_model_location(args.model)  # before the data is prepared
    try:
        options = config_options(args.dataset_options)
    except ValueError as error:
        raise CLIError(f"--dataset-options: {error}") from error
    try:
        split = load_mosi(args.data, data_dir=args.data_dir, cache_dir=args.cache_dir, **options)[args.split]
    except ManualDownloadError as error:  # its first line names the builder's argument, not this command's
        raise CLIError(f"--data {args.data} needs --data-dir: {' '.join(str(error).splitlines()[1:])}") from error
    if args.max_samples is not None:
        split = split.select(range(min(args.max_samples, len(split))))
    pipe = load_pipeline(args.model, args.trust_remote_code)
    level = audio_facts(split)["level"].replace("waveform", "word")  # recordings become one vector per word
    split = featurize_for_model(split, pipe.processor, pipe.model.config, args.timings_column)

    examples = []
    for row in split:
        example = {"text": row["text"]}
        if "audio_features" in row:
            example.update(audio_features=row["audio_features"], audio_level=level)
        examples.append(example)
    without = sum(not _has_audio(example) for example in examples)
    _check_audio(pipe, [f"{without} of the {len(split)} utterances of --data {args.data}"] if without else [], args)
    # A generator makes the pipeline stream results, so the bar moves as they come.
    results = tqdm(pipe((example for example in examples), batch_size=args.batch_size, text_only=args.text_only),
                   total=len(split), desc="evaluate")
    metrics = sentiment_metrics([result["score"] for result in results], split["label"])
    # With --trust-remote-code, classes of the folder's own code (transformers_modules.<folder>...).
    classes = [type(part) for part in (pipe.model, pipe.processor, pipe.processor.feature_extractor)]
    names = ", ".join(f"{c.__module__}.{c.__name__}" for c in classes)
    print(f"{args.data} {args.split}: {len(split)} utterances; {names}")
    counts = alignment_counts({args.split: split})
    if counts:
        print("word timings: " + ", ".join(f"{n} {how}" for how, n in counts.items() if how != "per_split"))
    print("| metric | value |\n|---|---|")
    for name, value in metrics.items():
        print(f"| {name} | {value:.4f} |")


def _explain(args) -> None:
    from .visualization import attention_figure

    attention_figure(_score_one(args, return_attention=True)).savefig(args.out)
    print(f"wrote {args.out}")


def _add_model_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--model", required=True, help="A run folder or a Hub repo id.")
    command.add_argument(
        "--trust-remote-code", action="store_true", help="Run the model repo's own code instead of this package's."
    )
    command.add_argument(
        "--text-only", action="store_true",
        help="Score utterances without audio on their text alone, also with a model trained with audio (which "
        "refuses them otherwise); utterances with audio still use it.",
    )  # fmt: skip


def _add_utterance_arguments(command: argparse.ArgumentParser, text_required: bool) -> None:
    command.add_argument("--text", required=text_required, help="The utterance.")
    command.add_argument("--audio", help="Its audio file (features are extracted from it).")
    command.add_argument("--timings", help="Word timings for --audio (word<TAB>start_s<TAB>end_s lines).")
    command.add_argument("--features", help="Precomputed word-level features, a .npy of shape [n_words, D].")
    command.add_argument(
        "--no-transcript-check", dest="check_transcript", action="store_false",
        help="Take the aligned word spans of --audio as they are, even where the text does not seem to fit the audio "
        "(which is refused otherwise): for a transcript known to be right.",
    )  # fmt: skip


def _user_errors(run):
    """Turns a command into one returning an exit status, with user errors as one line on stderr."""

    def wrapped(args) -> int:
        try:
            run(args)
        except (CLIError, ValueError, OSError) as error:  # OSError: a model folder or repo that cannot be loaded
            print(f"cmbert {args.command}: error: {error}", file=sys.stderr)
            return 1
        return 0

    return wrapped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmbert", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    # Dispatched by `main` before this parser runs: the recipe has its own (`cmbert train --help`).
    commands.add_parser("train", help="Train a model: the recipe of train.py (`cmbert train --help`).", add_help=False)
    push = commands.add_parser("push", help="Push a finished run folder (train.py's output_dir) to the Hub.")
    push.add_argument("folder")
    push.add_argument("--repo-id", required=True, help="NAMESPACE/NAME on the Hub (HF_ENDPOINT is honoured).")
    push.add_argument("--token", default=None, help="Defaults to HF_TOKEN or the saved login.")
    push.add_argument("--private", action="store_true", help="Create the repository private (if it is new).")
    push.add_argument("--repo-type", default="model", choices=["model", "dataset"],
                      help="`dataset` for a folder of `python -m dataset_script export`.")
    push.set_defaults(func=_push)

    predict = commands.add_parser(
        "predict", help="Score one utterance (--text) or a batch file (--input, --output).", epilog=BATCH_COLUMNS
    )
    _add_model_arguments(predict)
    _add_utterance_arguments(predict, text_required=False)
    predict.add_argument("--input", help="A batch file, .tsv or .parquet (columns below).")
    predict.add_argument(
        "--output", help="Where to write the batch's predictions (.tsv or .parquet) or, for --audio without --text, "
        "the timeline of its utterances (.jsonl, .csv or .parquet).",
    )  # fmt: skip
    predict.add_argument("--plot", help="--audio without --text: a PNG of the sentiment over time.")
    predict.add_argument("--asr-model", default="base", help="--audio without --text: the faster-whisper model.")
    predict.add_argument("--batch-size", type=int, default=8)
    predict.set_defaults(func=_user_errors(_predict))

    evaluate = commands.add_parser("evaluate", help="Print the metrics on a split of a dataset_script config.")
    _add_model_arguments(evaluate)
    evaluate.add_argument("--data", required=True, help="A dataset_script config: text, cmbert, synthetic, ...")
    evaluate.add_argument("--data-dir", help="The config's source files (not needed for text and synthetic).")
    evaluate.add_argument("--split", default="test", choices=["train", "validation", "test"])
    evaluate.add_argument("--max-samples", type=int, help="Score only the split's first N utterances.")
    evaluate.add_argument("--cache-dir", help="The datasets cache (defaults to HF_DATASETS_CACHE).")
    evaluate.add_argument(
        "--dataset-options", help="MosiConfig fields, as train.py's --dataset_options (e.g. '{train_size: 800}').",
    )  # fmt: skip
    evaluate.add_argument(
        "--timings-column", default="word_timings",
        help="Recordings: the column of word timings, as train.py's --timings_column (rows without are aligned).",
    )  # fmt: skip
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.set_defaults(func=_user_errors(_evaluate))

    explain = commands.add_parser("explain", help="Draw one utterance's text and multimodal attention maps as a PNG.")
    _add_model_arguments(explain)
    _add_utterance_arguments(explain, text_required=True)
    explain.add_argument("--out", required=True, help="The PNG to write.")
    explain.set_defaults(func=_user_errors(_explain))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from .recipe import command_line

        return command_line(argv[1:], prog="cmbert train")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
