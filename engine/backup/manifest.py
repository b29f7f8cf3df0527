"""Backup manifests: the contract between packaging, the object store, verify and restore.

Modelled on pgBackRest's manifest (SPEC §6): for every partition object we record the size
and checksum of the data *as restored* (``data_size_bytes``, ``data_crc32c`` of the raw
``data.mdb``; ``item_count`` and ``logical_checksum`` over the items) *and as stored*
(``object_size_bytes``, ``object_crc32c`` of the compressed object). The backup manifest
is written last; a backup without one does not exist.

JSON is the wire format: ``to_json`` is stable (sorted keys, fixed layout) so the same
manifest always gives the same bytes, and ``from_json`` trusts nothing — every field is
checked for presence and type, unknown fields are refused, and any problem raises
:class:`~engine.errors.CorruptionError` naming the object it came from and the field.

Parsing is bounded, since a manifest may come from an attacker with write access to the
bucket: at most ``MAX_MANIFEST_BYTES``, nested at most ``MAX_MANIFEST_DEPTH`` levels
(a manifest is four deep; 100,000 levels would exhaust the parser's stack), an
``object_key`` that is a plain relative key (no ``..``, ``.``, empty segment, leading ``/``,
backslash or control character: keys become file paths in a local store).
:func:`check_inflatable` bounds each declared ``data_size_bytes`` by what its object could
inflate to (``ZSTD_MAX_RATIO``); readers call it before inflating anything.

Checksums are lowercase hex strings: CRC32C as 8 digits (big-endian value, the same bytes
S3's ``x-amz-checksum-crc32c`` carries base64-encoded), SHA-256 as 64 digits. Interval
bounds are the storage keys in hex; ``interval_end`` is ``None`` for +infinity.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import CorruptionError, ValidationException

FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 64 << 20  # ~1 KiB per partition: room for 50,000 partitions
MAX_MANIFEST_DEPTH = 16  # a manifest nests 4 levels (root, partitions, entry, key schema)
#: The most a zstd frame can inflate: a block regenerates at most 128 KiB
#: (Block_Maximum_Size, RFC 8878 §3.1.1.2.3) and the smallest block is an RLE block, a
#: 3-byte header and 1 byte, so no frame inflates more than 131072 / 4 times its size.
ZSTD_MAX_RATIO = 32768
COMPRESSION = "zstd"
LMDB_FORMAT = "lmdb-0.9"
KEY_TYPES = frozenset({"S", "N", "B"})
PARTITIONING_SCHEMES = frozenset({"hash", "range"})

# Ids become parts of object keys and file names: keep them to a safe alphabet so no id
# can smuggle a "/" or ".." into a key (SPEC §6: "{prefix}/{backup_id}/…").
_ID_RE = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9_.:-]*\Z")
_HEX_RE = re.compile(r"(?:[0-9a-f]{2})*\Z")
_CRC32C_RE = re.compile(r"[0-9a-f]{8}\Z")
_SHA256_RE = re.compile(r"[0-9a-f]{64}\Z")

#: How strictly a partition manifest is checked:
#: ``input``      what the engine hands to ``package_partition``: computed fields may be None;
#: ``in_archive`` the copy inside the object: computed fields set, ``object_*`` null (an
#:                object cannot contain its own size and checksum);
#: ``complete``   an entry of a backup manifest: every field set.
ManifestMode = Literal["input", "in_archive", "complete"]

_COMPUTED_FIELDS = ("item_count", "logical_checksum", "data_size_bytes", "data_crc32c")
_OBJECT_FIELDS = ("object_key", "object_size_bytes", "object_crc32c")


def crc32c_hex(value: int) -> str:
    """Format a CRC32C value the way manifests store it."""
    return f"{value:08x}"


# ----------------------------------------------------------------------------- layout


def _check_id(what: str, value: str) -> None:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValidationException(
            f"{what} {value!r} is not a valid id: use letters, digits and _ . : - "
            "(not starting with '.')"
        )


def _backup_root(prefix: str, backup_id: str) -> str:
    _check_id("backup_id", backup_id)
    prefix = prefix.strip("/")
    return f"{prefix}/{backup_id}" if prefix else backup_id


def partition_object_key(prefix: str, backup_id: str, partition_id: str) -> str:
    """Object key of one partition: ``{prefix}/{backup_id}/partitions/{partition_id}.tar.zst``.

    An empty prefix gives ``{backup_id}/…`` (no leading slash: S3 would keep it as part
    of the key and listings by prefix would stop matching).
    """
    _check_id("partition_id", partition_id)
    return f"{_backup_root(prefix, backup_id)}/partitions/{partition_id}.tar.zst"


def manifest_key(prefix: str, backup_id: str) -> str:
    """Object key of a backup's manifest: ``{prefix}/{backup_id}/manifest.json``."""
    return f"{_backup_root(prefix, backup_id)}/manifest.json"


