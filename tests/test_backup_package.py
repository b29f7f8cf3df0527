"""Partition objects: package → verify → unpack, restore by hand, and hostile objects."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import lmdb
import pytest
import zstandard
from engine._itemcodec import encode_item
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backup import package as package_module
from engine.backup.logical import logical_checksum
from engine.backup.manifest import (
    BackupManifest,
    PartitionManifest,
    manifest_key,
    partition_object_key,
)
from engine.backup.package import package_partition, package_partition_to_file
from engine.backup.unpack import compare_partition, unpack_partition
from engine.backup.verify import verify_packaged_file, verify_partition_object
from engine.errors import CorruptionError, ValidationException

BACKUP_LSN = 1234


def make_export(directory: Path, count: int, seed: int = 1, lsn: int = BACKUP_LSN) -> dict:
    """An environment shaped like Partition.export_copy's output; returns its items."""
    rnd = random.Random(seed)
    source = directory.with_name(directory.name + "-live")
    keys = {rnd.randbytes(rnd.randint(8, 40)) for _ in range(count)}
    # Stored items (engine._itemcodec): the logical walk checks each one's checksums.
    items = {key: encode_item({"p": rnd.randbytes(rnd.randint(90, 190))}, key)
             for key in sorted(keys)}
    env = lmdb.open(str(source), subdir=True, max_dbs=4, map_size=1 << 30)
    try:
        items_db, meta_db = env.open_db(b"items"), env.open_db(b"meta")
        with env.begin(write=True) as txn:
            for key, value in items.items():
                txn.put(key, value, db=items_db)
            txn.put(b"applied_lsn", lsn.to_bytes(8, "big"), db=meta_db)
            txn.put(b"other", b"x", db=meta_db)
        directory.mkdir()
        env.copy(str(directory), compact=True)
    finally:
        env.close()
    shutil.rmtree(source)
    return items


def read_items(env_dir: Path) -> dict:
    env = lmdb.open(str(env_dir), readonly=True, lock=False, subdir=True, max_dbs=4)
    try:
        with env.begin(db=env.open_db(b"items", create=False)) as txn:
            return dict(txn.cursor().iternext())
    finally:
        env.close()


def base_manifest(**changes) -> PartitionManifest:
    fields = dict(
        backup_id="01J000-us-east-1", table_name="Music", table_id="tbl-1",
        partition_id="p0001", interval_start="", interval_end=None,
        key_schema=[["Artist", "S"], ["Song", "S"]], partitioning="hash",
        backup_lsn=BACKUP_LSN, object_key="bk/01J000-us-east-1/partitions/p0001.tar.zst",
        created_at=1700000000.5,
    )
    fields.update(changes)
    return PartitionManifest(**fields)


@pytest.fixture
def export(tmp_path):
    env_dir = tmp_path / "export"
    items = make_export(env_dir, 2000)
    yield env_dir, items


@pytest.fixture
def packaged(export, tmp_path):
    env_dir, items = export
    path = tmp_path / "p0001.tar.zst"
    result = package_partition_to_file(env_dir, base_manifest(), path)
    yield path, result, items


# ------------------------------------------------------------------------ round trip


def test_round_trip(packaged, tmp_path):
    path, result, items = packaged
    assert result.item_count == len(items)
    assert result.object_size_bytes == path.stat().st_size
    assert result.manifest.object_key == base_manifest().object_key
    dest = tmp_path / "restored"
    with open(path, "rb") as source:
        inner = unpack_partition(source, dest, result.manifest, source_name="key")
    assert read_items(dest) == items
    assert logical_checksum(dest) == (len(items), result.logical_checksum)
    assert inner.item_count == len(items) and inner.object_size_bytes is None
    assert sorted(p.name for p in dest.iterdir()) == ["data.mdb", "partition.json"]
    verdict = verify_packaged_file(path, result.manifest)
    assert verdict.ok, verdict.message
    assert verdict.item_count == len(items)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "export", "p0001.tar.zst", "restored"]  # verify cleaned its scratch copy


def test_package_to_stream_matches_file_and_reports_progress(packaged, export):
    path, result, _ = packaged
    seen: list[int] = []
    out = io.BytesIO()
    streamed = package_partition(export[0], base_manifest(), out, progress=seen.append)
    assert out.getvalue() == path.read_bytes()  # deterministic: same input, same object
    assert streamed.object_crc32c == result.object_crc32c
    assert sum(seen) == result.data_size_bytes


