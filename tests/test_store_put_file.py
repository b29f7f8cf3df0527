"""``ObjectStore.put_file`` on every backend: same contract as ``put``; LocalStore links."""

from __future__ import annotations

import os
import random

import google_crc32c
import pytest

from engine.errors import ChecksumMismatchError
from engine.store.base import ObjectStore
from engine.store.local import LocalStore


@pytest.fixture
def staged(tmp_path):
    data = random.Random(3).randbytes(11 * 1024 * 1024 + 17)  # multipart on S3 (5 MiB parts)
    path = tmp_path / "staged.bin"
    path.write_bytes(data)
    return path, data


def test_put_file_stores_the_bytes(store, staged):
    path, data = staged
    seen = []
    info = store.put_file("pf/obj", path, size=len(data), crc32c=google_crc32c.value(data),
                          progress=seen.append)
    assert info.size == len(data) and info.crc32c == google_crc32c.value(data)
    assert sum(seen) == len(data)
    assert store.get("pf/obj") == data
    assert store.head("pf/obj").crc32c == google_crc32c.value(data)


def test_put_file_with_wrong_checksum_stores_nothing(store, staged):
    path, data = staged
    with pytest.raises(ChecksumMismatchError):
        store.put_file("pf/bad", path, crc32c=google_crc32c.value(data) ^ 1)
    assert not store.exists("pf/bad")
    assert [info.key for info in store.list("pf/")] == []


def test_local_put_file_links_instead_of_copying(tmp_path, staged):
    path, data = staged
    store = LocalStore(tmp_path / "store")
    store.put_file("a/obj", path, crc32c=google_crc32c.value(data))
    stored = tmp_path / "store" / "a" / "obj"
    assert os.path.samefile(stored, path)  # a hard link: both names alive, one file
    path.unlink()  # the caller may delete its staged file
    assert store.get("a/obj") == data
    assert [info.key for info in store.list("")] == ["a/obj"]


def test_local_put_file_falls_back_to_a_copy(tmp_path, staged, monkeypatch):
    path, data = staged
    store = LocalStore(tmp_path / "store")

    def no_links(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    info = store.put_file("a/obj", path, crc32c=google_crc32c.value(data))
    assert info.md5 is not None  # went through put
    assert not os.path.samefile(tmp_path / "store" / "a" / "obj", path)  # a copy
    assert ObjectStore.put_file is not LocalStore.put_file
