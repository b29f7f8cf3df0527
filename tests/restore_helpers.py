"""Shared by the restore, copy and tool tests: tables holding every attribute type, a
backup of them, and ways to damage a backup in its store."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from decimal import Decimal

import google_crc32c
import zstandard

from engine.backup.manifest import BackupManifest, crc32c_hex, manifest_key


def every_type_item(pk, sk: int) -> dict:
    """One item with every DynamoDB type (SPEC §2)."""
    return {
        "pk": pk,
        "sk": sk,
        "s": f"text-{sk}-ü",
        "n_int": sk * 7 - 1000,
        "n_dec": Decimal("12345678901234567890.123456789012345678") + sk,
        "b": bytes([sk % 256, 0, 255]),
        "bool": sk % 2 == 0,
        "null": None,
        "ss": {"a", f"b{sk}"},
        "ns": {1, Decimal("2.5"), sk + 10},
        "bs": {b"\x00", bytes([sk % 256 or 1])},
        "l": [1, "two", [b"3"], {"four": None}],
        "m": {"nested": {"deep": [sk, {"x": True}]}, "empty": {}},
    }


def fill_table(engine, name: str, *, partitions: int, partitioning: str = "hash",
               count: int = 240, pk_type: str = "S") -> None:
    split_points = None
    if partitioning == "range" and partitions > 1:  # spread the 37 partition keys evenly
        split_points = [f"user-{i * 37 // partitions:03d}" for i in range(1, partitions)]
    engine.create_table(name, partition_key=("pk", pk_type), sort_key=("sk", "N"),
                        partitions=partitions, partitioning=partitioning,
                        split_points=split_points)
    keys = [f"user-{n % 37:03d}" if pk_type == "S" else n % 37 for n in range(count)]
    engine.table(name).batch_write(puts=[every_type_item(keys[n], n) for n in range(count)])


def backup_of(engine, table: str, name: str = "nightly") -> str:
    backup_id = engine.create_backup(table, name)["backup_id"]
    done = engine.wait_for_backup(backup_id, timeout=60)
    assert done["status"] == "AVAILABLE", done["failure_reason"]
    return backup_id


def load_manifest(store, backup_id: str) -> BackupManifest:
    key = manifest_key("", backup_id)
    return BackupManifest.from_json(store.get(key), key)


def replace_partition_object(store, backup_id: str, index: int, data: bytes) -> str:
    """Put ``data`` as partition ``index``'s object and make the manifest agree with its
    size and CRC32C, so only deeper checks (tar, data.mdb) can catch it. Returns the id."""
    manifest = load_manifest(store, backup_id)
    entry = manifest.partitions[index]
    store.put(entry.object_key, data)
    crc = crc32c_hex(google_crc32c.value(data))
    parts = list(manifest.partitions)
    parts[index] = dataclasses.replace(entry, object_size_bytes=len(data), object_crc32c=crc)
    edited = dataclasses.replace(manifest, partitions=parts,
                                 size_bytes=sum(p.object_size_bytes for p in parts))
    store.put(manifest_key("", backup_id), edited.to_json())
    return entry.partition_id


def object_members(store, key: str) -> tuple[bytes, bytes]:
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(store.get(key))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return tar.extractfile("partition.json").read(), tar.extractfile("data.mdb").read()


def craft_object(members: list[tuple[str, bytes]]) -> bytes:
    """A hand-made tar.zst, as a hostile uploader would make it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return zstandard.ZstdCompressor(level=1, write_checksum=True).compress(raw.getvalue())
