"""Where a table's partitions live on disk, and the cleanup of directories that the table's
record in force does not use (SPEC §10 crash safety: an interrupted split, merge or move
leaves directories that only the catalog's record can tell apart from live ones).

A partition lives in ``<data>/tables/<table_id>/<pid>/`` unless the record names another
volume for it (``partition_dirs``, after a move); replicas are listed under ``replicas``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def partition_dir(table_dir: Path, record: dict, partition_id: str) -> Path:
    """Where a partition lives: its recorded volume directory, else ``<table dir>/<pid>``."""
    recorded = record.get("partition_dirs", {}).get(partition_id)
    return Path(recorded) if recorded else table_dir / partition_id


def live_dirs(table_dir: Path, record: dict) -> set[str]:
    """Absolute paths of every directory the record in force uses (partitions, replicas)."""
    live = {
        os.path.abspath(partition_dir(table_dir, record, entry["partition_id"]))
        for entry in record.get("partition_map", [])
    }
    live.update(os.path.abspath(replica["dir"]) for replica in record.get("replicas", []))
    return live


def all_dirs_outside(table_dir: Path, record: dict) -> list[Path]:
    """Directories of the table outside its table directory (moved partitions, replicas,
    pending work): what dropping the table must delete besides the table directory."""
    inside = os.path.abspath(table_dir) + os.sep
    paths = live_dirs(table_dir, record) | {os.path.abspath(p) for p in record.get("pending_dirs", [])}
    return [Path(p) for p in sorted(paths) if not p.startswith(inside)]


def cleanup_stray_dirs(table_dir: Path, record: dict) -> bool:
    """Delete directories left by an interrupted split/merge/move (the losing side).

    Returns True if ``record`` changed (its ``pending_dirs`` were cleared) and must be
    written back.
    """
    live = live_dirs(table_dir, record)
    for path in record.get("pending_dirs", []):
        if os.path.abspath(path) not in live:
            shutil.rmtree(path, ignore_errors=True)
    if table_dir.is_dir():
        for child in table_dir.iterdir():
            if child.is_dir() and os.path.abspath(child) not in live:
                shutil.rmtree(child, ignore_errors=True)
    changed = bool(record.get("pending_dirs"))
    record["pending_dirs"] = []
    return changed
