"""Directories (volumes) that partitions and replicas are placed in, and making their
entries durable."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ValidationException


def writable_volume(volume_dir: str | os.PathLike[str], what: str) -> Path:
    """Create ``volume_dir`` if needed and prove it writable, before any work starts.

    A probe file is written and removed: permissions alone do not tell (read-only
    mounts, full disks). ``what`` completes "cannot {what}" in the error.
    """
    volume = Path(volume_dir)
    try:
        volume.mkdir(parents=True, exist_ok=True)
        probe = volume / f".tessera-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValidationException(
            f"cannot {what} in {volume}: the directory is not writable ({err.strerror or err})"
        ) from err
    return volume


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory, so the creations, renames and unlinks in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
