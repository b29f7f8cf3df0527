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


#: Free space a volume must keep beyond what a restore declares it will write: LMDB files
#: built by a repartitioning restore can outgrow the source's pages, and the WAL, the
#: catalog and the rest of the system need room too.
SPACE_MARGIN_FRACTION = 0.10
SPACE_MARGIN_BYTES = 64 << 20  # 64 MiB


def free_bytes(directory: Path) -> int:
    """Free bytes (for an unprivileged user) on the volume holding ``directory`` or, if it
    does not exist yet, its nearest existing parent."""
    path = Path(os.path.abspath(directory))
    while not path.exists() and path != path.parent:
        path = path.parent
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def check_free_space(needed_bytes: int, directory: Path, what: str) -> None:
    """Refuse (ValidationException) unless ``needed_bytes`` plus the margin fit the free
    space of ``directory``'s volume — checked before a byte is written."""
    with_margin = int(needed_bytes * (1 + SPACE_MARGIN_FRACTION)) + SPACE_MARGIN_BYTES
    free = free_bytes(directory)
    if with_margin > free:
        raise ValidationException(
            f"{what} needs {needed_bytes:,} bytes on the volume of {directory} "
            f"({with_margin:,} with a {SPACE_MARGIN_FRACTION:.0%} + "
            f"{SPACE_MARGIN_BYTES >> 20} MiB margin) but it has {free:,} free: free some "
            "space or use a directory on another volume; nothing was written")
