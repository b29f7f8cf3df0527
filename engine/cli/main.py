"""The ``tessera`` command. ``main(argv) -> exit code``; each subcommand lives in its own module.

Exit codes: 0 success, 1 the operation failed (the message says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine.errors import TesseraError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera",
        description="Tessera: an embeddable partitioned table engine on LMDB with verified, "
        "parallel, on-demand backups.",
        epilog="Run 'tessera COMMAND --help' for a command's options. Exit codes: 0 ok, "
        "1 the operation failed, 2 bad usage.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    from . import backups, demo

    demo.add_parser(commands)
    backups.add_parser(commands)
    from . import backup_cmd

    backup_cmd.add_parser(commands)
    try:
        from engine.server import main as server_main
    except ImportError:  # the server is optional until its dependencies are installed
        server_main = None
    if server_main is not None:
        serve = commands.add_parser(
            "serve", help="run the DynamoDB-compatible endpoint over an embedded engine",
            description="Serve the DynamoDB JSON protocol (boto3, the AWS CLI) over a local engine.",
        )
        server_main.add_serve_arguments(serve)
        serve.set_defaults(handler=server_main.run_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except TesseraError as err:
        print(f"tessera {args.command}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
