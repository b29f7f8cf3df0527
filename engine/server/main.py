"""Run the DynamoDB-compatible endpoint (``tessera serve``) over an embedded engine (SPEC §12).

Defaults, chosen to work out of the box on one machine:

- data in ``./data``; backups in a local-directory store ``file://./backups``;
- listening on ``127.0.0.1:8000`` (loopback only: pass ``--host 0.0.0.0`` to expose it);
- region ``us-east-1``, account ``000000000000`` (used in ARNs);
- credentials, first that applies: ``--credentials FILE``; the environment variables
  ``TESSERA_ACCESS_KEY_ID`` and ``TESSERA_SECRET_ACCESS_KEY``; else the well-known local pair
  access key ``local``, secret ``local`` — like DynamoDB Local, meant for a loopback
  endpoint; a warning is logged when that pair is used on a non-loopback address.

A credentials file is JSON (``{"ACCESS_KEY_ID": "SECRET", ...}``) or AWS ini style (each
section with ``aws_access_key_id`` and ``aws_secret_access_key``, as in
``~/.aws/credentials``). Every request must be signed (AWS Signature V4) with one of them.

Clients::

    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 \\
        aws dynamodb list-tables --endpoint-url http://127.0.0.1:8000

SIGTERM or Ctrl-C stops accepting connections, lets requests in flight finish (uvicorn's
graceful shutdown), then closes the engine.

Start-up order: the port is bound first, then the data directory is locked
(``engine.dirlock``: one process per data directory) and opened — so a second server on a
busy port never opens, creates or locks anything. Exit codes (``EXIT_*``): 0 stopped
cleanly; 1 the engine failed (the message says why); 2 bad usage: arguments, credentials,
a data directory that is a file, unwritable or cannot be created; 3 busy: the address or
port cannot be bound, or another process holds the data directory (its PID is named).

Connection limits (``engine.server.connections``): an idle keep-alive connection is closed
after ``--idle-timeout`` seconds, one that has not sent its request line and headers within
``--header-timeout`` seconds of opening (or of a request's first byte) is closed, and past
``--max-connections`` open connections new ones get HTTP 503 ServiceUnavailable.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.server.connections import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
)

__all__ = [
    "serve",
    "add_serve_arguments",
    "run_from_args",
    "load_credentials",
    "main",
    "ServeError",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_BUSY",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3

log = logging.getLogger("engine.server")

DEFAULT_CREDENTIALS = {"local": "local"}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def load_credentials(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a credentials file (JSON object or AWS ini); raises ValueError naming the file."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except ValueError as err:
            raise ValueError(f"credentials file {path}: invalid JSON: {err}") from None
        if not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in document.items()
        ):
            raise ValueError(
                f'credentials file {path}: expected {{"ACCESS_KEY_ID": "SECRET", ...}}'
            )
        return dict(document)
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as err:
        raise ValueError(f"credentials file {path}: {err}") from None
    credentials = {}
    for section in parser.sections():
        access_key = parser[section].get("aws_access_key_id")
        secret = parser[section].get("aws_secret_access_key")
        if not access_key or not secret:
            raise ValueError(
                f"credentials file {path}: section [{section}] needs aws_access_key_id and aws_secret_access_key"
            )
        credentials[access_key.strip()] = secret.strip()
    if not credentials:
        raise ValueError(f"credentials file {path}: no credentials in it")
    return credentials


def _resolve_credentials(credentials_file: str | None) -> dict[str, str]:
    if credentials_file:
        return load_credentials(credentials_file)
    access_key = os.environ.get("TESSERA_ACCESS_KEY_ID")
    secret = os.environ.get("TESSERA_SECRET_ACCESS_KEY")
    if access_key and secret:
        return {access_key: secret}
    if access_key or secret:
        raise ValueError("set both TESSERA_ACCESS_KEY_ID and TESSERA_SECRET_ACCESS_KEY, or neither")
    return dict(DEFAULT_CREDENTIALS)


class ServeError(Exception):
    """The server cannot start: a one-line ``message`` for the user and the exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def bind_listener(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket on ``host:port``; ``ServeError`` (exit 3, or 2 for a host that
    does not resolve) naming the address if it cannot be had. Listening at once lets
    clients that connect while the engine opens wait in the backlog, not be refused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise ServeError(f"cannot listen on --host {host!r}: {err.strerror}", EXIT_USAGE) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as err:
        sock.close()
        hint = (
            "another process is listening there: stop it or pass another --port"
            if err.errno == errno.EADDRINUSE
            else "pass another --host or --port"
        )
        raise ServeError(
            f"cannot listen on {host}:{port}: {err.strerror}; {hint}", EXIT_BUSY
        ) from None
    return sock


def _open_data_dir(data_dir: Path) -> Any:
    """Lock ``data_dir`` (creating it if needed) and return the held lock; a one-line
    ``ServeError`` if it is a file, cannot be created or written, or another process has it."""
    from engine.dirlock import DirectoryLock
    from engine.errors import DataDirectoryInUseError

    if data_dir.exists() and not data_dir.is_dir():
        raise ServeError(
            f"data directory {data_dir} is not a directory: pass --data-dir with a "
            "directory (it is created if missing)",
            EXIT_USAGE,
        )
    try:
        return DirectoryLock(data_dir).acquire()
    except DataDirectoryInUseError as err:
        raise ServeError(err.message, EXIT_BUSY) from None
    except OSError as err:
        raise ServeError(_unusable(data_dir, err), EXIT_USAGE) from None


def _unusable(data_dir: Path, err: OSError) -> str:
    where = f" ({err.filename})" if err.filename and str(err.filename) != str(data_dir) else ""
    return (
        f"cannot use data directory {data_dir}: {err.strerror or err}{where}; it must be "
        "a directory this user can write (or create)"
    )


def _absolute_store_url(backups: Any) -> Any:
    """``file://./backups`` -> ``file:///abs/backups`` so the store does not depend on cwd."""
    if isinstance(backups, str) and backups.startswith("file://"):
        return "file://" + os.path.abspath(backups[len("file://") :])
    return backups


def serve(
    data_dir: str | os.PathLike[str] = "./data",
    backups: Any = "file://./backups",
    host: str = "127.0.0.1",
    port: int = 8000,
    region: str = "us-east-1",
    credentials: dict[str, str] | None = None,
    *,
    account_id: str = "000000000000",
    max_body_bytes: int | None = None,
    max_workers: int = 16,
    default_partitions: int = 4,
    log_level: str = "info",
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> None:
    """Bind the port, lock and open the engine, serve until SIGTERM/SIGINT, close the engine.

    ``credentials`` None means the defaults described in the module docstring (environment,
    then ``local``/``local``). Start-up failures raise :class:`ServeError` (a one-line
    message and the exit code); nothing is opened or created before the port is bound.
    """
    import uvicorn

    from engine import Engine
    from engine.server.app import DEFAULT_MAX_BODY_BYTES, create_app
    from engine.server.connections import limited_protocol

    if idle_timeout_s <= 0 or header_timeout_s <= 0 or max_connections < 1:
        raise ServeError(
            "--idle-timeout and --header-timeout must be > 0 and --max-connections >= 1",
            EXIT_USAGE,
        )

    if credentials is None:
        credentials = _resolve_credentials(None)
    if credentials == DEFAULT_CREDENTIALS and host not in _LOOPBACK_HOSTS:
        log.warning(
            "serving on %s with the well-known credentials local/local: anyone who can reach "
            "this address can use the data; pass --credentials",
            host,
        )
    listener = bind_listener(host, port)
    try:
        data_lock = _open_data_dir(Path(data_dir))
        try:
            try:
                engine = Engine.open(
                    os.fspath(data_dir), region=region, backup_store=_absolute_store_url(backups)
                )
            except OSError as err:
                raise ServeError(_unusable(Path(data_dir), err), EXIT_USAGE) from None
            _serve_engine(
                engine,
                listener,
                uvicorn=uvicorn,
                create_app=create_app,
                app_options={
                    "credentials": credentials,
                    "region": region,
                    "account_id": account_id,
                    "max_body_bytes": max_body_bytes or DEFAULT_MAX_BODY_BYTES,
                    "max_workers": max_workers,
                    "default_partitions": default_partitions,
                },
                config_options={
                    "host": host,
                    "port": port,
                    "log_level": log_level,
                    "timeout_keep_alive": idle_timeout_s,
                    "http": limited_protocol(
                        header_timeout_s=header_timeout_s, max_connections=max_connections
                    ),
                },
            )
        finally:
            data_lock.release()  # after the engine closed
    finally:
        listener.close()


def _serve_engine(
    engine: Any,
    listener: socket.socket,
    *,
    uvicorn: Any,
    create_app: Any,
    app_options: dict[str, Any],
    config_options: dict[str, Any],
) -> None:
    try:
        app = create_app(
            engine,
            **app_options,
            # Close during lifespan shutdown, after requests in flight have finished.
            on_shutdown=engine.close,
        )
        config = uvicorn.Config(
            app,
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=30,
            **config_options,
        )
        with _stop_signals_return_normally():
            uvicorn.Server(config).run(sockets=[listener])
    finally:
        engine.close()  # idempotent; covers a failed start


@contextlib.contextmanager
def _stop_signals_return_normally() -> Iterator[None]:
    """After a graceful stop uvicorn re-raises SIGTERM/SIGINT to the handler that was in
    place before it ran; with the default handler that kills the process mid-``finally``.
    Install a no-op one around the run so ``serve`` returns and the exit status is 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in stop_signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_EPILOG = """\
Every request must be signed (AWS Signature V4) with one of the credentials. With the
defaults, the AWS CLI and SDKs connect without changes (which operations and expression
features are supported: the README's compatibility notes):

  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 \\
      aws dynamodb list-tables --endpoint-url http://127.0.0.1:8000

The port is bound before the data directory is opened, and the data directory is locked
for the server's lifetime: a second server, `tessera demo` or `tessera backups restore`
on it is refused with the holder's PID.

Connection limits: an idle keep-alive connection is closed after --idle-timeout seconds;
a connection that has not sent its request line and headers within --header-timeout
seconds (of opening, or of a request's first byte) is closed; beyond --max-connections
open connections, new ones are answered 503 ServiceUnavailable (clients retry) and closed.

SIGTERM or Ctrl-C stops accepting connections, finishes the requests in flight, flushes
the WAL and closes the engine (exit status 0); a backup still running resumes on the
next start.

exit codes: 0 stopped cleanly; 1 the engine failed (the message says why); 2 bad usage
(arguments, credentials, a data directory that is a file, unwritable or uncreatable);
3 busy (the port cannot be bound, or another process holds the data directory).
"""


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the example's lines
    parser.add_argument(
        "--data-dir", metavar="DIR", default="./data", help="engine data directory (default ./data)"
    )
    parser.add_argument(
        "--backups",
        metavar="URL",
        default="file://./backups",
        help="backup store URL: file://DIR or s3://BUCKET/PREFIX (default file://./backups)",
    )
    parser.add_argument(
        "--host",
        metavar="ADDRESS",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1)",
    )
    parser.add_argument("--port", metavar="N", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--region",
        metavar="NAME",
        default="us-east-1",
        help="region for ARNs and backup ids (default us-east-1)",
    )
    parser.add_argument(
        "--account-id",
        metavar="ID",
        default="000000000000",
        help="account id in ARNs (default 000000000000)",
    )
    parser.add_argument(
        "--credentials",
        metavar="FILE",
        help='JSON {"KEY": "SECRET"} or AWS-ini credentials file (default: env '
        "TESSERA_ACCESS_KEY_ID/TESSERA_SECRET_ACCESS_KEY, else local/local)",
    )
    parser.add_argument(
        "--max-body-bytes",
        metavar="BYTES",
        type=int,
        default=None,
        help="largest request body (default 16 MiB)",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=16,
        help="threads running engine calls (default 16)",
    )
    parser.add_argument(
        "--partitions",
        metavar="N",
        type=int,
        default=4,
        help="partitions of a new table (default 4)",
    )
    parser.add_argument(
        "--idle-timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT_S,
        help=f"close a keep-alive connection idle this long (default {DEFAULT_IDLE_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--header-timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT_S,
        help="close a connection whose request line and headers take longer "
        f"(default {DEFAULT_HEADER_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--max-connections",
        metavar="N",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="open connections at most; more get HTTP 503 and are closed "
        f"(default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="(default info)",
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``serve`` from parsed arguments; returns the process exit code."""
    from engine.errors import DataDirectoryInUseError, TesseraError

    try:
        credentials = _resolve_credentials(args.credentials)
    except (OSError, ValueError) as err:
        print(f"tessera serve: {err}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        _serve_args(args, credentials)
    except ServeError as err:
        print(f"tessera serve: {err.message}", file=sys.stderr)
        return err.exit_code
    except DataDirectoryInUseError as err:
        print(f"tessera serve: {err.message}", file=sys.stderr)
        return EXIT_BUSY
    except TesseraError as err:
        print(f"tessera serve: {type(err).__name__}: {err.message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _serve_args(args: argparse.Namespace, credentials: dict[str, str]) -> None:
    serve(
        data_dir=args.data_dir,
        backups=args.backups,
        host=args.host,
        port=args.port,
        region=args.region,
        credentials=credentials,
        account_id=args.account_id,
        max_body_bytes=args.max_body_bytes,
        max_workers=args.workers,
        default_partitions=args.partitions,
        log_level=args.log_level,
        idle_timeout_s=args.idle_timeout,
        header_timeout_s=args.header_timeout,
        max_connections=args.max_connections,
    )


def main(argv: list[str] | None = None) -> int:
    parser = add_serve_arguments(
        argparse.ArgumentParser(prog="tessera serve", description=__doc__.split("\n")[0])
    )
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