def test_logical_checksum_is_layout_independent(export, tmp_path):
    env_dir, items = export
    fresh = tmp_path / "fresh"
    env = lmdb.open(str(fresh), subdir=True, max_dbs=4, map_size=1 << 30)
    with env.begin(write=True) as txn:
        db = env.open_db(b"items", txn=txn)
        for key in sorted(items, reverse=True):  # different insertion order and pages
            txn.put(key, items[key], db=db)
    assert logical_checksum(env) == logical_checksum(env_dir)
    env.close()


def test_package_refuses_export_at_wrong_lsn(export, tmp_path):
    with pytest.raises(ValidationException, match="applied_lsn 1234.*backup_lsn 99"):
        package_partition_to_file(export[0], base_manifest(backup_lsn=99), tmp_path / "x")
    assert not list(tmp_path.glob("x*"))


def test_in_archive_manifest_leaves_object_fields_null(packaged):
    path, result, _ = packaged
    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompress(
            path.read_bytes()))) as tar:
        assert tar.getnames() == ["partition.json", "data.mdb"]
        inner = json.loads(tar.extractfile("partition.json").read())
    assert inner["object_key"] is None and inner["object_size_bytes"] is None
    assert inner["item_count"] == result.item_count
    assert inner["data_crc32c"] == result.data_crc32c


def test_restore_by_hand_with_zstd_cli_and_tarfile(packaged, tmp_path):
    """The procedure of RESTORE_BY_HAND.md: no Tessera code past this point."""
    path, _, items = packaged
    zstd = shutil.which("zstd")
    if zstd is None:
        pytest.skip("the zstd command is not installed (apt-get install zstd): this test is the "
                    "README's restore-by-hand procedure, which needs the real CLI")
    tar_path = tmp_path / "p.tar"
    subprocess.run([zstd, "-d", "-q", str(path), "-o", str(tar_path)], check=True)
    out = tmp_path / "by-hand"
    with tarfile.open(tar_path) as tar:
        tar.extractall(out, filter="data")
    assert json.loads((out / "partition.json").read_bytes())["partition_id"] == "p0001"
    assert read_items(out) == items
    if shutil.which("tar"):
        out2 = tmp_path / "by-hand-tar"
        out2.mkdir()
        subprocess.run(f"{zstd} -dc {path} | tar -xf - -C {out2}", shell=True, check=True)
        assert (out2 / "data.mdb").read_bytes() == (out / "data.mdb").read_bytes()


# ---------------------------------------------------------------------- bad objects


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compare", [False, True], ids=["reopen", "compare-with-export"])
@pytest.mark.parametrize("where", [0, 5, 40, 300, 1000, 0.5, -200, -20, -3])
def test_flipped_byte_is_never_ok(export, tmp_path, monkeypatch, where, compare):
    def corrupt(path: Path) -> None:
        size = path.stat().st_size
        flip_byte(path, int(size * where) if isinstance(where, float) else where)

    monkeypatch.setattr(package_module, "corrupt_packaged_object_hook", corrupt)
    path = tmp_path / "p.tar.zst"
    result = package_partition_to_file(export[0], base_manifest(), path)
    verdict = verify_packaged_file(path, result.manifest,
                                   export_dir=export[0] if compare else None)
    assert verdict.status in ("checksum_mismatch", "corrupt"), verdict
    assert "p.tar.zst" in verdict.message
    with pytest.raises(CorruptionError, match=r"p0001"), open(path, "rb") as source:
        unpack_partition(source, tmp_path / "out", result.manifest, source_name="bk/p.tar.zst")
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("keep", [0, 3, 20, 600, 0.5, -10, -4, -1])
def test_truncated_object(packaged, tmp_path, keep):
    path, result, _ = packaged
    data = path.read_bytes()
    cut = data[: int(len(data) * keep) if isinstance(keep, float) else keep]
    with pytest.raises(CorruptionError, match="truncated|ends"):
        unpack_partition(io.BytesIO(cut), tmp_path / "out", result.manifest,
                         source_name="bk/p0001.tar.zst")
    assert not any((tmp_path / "out").iterdir())
    verdict = verify_partition_object(io.BytesIO(cut), result.manifest, work_dir=tmp_path,
                                      source_name="bk/p0001.tar.zst")
    assert verdict.status == "size_invalid"


