"""Read a backup straight from its store (a direct import of the partition objects), for
tests that check what a backup holds without going through a restore."""

from __future__ import annotations

import tempfile
from pathlib import Path

from engine.backup.manifest import BackupManifest, manifest_key
from engine.backup.unpack import unpack_partition
from engine.partition import open_environment
from engine.table import decode_item


def read_backup_items(store, backup_id: str) -> list[dict]:
    """Every item of the backup, partition by partition in key order."""
    key = manifest_key("", backup_id)
    manifest = BackupManifest.from_json(store.get(key), key)
    items = []
    with tempfile.TemporaryDirectory(prefix="tessera-import-") as scratch:
        for entry in manifest.partitions:
            dest = Path(scratch) / entry.partition_id
            with store.open_reader(entry.object_key) as reader:
                unpack_partition(reader, dest, entry, source_name=entry.object_key, fsync=False)
            env, items_db, _ = open_environment(dest, map_size=1 << 30)
            with env.begin(db=items_db) as txn:
                items.extend(decode_item(value) for _, value in txn.cursor())
            env.close()
    return items
