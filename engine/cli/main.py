"""The ``tessera`` command. ``main(argv) -> exit code``; each subcommand lives in its own module.

Every failure is one line on stderr — ``tessera COMMAND: ErrorType: message`` — and, for
commands given ``--json``, a JSON object on stdout as well
(``{"error": {"type": ..., "message": ..., "exit_code": N}}``), never a traceback
(``TESSERA_DEBUG=1`` shows the traceback of an unexpected error).

Exit codes: 0 success; 1 the operation failed (the message says why); 2 bad usage: bad
arguments, a store or data directory that does not exist or cannot be used; 3 busy: the
data directory is held by another process (its PID is named) or the port is taken.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from engine.errors import DataDirectoryInUseError, TesseraError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3

EXIT_CODES_HELP = (
    "exit codes: 0 ok, 1 the operation failed, 2 bad usage (including a store or data "
    "directory that does not exist or cannot be used), 3 busy (the data directory is in "
    "use by another process, or the port is taken)."
)


class UsageError(Exception):
    """Bad arguments found after parsing, or a store/directory that cannot be used (2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera",
        description="Tessera: an embeddable partitioned table engine on LMDB with verified, "
        "parallel, on-demand backups.",
        epilog="Run 'tessera COMMAND --help' for a command's options. " + EXIT_CODES_HELP,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    from . import backup_cmd, backups, demo

    demo.add_parser(commands)
    backups.add_parser(commands)
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


def classify(err: BaseException) -> tuple[int, str, str]:
    """(exit code, error type, one-line message) for an error a command raised."""
    if isinstance(err, UsageError):
        return EXIT_USAGE, "UsageError", str(err)
    if isinstance(err, DataDirectoryInUseError):
        return EXIT_BUSY, type(err).__name__, err.message
    if isinstance(err, TesseraError):
        return EXIT_FAILED, type(err).__name__, err.message
    if isinstance(err, OSError):
        where = f" ({err.filename})" if err.filename else ""
        return EXIT_FAILED, type(err).__name__, f"{err.strerror or err}{where}"
    return (EXIT_FAILED, "InternalError",
            f"unexpected {type(err).__name__}: {err} (set TESSERA_DEBUG=1 for the traceback)")


def report(args: argparse.Namespace, code: int, kind: str, message: str) -> None:
    """Print the failure: one line on stderr; a JSON error object on stdout under --json."""
    message = " ".join(message.split())  # one line, whatever the exception held
    command = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
    print(f"tessera {command}: {kind}: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": {"type": kind, "message": message, "exit_code": code}},
                         indent=2, sort_keys=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("TESSERA_DEBUG") and not isinstance(err, (UsageError, TesseraError)):
            raise
        code, kind, message = classify(err)
        report(args, code, kind, message)
        return code


if __name__ == "__main__":
    sys.exit(main())