def test_trailing_garbage(packaged, tmp_path):
    path, result, _ = packaged
    for extra in (b"x", b"\0" * 9, b"garbage" * 1000, path.read_bytes()):
        with pytest.raises(CorruptionError, match="trailing garbage"):
            unpack_partition(io.BytesIO(path.read_bytes() + extra), tmp_path / "out",
                             source_name="bk/p0001.tar.zst")


def test_missing_object(packaged, tmp_path):
    _, result, _ = packaged
    verdict = verify_partition_object(tmp_path / "nope.tar.zst", result.manifest,
                                      work_dir=tmp_path)
    assert verdict.status == "missing"


def test_verify_against_export_writes_nothing(packaged, export, tmp_path):
    path, result, items = packaged
    before = sorted(p.name for p in tmp_path.rglob("*"))
    verdict = verify_packaged_file(path, result.manifest, export_dir=export[0])
    assert verdict.ok, verdict.message
    assert (verdict.item_count, verdict.logical_checksum) == (len(items),
                                                             result.logical_checksum)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("offset", [0, 4096, 12345, -1])
def test_compare_names_the_first_differing_byte(packaged, export, offset):
    # The object is intact, the export beside it is not: compare must not call it equal.
    path, result, _ = packaged
    data_path = export[0] / "data.mdb"
    position = offset % data_path.stat().st_size
    flip_byte(data_path, position)
    with pytest.raises(CorruptionError, match=rf"differs from .*data.mdb at byte {position} \("):
        with open(path, "rb") as source:
            compare_partition(source, data_path, result.manifest, source_name="bk/p1")
    verdict = verify_packaged_file(path, result.manifest, export_dir=export[0])
    assert verdict.status == "corrupt" and f"at byte {position}" in verdict.message


@pytest.mark.parametrize("change", [-4096, 4096])
def test_compare_refuses_a_reference_of_another_size(packaged, export, change):
    path, result, _ = packaged
    data_path = export[0] / "data.mdb"
    size = data_path.stat().st_size
    with open(data_path, "r+b") as handle:
        handle.truncate(size + change)
    with pytest.raises(CorruptionError, match=rf"is {size} bytes but .* is {size + change}"):
        with open(path, "rb") as source:
            compare_partition(source, data_path, result.manifest, source_name="bk/p1")


def test_verify_reports_logical_mismatch(packaged, tmp_path):
    path, result, _ = packaged
    wrong = dataclasses.replace(result.manifest, logical_checksum="0" * 64)
    verdict = verify_packaged_file(path, wrong)
    assert verdict.status == "corrupt" and "logical_checksum" in verdict.message


def craft(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A hand-made object: a tar of ``members`` through zstd, like a hostile uploader."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return zstandard.ZstdCompressor(level=1, write_checksum=True).compress(raw.getvalue())


def parts_of(path: Path) -> tuple[bytes, bytes]:
    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompress(
            path.read_bytes()))) as tar:
        return (tar.extractfile("partition.json").read(),
                tar.extractfile("data.mdb").read())


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


