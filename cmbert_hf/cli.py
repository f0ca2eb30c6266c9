"""The `cmbert` command line."""

import argparse
import sys

from .hub import PushError, push_folder


def _push(args) -> int:
    try:
        commit = push_folder(args.folder, args.repo_id, token=args.token)
    except PushError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"pushed {args.folder} to {args.repo_id} at revision {commit.oid}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmbert", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser("push", help="Push a finished run folder (train.py's output_dir) to the Hub.")
    push.add_argument("folder")
    push.add_argument("--repo-id", required=True, help="NAMESPACE/NAME on the Hub (HF_ENDPOINT is honoured).")
    push.add_argument("--token", default=None, help="Defaults to HF_TOKEN or the saved login.")
    push.set_defaults(func=_push)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
