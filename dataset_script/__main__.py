"""Command line: build a config, or export configs as a data-only Hub dataset.

    python -m dataset_script load --config text --data-dir ../shared/data/mosi-text
    python -m dataset_script load --config synthetic --option seed=1 --option cross_modal_fraction=0.5
    python -m dataset_script export --config text --data-dir ../shared/data/mosi-text --out mosi-hub \
        [--push-to-hub user/cmu-mosi]
"""

import argparse
import ast
import sys

from dataset_script.errors import DataError
from dataset_script.export import ExportPushError, export_to_folder, push_to_hub
from dataset_script.mosi import load_mosi


def _option(text: str) -> tuple[str, object]:
    """`KEY=VALUE`, the value read as a Python literal when it is one (numbers), else as a string."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dataset_script", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("load", "export"):
        sub = commands.add_parser(name)
        sub.add_argument("--config", action="append", help="config name (export: repeatable); default text")
        sub.add_argument("--data-dir", help="folder with the source files")
        sub.add_argument("--cache-dir", help="datasets cache folder")
        sub.add_argument("--option", action="append", type=_option, default=[], help="data set option KEY=VALUE (MosiConfig / RecordingsConfig OPTIONS)")
    export = commands.choices["export"]
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload the folder to this dataset repo")
    export.add_argument("--token", help="Hub token (default: the logged-in one)")
    args = parser.parse_args(argv)

    configs = args.config or ["text"]
    options = dict(args.option)
    if args.command == "load" and len(configs) > 1:
        parser.error("load takes one --config")
    try:
        if args.command == "load":
            print(load_mosi(configs[0], data_dir=args.data_dir, cache_dir=args.cache_dir, **options))
            return
        out = export_to_folder(args.out, configs=configs, data_dir=args.data_dir, cache_dir=args.cache_dir, **options)
        print(f"exported {', '.join(configs)} to {out}")
        if args.push_to_hub:
            print(push_to_hub(out, args.push_to_hub, token=args.token))
    except (DataError, ExportPushError) as error:  # bad data or a failed upload: one line, the message says what to do
        sys.exit(f"dataset_script {args.command}: error: {error}")

if __name__ == "__main__":
    main()