@pytest.mark.parametrize("case, message", [
    ("absolute", "absolute path"),
    ("dotdot", r"'\.\.'"),
    ("symlink", "symbolic link"),
    ("hardlink", "hard link"),
    ("device", "not a regular file"),
    ("extra", "extra tar member 'notes.txt'"),
    ("unknown", "unexpected: expected 'data.mdb'"),
    ("duplicate", "duplicated or out of order"),
    ("reversed", "duplicated or out of order"),
    ("oversize", "larger than the .* bytes the manifest says"),
    ("bad_data", "data.mdb CRC32C"),
    ("no_data", "ends before its data.mdb"),
])
def test_hostile_archives_are_refused(packaged, tmp_path, case, message):
    path, result, _ = packaged
    manifest_json, data = parts_of(path)
    good = [(member("partition.json"), manifest_json), (member("data.mdb"), data)]
    evil = {
        "absolute": [good[0], (member("/tmp/data.mdb"), data)],
        "dotdot": [good[0], (member("../data.mdb"), data)],
        "symlink": [good[0], (member("data.mdb", tarfile.SYMTYPE, "/etc/passwd"), None)],
        "hardlink": [good[0], (member("data.mdb", tarfile.LNKTYPE, "partition.json"), None)],
        "device": [good[0], (member("data.mdb", tarfile.CHRTYPE), None)],
        "extra": [*good, (member("notes.txt"), b"hello")],
        "unknown": [good[0], (member("evil.sh"), b"rm -rf /")],
        "duplicate": [good[0], good[0], good[1]],
        "reversed": [good[1], good[0]],
        "oversize": [good[0], (member("data.mdb"), data + b"\0" * 4096)],
        "bad_data": [good[0], (member("data.mdb"), data[:-1] + b"\x01")],
        "no_data": [good[0]],
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    dest = tmp_path / "out"
    with pytest.raises(CorruptionError, match=message) as caught:
        unpack_partition(io.BytesIO(craft(evil)), dest, result.manifest,
                         source_name="bk/evil.tar.zst")
    assert "bk/evil.tar.zst" in str(caught.value) and "p0001" in str(caught.value)
    assert list(dest.iterdir()) == []  # nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "out"])
    assert not Path("/tmp/data.mdb").exists() or case != "absolute"


def test_edited_in_archive_manifest(packaged, tmp_path):
    path, result, _ = packaged
    manifest_json, data = parts_of(path)
    edited = json.loads(manifest_json)
    edited["item_count"] += 1
    blob = craft([(member("partition.json"), json.dumps(edited).encode()),
                  (member("data.mdb"), data)])
    with pytest.raises(CorruptionError, match=r"item_count=2001.*expects 2000.*p0001"):
        unpack_partition(io.BytesIO(blob), tmp_path / "out", result.manifest,
                         source_name="bk/p0001.tar.zst")
    # Without the backup manifest the object is self-consistent but lies about its
    # count; verify recounts from the data and catches it.
    lying = dataclasses.replace(result.manifest, item_count=2001,
                                object_size_bytes=len(blob), object_crc32c=None)
    from engine.backup.checksums import CrcCountingReader
    counted = CrcCountingReader(io.BytesIO(blob))
    counted.drain()
    lying = dataclasses.replace(lying, object_crc32c=counted.crc32c_hex)
    verdict = verify_partition_object(io.BytesIO(blob), lying, work_dir=tmp_path,
                                      source_name="bk/p0001.tar.zst")
    assert verdict.status == "checksum_mismatch" and "2000 items" in verdict.message

    edited["data_size_bytes"] = "big"
    blob = craft([(member("partition.json"), json.dumps(edited).encode()),
                  (member("data.mdb"), data)])
    with pytest.raises(CorruptionError, match="data_size_bytes"):
        unpack_partition(io.BytesIO(blob), tmp_path / "out2", source_name="bk/x")


def test_unpack_refuses_to_overwrite(packaged, tmp_path):
    path, result, _ = packaged
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "data.mdb").symlink_to("/etc/passwd")
    with pytest.raises(ValidationException, match="already exists"), open(path, "rb") as f:
        unpack_partition(f, dest, source_name="k")


# ------------------------------------------------------------------------- manifests


def test_object_keys():
    assert partition_object_key("bk", "b1", "p7") == "bk/b1/partitions/p7.tar.zst"
    assert partition_object_key("", "b1", "p7") == "b1/partitions/p7.tar.zst"
    assert partition_object_key("a/b/", "b1", "p7") == "a/b/b1/partitions/p7.tar.zst"
    assert manifest_key("", "b1") == "b1/manifest.json"
    assert manifest_key("bk", "b1") == "bk/b1/manifest.json"
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValidationException):
            partition_object_key("bk", "b1", bad)


hex_keys = st.binary(min_size=1, max_size=12).map(bytes.hex)
ids = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,20}", fullmatch=True)
names = st.text(min_size=1, max_size=20)