# ------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, kw_only=True)
class PartitionManifest:
    """One partition object: identity, interval, LSN, and checksums as restored and stored.

    The computed fields (``item_count``, ``logical_checksum``, ``data_size_bytes``,
    ``data_crc32c``) are ``None`` until ``package_partition`` fills them in; the
    ``object_*`` fields are ``None`` until the object exists (and always ``None`` in the
    copy stored inside the object itself).
    """

    backup_id: str
    table_name: str
    table_id: str
    partition_id: str
    interval_start: str  # hex of the first storage key in the partition ("" = -infinity)
    interval_end: str | None  # hex of the first key past it; None = +infinity
    key_schema: list[list[str]]  # [[name, "S"|"N"|"B"], ...]: partition key, then sort key
    partitioning: str  # "hash" | "range" (SPEC §3)
    backup_lsn: int
    item_count: int | None = None
    logical_checksum: str | None = None  # SHA-256 hex, see engine.backup.logical
    data_size_bytes: int | None = None  # raw data.mdb
    data_crc32c: str | None = None  # raw data.mdb
    object_key: str | None = None
    object_size_bytes: int | None = None  # the compressed object as stored
    object_crc32c: str | None = None  # the compressed object as stored
    compression: str = COMPRESSION
    compression_level: int = 3
    lmdb_format: str = LMDB_FORMAT
    created_at: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        """Stable JSON: sorted keys, two-space indent, UTF-8, trailing newline."""
        return _dump(dataclasses.asdict(self))

    @classmethod
    def from_json(
        cls, data: bytes, source: str, *, mode: ManifestMode = "complete"
    ) -> PartitionManifest:
        """Parse and validate; ``CorruptionError`` naming ``source`` and the field if bad."""
        return _partition_from_obj(_load(data, source), source, "", mode)

    def validate(self, source: str, *, mode: ManifestMode = "complete") -> None:
        """Check this manifest as ``from_json`` would (round-trips through JSON)."""
        _partition_from_obj(json.loads(self.to_json()), source, "", mode)


@dataclass(frozen=True, kw_only=True)
class BackupManifest:
    """A whole backup: table schema and settings, and every partition object.

    ``size_bytes`` is the total stored size (sum of ``object_size_bytes``) and
    ``item_count`` the sum of the partitions' counts; ``from_json`` checks both, and that
    the partitions' intervals are sorted and cover the key space with no gap or overlap.
    """

    backup_id: str
    backup_name: str
    table_name: str
    table_id: str
    region: str
    key_schema: list[list[str]]
    partitioning: str
    settings: dict[str, Any]
    partitions: list[PartitionManifest]
    created_at: float
    completed_at: float
    size_bytes: int
    item_count: int
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        """Stable JSON: sorted keys, two-space indent, UTF-8, trailing newline."""
        return _dump(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: bytes, source: str) -> BackupManifest:
        """Parse and validate; ``CorruptionError`` naming ``source`` and the field if bad."""
        return _backup_from_obj(_load(data, source), source)


def check_inflatable(manifest: BackupManifest, source: str) -> None:
    """``CorruptionError`` if a partition declares more ``data_size_bytes`` than its object
    could inflate to: such a manifest lies, and believing it would size disk use by it."""
    for entry in manifest.partitions:
        object_size, data_size = entry.object_size_bytes, entry.data_size_bytes
        if object_size is not None and data_size is not None \
                and data_size > object_size * ZSTD_MAX_RATIO:
            raise CorruptionError(
                f"manifest field data_size_bytes {data_size} is more than its "
                f"{object_size}-byte object could inflate to (zstd inflates at most "
                f"{ZSTD_MAX_RATIO}x)", partition=entry.partition_id, path=source)


# --------------------------------------------------------------------- JSON plumbing


