"""CopyBackup (SPEC §8): same id in the destination, objects verified, manifest last;
progress and in-use marks on the source; local, rclone S3 (server-side) and S3 → local."""

from __future__ import annotations

import threading

import pytest
from restore_helpers import backup_of, fill_table, load_manifest

from engine import BackupInUseException, CorruptionError, Engine, ValidationException
from engine.backup import offline
from engine.backup.copy import copy_backup_objects, same_s3_bucket
from engine.backup.manifest import manifest_key
from engine.backup.restore import table_logical_checksum
from engine.store import LocalStore


class SlowLocalStore(LocalStore):
    """Holds every put until released: a copy caught in the middle."""

    def __init__(self, root, release: threading.Event) -> None:
        super().__init__(root)
        self.release = release

    def put(self, key, source, **options):
        self.release.wait(30)
        return super().put(key, source, **options)


@pytest.fixture
def eng(tmp_path):
    engine = Engine.open(tmp_path / "data", map_size_bytes=1 << 28)
    yield engine
    engine.close()


def check_restorable_from(eng, store, backup_id, target="FromCopy"):
    eng.restore_table(backup_id, target, store=store)
    done = eng.wait_for_table(target, timeout=60)
    assert done["status"] == "ACTIVE", done.get("failure_reason")
    assert table_logical_checksum(eng.table(target)) == table_logical_checksum(eng.table("Source"))


def test_copy_to_another_local_store(eng, tmp_path):
    fill_table(eng, "Source", partitions=3)
    backup_id = backup_of(eng, "Source")
    release = threading.Event()
    destination = SlowLocalStore(tmp_path / "dr", release)
    started = eng.copy_backup(backup_id, destination, region="eu-west-1")
    assert started["status"] == "COPYING" and started["backup_id"] == backup_id
    during = eng.describe_backup(backup_id)
    assert during["copies_in_progress"][0]["destination"] == destination.url
    assert during["copy_progress"][destination.url]["objects_total"] == 3
    with pytest.raises(BackupInUseException, match="copy to"):
        eng.delete_backup(backup_id)
    assert not destination.exists(manifest_key("", backup_id))
    release.set()
    after = eng.wait_for_copies(backup_id)
    assert after["status"] == "AVAILABLE" and after["copies_in_progress"] == []
    assert after["copies"][-1]["status"] == "AVAILABLE"
    assert after["copies"][-1]["region"] == "eu-west-1"
    assert offline.describe_backup(destination, backup_id)["status"] == "AVAILABLE"
    assert load_manifest(destination, backup_id) == load_manifest(eng.backup_store, backup_id)
    assert all(r.ok for r in offline.verify_backup(destination, backup_id))
    check_restorable_from(eng, destination, backup_id)
    eng.delete_backup(backup_id)  # allowed again; the copy stays
    assert offline.describe_backup(destination, backup_id)["item_count"] == 240


def test_copy_by_url_and_refusals(eng, tmp_path):
    fill_table(eng, "Source", partitions=2)
    backup_id = backup_of(eng, "Source")
    with pytest.raises(ValidationException, match="already in"):
        eng.copy_backup(backup_id, eng.backup_store.url)
    eng.copy_backup(backup_id, f"file://{tmp_path / 'dr'}")
    assert eng.wait_for_copies(backup_id)["copies"][-1]["status"] == "AVAILABLE"
    with pytest.raises(ValidationException, match="already exists"):
        copy_backup_objects(eng.backup_store, LocalStore(tmp_path / "dr"),
                            load_manifest(eng.backup_store, backup_id))


def test_copy_of_a_damaged_backup_leaves_no_backup(eng, tmp_path):
    fill_table(eng, "Source", partitions=3)
    backup_id = backup_of(eng, "Source")
    entry = load_manifest(eng.backup_store, backup_id).partitions[2]
    eng.backup_store.delete(entry.object_key)
    eng.copy_backup(backup_id, LocalStore(tmp_path / "dr"))
    outcome = eng.wait_for_copies(backup_id)["copies"][-1]
    assert outcome["status"] == "FAILED" and entry.partition_id in outcome["failure_reason"]
    destination = LocalStore(tmp_path / "dr")
    assert list(destination.list(f"{backup_id}/")) == []  # nothing half-copied stays
    with pytest.raises(CorruptionError, match=entry.partition_id):
        offline.copy_backup(eng.backup_store, destination, backup_id)


def test_copy_local_to_s3_then_server_side_within_the_bucket_then_s3_to_local(
        eng, tmp_path, make_s3_store):
    fill_table(eng, "Source", partitions=3)
    backup_id = backup_of(eng, "Source")
    first = make_s3_store("rclone")
    eng.copy_backup(backup_id, first)
    assert eng.wait_for_copies(backup_id)["copies"][-1]["status"] == "AVAILABLE"
    check_restorable_from(eng, first, backup_id, "FromS3")

    second = make_s3_store("rclone", prefix="elsewhere/tessera")
    assert same_s3_bucket(first, second)  # one CopyObject per partition, no bytes through us
    bytes_seen = []
    result = offline.copy_backup(first, second, backup_id, on_bytes=bytes_seen.append)
    assert result["status"] == "AVAILABLE" and sum(bytes_seen) == result["size_bytes"]
    check_restorable_from(eng, second, backup_id, "FromServerSide")

    local = LocalStore(tmp_path / "from-s3")
    offline.copy_backup(second, local, backup_id)
    assert all(r.ok for r in offline.verify_backup(local, backup_id))
    check_restorable_from(eng, local, backup_id, "FromS3ToLocal")


def test_objects_over_the_copy_object_limit_are_streamed_within_a_bucket(
        eng, make_s3_store, monkeypatch):
    from engine.backup import copy as backup_copy

    fill_table(eng, "Source", partitions=3)
    backup_id = backup_of(eng, "Source")
    first = make_s3_store("rclone")
    eng.copy_backup(backup_id, first)
    assert eng.wait_for_copies(backup_id)["copies"][-1]["status"] == "AVAILABLE"
    second = make_s3_store("rclone", prefix="big/tessera")
    server_side_copies = []
    real = second.copy_object_from
    monkeypatch.setattr(second, "copy_object_from",
                        lambda source, key: server_side_copies.append(key) or real(source, key))
    monkeypatch.setattr(backup_copy, "SERVER_SIDE_COPY_MAX_BYTES", 0)  # as if all were > 5 GiB
    result = offline.copy_backup(first, second, backup_id)
    assert result["status"] == "AVAILABLE"
    assert server_side_copies == []  # every object went through us, none via CopyObject
    check_restorable_from(eng, second, backup_id, "Streamed")