@st.composite
def backup_manifests(draw) -> BackupManifest:
    bounds = sorted(set(draw(st.lists(hex_keys, max_size=4))), key=bytes.fromhex)
    starts, ends = ["", *bounds], [*bounds, None]
    common = dict(backup_id=draw(ids), table_name=draw(names), table_id=draw(names),
                  key_schema=draw(st.sampled_from([[["pk", "S"]], [["pk", "N"], ["sk", "B"]]])),
                  partitioning=draw(st.sampled_from(["hash", "range"])))
    counts = st.integers(0, 2**63)
    partitions = [
        PartitionManifest(
            **common, partition_id=f"p{i}", interval_start=start, interval_end=end,
            backup_lsn=draw(counts), item_count=draw(counts),
            logical_checksum=draw(st.binary(min_size=32, max_size=32)).hex(),
            data_size_bytes=draw(counts), data_crc32c=f"{draw(st.integers(0, 2**32 - 1)):08x}",
            object_key=f"k/p{i}", object_size_bytes=draw(counts),
            object_crc32c=f"{draw(st.integers(0, 2**32 - 1)):08x}",
            compression_level=draw(st.integers(-5, 22)),
            created_at=draw(st.floats(0, 4e9)),
        )
        for i, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]
    created = draw(st.floats(0, 4e9))
    return BackupManifest(
        **common, backup_name=draw(names), region="us-east-1",
        settings=draw(st.dictionaries(st.text(max_size=5), st.integers() | st.text())),
        partitions=partitions, created_at=created, completed_at=created + 1.5,
        size_bytes=sum(p.object_size_bytes for p in partitions),
        item_count=sum(p.item_count for p in partitions),
    )


@settings(max_examples=60, deadline=None)
@given(backup_manifests(), st.data())
def test_manifest_round_trip_and_missing_fields(manifest, data):
    encoded = manifest.to_json()
    assert BackupManifest.from_json(encoded, "bk/b/manifest.json") == manifest
    assert BackupManifest.from_json(encoded, "x").to_json() == encoded  # stable bytes
    part = manifest.partitions[0]
    assert PartitionManifest.from_json(part.to_json(), "x") == part

    obj = json.loads(encoded)
    field = data.draw(st.sampled_from(sorted(obj)))
    del obj[field]
    with pytest.raises(CorruptionError, match=rf"{field}.*bk/b/manifest.json"):
        BackupManifest.from_json(json.dumps(obj).encode(), "bk/b/manifest.json")

    obj = json.loads(encoded)
    index = data.draw(st.integers(0, len(obj["partitions"]) - 1))
    field = data.draw(st.sampled_from(sorted(obj["partitions"][index])))
    del obj["partitions"][index][field]
    with pytest.raises(CorruptionError, match=rf"partitions\[{index}\]\.{field} is missing"):
        BackupManifest.from_json(json.dumps(obj).encode(), "bk/b/manifest.json")


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.update(format_version=2), "unknown format_version 2"),
    (lambda o: o.update(item_count="7"), "item_count has a bad value"),
    (lambda o: o.update(item_count=True), "item_count has a bad value"),
    (lambda o: o.update(data_crc32c="XYZ"), "data_crc32c has a bad value"),
    (lambda o: o.update(interval_end=""), "interval_end '' is not past"),
    (lambda o: o.update(surprise=1), "unknown field"),
    (lambda o: o.update(object_crc32c=None), "object_crc32c has a bad value"),
])
def test_partition_manifest_rejects(packaged, edit, message):
    obj = json.loads(packaged[1].manifest.to_json())
    edit(obj)
    with pytest.raises(CorruptionError, match=message) as caught:
        PartitionManifest.from_json(json.dumps(obj).encode(), "bk/obj")
    assert "bk/obj" in str(caught.value)


def test_manifest_rejects_non_json_and_duplicates():
    for blob in (b"\xff", b"[1]", b'{"a": 1, "a": 2}', b'{"created_at": NaN}'):
        with pytest.raises(CorruptionError, match="bk/m"):
            BackupManifest.from_json(blob, "bk/m")


def test_tar_headers_for_data_over_8_gib_use_pax():
    """ustar cannot hold sizes ≥ 8 GiB; the PAX header must carry them, and we read it."""
    from engine.backup.tar_stream import TarReader, regular_file_header

    size = 9 << 30
    header = regular_file_header("data.mdb", size, 0)
    assert len(header) > 512  # an extended header precedes the ustar one
    parsed = TarReader(io.BytesIO(header)).next_header()
    assert (parsed.name, parsed.size, parsed.type) == ("data.mdb", size, tarfile.REGTYPE)
    info = tarfile.TarFile(fileobj=io.BytesIO(header + b"\0" * 1024)).next()  # stdlib agrees
    assert info.size == size