def _dump(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _load(data: bytes, source: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_BYTES:
        raise CorruptionError(
            f"manifest is {len(data)} bytes, more than the {MAX_MANIFEST_BYTES} a manifest "
            "can be", path=source)
    try:
        obj = json.loads(
            bytes(data).decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except RecursionError:
        raise CorruptionError(
            f"manifest nests deeper than {MAX_MANIFEST_DEPTH} levels", path=source) from None
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise CorruptionError(f"manifest is not valid JSON: {err}", path=source) from err
    if not isinstance(obj, dict):
        raise CorruptionError(
            f"manifest is a JSON {type(obj).__name__}, expected an object", path=source
        )
    _check_depth(obj, source)
    return obj


def _check_depth(document: Any, source: str) -> None:
    """Iterative (a recursive walk is what a deep document attacks)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_MANIFEST_DEPTH:
            raise CorruptionError(
                f"manifest nests deeper than {MAX_MANIFEST_DEPTH} levels", path=source)
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))


# ------------------------------------------------------------------------ validation

Check = Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_time(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value) and value >= 0


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value))


def _is_object_key(value: Any) -> bool:
    """A store key that is a plain relative path: local stores map keys to files."""
    if not isinstance(value, str) or not value or len(value) > 1024:
        return False
    if value.startswith("/") or "\\" in value or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        return False
    return all(segment not in ("", ".", "..") for segment in value.split("/"))


def _is_hex(value: Any) -> bool:
    return isinstance(value, str) and bool(_HEX_RE.match(value))


def _is_crc32c(value: Any) -> bool:
    return isinstance(value, str) and bool(_CRC32C_RE.match(value))


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and bool(_SHA256_RE.match(value))


def _is_key_schema(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 1 <= len(value) <= 2
        and all(
            isinstance(attr, list) and len(attr) == 2 and _is_text(attr[0])
            and attr[1] in KEY_TYPES
            for attr in value
        )
    )


def _is_settings(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


def _one_of(*allowed: Any) -> Check:
    def check(value: Any) -> bool:
        return any(type(value) is type(ok) and value == ok for ok in allowed)

    return check


# (check, description for the error message, nullable in every mode); which computed and
# object fields may be null depends on the ManifestMode.
_PARTITION_FIELDS: dict[str, tuple[Check, str, bool]] = {
    "format_version": (_one_of(FORMAT_VERSION), f"format version {FORMAT_VERSION}", False),
    "backup_id": (_is_id, "an id", False),
    "table_name": (_is_text, "a non-empty string", False),
    "table_id": (_is_text, "a non-empty string", False),
    "partition_id": (_is_id, "an id", False),
    "interval_start": (_is_hex, "a lowercase hex string", False),
    "interval_end": (_is_hex, "a lowercase hex string or null", True),
    "key_schema": (_is_key_schema, "a list of 1-2 [name, S|N|B] pairs", False),
    "partitioning": (_one_of(*sorted(PARTITIONING_SCHEMES)), "'hash' or 'range'", False),
    "backup_lsn": (_is_count, "a non-negative integer", False),
    "item_count": (_is_count, "a non-negative integer", False),
    "logical_checksum": (_is_sha256, "64 lowercase hex digits (SHA-256)", False),
    "data_size_bytes": (_is_count, "a non-negative integer", False),
    "data_crc32c": (_is_crc32c, "8 lowercase hex digits (CRC32C)", False),
    "object_key": (_is_object_key, "a relative store key (no '..', '.', empty segment, "
                   "leading '/', backslash or control character)", False),
    "object_size_bytes": (_is_count, "a non-negative integer", False),
    "object_crc32c": (_is_crc32c, "8 lowercase hex digits (CRC32C)", False),
    "compression": (_one_of(COMPRESSION), f"{COMPRESSION!r}", False),
    "compression_level": (_is_int, "an integer", False),
    "lmdb_format": (_one_of(LMDB_FORMAT), f"{LMDB_FORMAT!r}", False),
    "created_at": (_is_time, "a non-negative number (Unix time)", False),
}

_BACKUP_FIELDS: dict[str, tuple[Check, str, bool]] = {
    "format_version": (_one_of(FORMAT_VERSION), f"format version {FORMAT_VERSION}", False),
    "backup_id": (_is_id, "an id", False),
    "backup_name": (_is_text, "a non-empty string", False),
    "table_name": (_is_text, "a non-empty string", False),
    "table_id": (_is_text, "a non-empty string", False),
    "region": (_is_text, "a non-empty string", False),
    "key_schema": (_is_key_schema, "a list of 1-2 [name, S|N|B] pairs", False),
    "partitioning": (_one_of(*sorted(PARTITIONING_SCHEMES)), "'hash' or 'range'", False),
    "settings": (_is_settings, "an object", False),
    "partitions": (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list", False),
    "created_at": (_is_time, "a non-negative number (Unix time)", False),
    "completed_at": (_is_time, "a non-negative number (Unix time)", False),
    "size_bytes": (_is_count, "a non-negative integer", False),
    "item_count": (_is_count, "a non-negative integer", False),
}

assert set(_PARTITION_FIELDS) == {f.name for f in dataclasses.fields(PartitionManifest)}
assert set(_BACKUP_FIELDS) == {f.name for f in dataclasses.fields(BackupManifest)}


def _check_fields(
    obj: Any,
    spec: dict[str, tuple[Check, str, bool]],
    source: str,
    where: str,
    *,
    partition: str | None = None,
    must_be_null: tuple[str, ...] = (),
    may_be_null: tuple[str, ...] = (),
) -> dict[str, Any]:
    def fail(message: str) -> CorruptionError:
        return CorruptionError(message, partition=partition, path=source)

    if not isinstance(obj, dict):
        raise fail(f"manifest {where or 'root'} is a JSON {type(obj).__name__}, "
                   "expected an object")
    # format_version first: a newer format is "upgrade the tool", not "corrupt field".
    version = obj.get("format_version")
    if "format_version" in obj and not _one_of(FORMAT_VERSION)(version):
        raise fail(f"manifest field {where}format_version: unknown format_version "
                   f"{version!r} (this build reads {FORMAT_VERSION}; is the backup from "
                   "a newer Tessera?)")
    for name, (check, description, nullable) in spec.items():
        if name not in obj:
            raise fail(f"manifest field {where}{name} is missing")
        value = obj[name]
        if name in must_be_null:
            if value is not None:
                raise fail(f"manifest field {where}{name} must be null here, got {value!r}")
            continue
        if value is None and (nullable or name in may_be_null):
            continue
        if value is None or not check(value):
            raise fail(f"manifest field {where}{name} has a bad value {value!r}: "
                       f"expected {description}")
    unknown = sorted(set(obj) - set(spec))
    if unknown:
        raise fail(f"manifest has unknown field(s) {', '.join(where + u for u in unknown)}")
    return obj


def _partition_from_obj(
    obj: Any, source: str, where: str, mode: ManifestMode
) -> PartitionManifest:
    partition = obj.get("partition_id") if isinstance(obj, dict) else None
    partition = partition if isinstance(partition, str) else None
    if mode == "input":
        must_be_null, may_be_null = (), _COMPUTED_FIELDS + _OBJECT_FIELDS
    elif mode == "in_archive":
        must_be_null, may_be_null = ("object_size_bytes", "object_crc32c"), ("object_key",)
    else:
        must_be_null, may_be_null = (), ()
    _check_fields(obj, _PARTITION_FIELDS, source, where, partition=partition,
                  must_be_null=must_be_null, may_be_null=may_be_null)
    start, end = obj["interval_start"], obj["interval_end"]
    if end is not None and bytes.fromhex(end) <= bytes.fromhex(start):
        raise CorruptionError(
            f"manifest field {where}interval_end {end!r} is not past interval_start "
            f"{start!r}", partition=partition, path=source)
    return PartitionManifest(**obj)


def _backup_from_obj(obj: dict[str, Any], source: str) -> BackupManifest:
    _check_fields(obj, _BACKUP_FIELDS, source, "")
    partitions = [
        _partition_from_obj(entry, source, f"partitions[{i}].", "complete")
        for i, entry in enumerate(obj["partitions"])
    ]

    def fail(message: str, partition: str | None = None) -> CorruptionError:
        return CorruptionError(f"backup manifest: {message}", partition=partition,
                               path=source)

    seen: set[str] = set()
    expected_start = ""
    for i, part in enumerate(partitions):
        for name in ("backup_id", "table_id", "table_name", "key_schema", "partitioning"):
            if getattr(part, name) != obj[name]:
                raise fail(f"field partitions[{i}].{name} {getattr(part, name)!r} differs "
                           f"from the backup's {obj[name]!r}", part.partition_id)
        if part.partition_id in seen:
            raise fail(f"field partitions[{i}].partition_id {part.partition_id!r} is "
                       "duplicated", part.partition_id)
        seen.add(part.partition_id)
        # SPEC §3: intervals are sorted and cover the key space with no gap or overlap.
        if part.interval_start != expected_start:
            raise fail(f"field partitions[{i}].interval_start {part.interval_start!r} "
                       f"leaves a gap or overlap (expected {expected_start!r})",
                       part.partition_id)
        if part.interval_end is None and i != len(partitions) - 1:
            raise fail(f"field partitions[{i}].interval_end is +infinity but partitions "
                       "follow it", part.partition_id)
        expected_start = part.interval_end if part.interval_end is not None else ""
    if partitions[-1].interval_end is not None:
        raise fail(f"field partitions[{len(partitions) - 1}].interval_end is "
                   f"{partitions[-1].interval_end!r}: the last partition must reach "
                   "+infinity (null)")
    total_items = sum(p.item_count or 0 for p in partitions)
    if obj["item_count"] != total_items:
        raise fail(f"field item_count {obj['item_count']} is not the partitions' sum "
                   f"{total_items}")
    total_size = sum(p.object_size_bytes or 0 for p in partitions)
    if obj["size_bytes"] != total_size:
        raise fail(f"field size_bytes {obj['size_bytes']} is not the partitions' stored "
                   f"size {total_size}")
    if obj["completed_at"] < obj["created_at"]:
        raise fail(f"field completed_at {obj['completed_at']} is before created_at "
                   f"{obj['created_at']}")
    return BackupManifest(**{**obj, "partitions": partitions})
