"""The catalog: tables, key schemas, partition maps and backups, in a system LMDB environment.

It lives in ``<data>/system/`` and, unlike partition environments, commits with fsync:
catalog changes are rare and each one (a table created, a partition map switched, a
backup's status) must survive a crash on its own. Records are JSON so an operator can
read them with plain py-lmdb.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

TABLES_DB = b"tables"
BACKUPS_DB = b"backups"
CATALOG_MAP_SIZE = 1 << 30  # 1 GiB


def _encode(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


class Catalog:
    """Durable records keyed by table name and by backup id. Thread-safe."""

    def __init__(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(directory), subdir=True, map_size=CATALOG_MAP_SIZE,
                             max_dbs=4, max_readers=256, sync=True)
        self._tables = self.env.open_db(TABLES_DB)
        self._backups = self.env.open_db(BACKUPS_DB)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ generic
    def _get(self, db, key: str) -> dict | None:
        with self.env.begin(db=db) as txn:
            raw = txn.get(key.encode())
        return None if raw is None else json.loads(raw)

    def _put(self, db, key: str, record: dict) -> None:
        with self.env.begin(write=True, db=db) as txn:
            txn.put(key.encode(), _encode(record))

    def _delete(self, db, key: str) -> None:
        with self.env.begin(write=True, db=db) as txn:
            txn.delete(key.encode())

    def _all(self, db) -> list[dict]:
        with self.env.begin(db=db) as txn:
            return [json.loads(value) for _, value in txn.cursor()]

    def update(self, kind: str, key: str, change: Callable[[dict | None], dict | None]) -> Any:
        """Read-modify-write one record atomically; ``change`` returns the new record or None
        to delete it. Returns the new record."""
        db = self._tables if kind == "table" else self._backups
        with self._lock, self.env.begin(write=True, db=db) as txn:
            raw = txn.get(key.encode())
            new = change(None if raw is None else json.loads(raw))
            if new is None:
                txn.delete(key.encode())
            else:
                txn.put(key.encode(), _encode(new))
            return new

    # ------------------------------------------------------------------ tables
    def get_table(self, name: str) -> dict | None:
        return self._get(self._tables, name)

    def put_table(self, record: dict) -> None:
        self._put(self._tables, record["name"], record)

    def delete_table(self, name: str) -> None:
        self._delete(self._tables, name)

    def list_tables(self) -> list[dict]:
        return self._all(self._tables)

    # ------------------------------------------------------------------ backups
    def get_backup(self, backup_id: str) -> dict | None:
        return self._get(self._backups, backup_id)

    def put_backup(self, record: dict) -> None:
        self._put(self._backups, record["backup_id"], record)

    def delete_backup(self, backup_id: str) -> None:
        self._delete(self._backups, backup_id)

    def list_backups(self) -> list[dict]:
        return self._all(self._backups)

    def close(self) -> None:
        self.env.close()
