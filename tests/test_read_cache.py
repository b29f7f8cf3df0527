"""engine._reads.ReadCache: point reads reuse a read transaction per thread only while
nothing was committed since it began — every read sees every write acknowledged before
it, no idle thread pins a snapshot after a commit, and closing is safe."""

from __future__ import annotations

import threading
import time

import pytest

from engine import Engine, _reads


@pytest.fixture
def engine(tmp_path):
    engine = Engine.open(tmp_path / "data", map_size_bytes=1 << 30)
    engine.create_table("Tbl", partition_key=("pk", "S"), partitions=1, sync="none")
    yield engine
    engine.close()


def pinned_snapshots(partition) -> int:
    """Reader-table entries of this process that hold a snapshot (a txn id, not '-')."""
    lines = partition.env.readers().splitlines()[1:]
    return sum(1 for line in lines if line.split()[-1] != "-")


def test_a_read_sees_every_write_acknowledged_before_it(engine):
    table = engine.table("Tbl")
    keys = [f"k{n}" for n in range(8)]
    acked = {key: -1 for key in keys}  # highest version acknowledged per key
    stop = time.monotonic() + 1.5
    problems: list[str] = []

    def writer(mine: list[str]) -> None:
        version = 0
        while time.monotonic() < stop:
            for key in mine:
                table.put_item({"pk": key, "v": version})
                acked[key] = version
            version += 1

    def reader() -> None:
        while time.monotonic() < stop and not problems:
            for key in keys:
                floor = acked[key]  # read before the get: the get must see at least this
                item = table.get_item({"pk": key})
                seen = -1 if item is None else item["v"]
                if seen < floor:
                    problems.append(f"{key}: read version {seen} after {floor} was acknowledged")

    threads = [threading.Thread(target=writer, args=(keys[:4],)),
               threading.Thread(target=writer, args=(keys[4:],))]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not problems, problems[:5]
    assert all(version > 10 for version in acked.values())  # the race really ran


def test_reuse_until_a_commit_then_nothing_stays_pinned(engine):
    table = engine.table("Tbl")
    partition = table.partitions[0]
    cache = partition.read_cache
    table.put_item({"pk": "a", "v": 1})
    assert cache.cached == 0 and pinned_snapshots(partition) == 0
    assert table.get_item({"pk": "a"}) == {"pk": "a", "v": 1}
    assert cache.cached == 1 and pinned_snapshots(partition) == 1
    generation = cache.generation
    for _ in range(50):  # no commit: the same snapshot serves every read
        table.get_item({"pk": "a"})
    assert cache.generation == generation and pinned_snapshots(partition) == 1

    parked = threading.Event()
    release = threading.Event()

    def idle_reader() -> None:  # reads once, then stays alive doing nothing
        assert table.get_item({"pk": "a"})["v"] == 1
        parked.set()
        release.wait(10)

    other = threading.Thread(target=idle_reader)
    other.start()
    parked.wait(10)
    assert cache.cached == 2 and pinned_snapshots(partition) == 2
    table.put_item({"pk": "a", "v": 2})  # the commit aborts both idle snapshots
    assert cache.generation == generation + 1
    assert cache.cached == 0 and pinned_snapshots(partition) == 0
    release.set()
    other.join()
    assert table.get_item({"pk": "a"})["v"] == 2


def test_a_failed_conditional_write_commits_nothing_and_keeps_the_cache(engine):
    from engine import ConditionalCheckFailedException

    table = engine.table("Tbl")
    cache = table.partitions[0].read_cache
    table.put_item({"pk": "a", "v": 1})
    table.get_item({"pk": "a"})
    generation = cache.generation
    with pytest.raises(ConditionalCheckFailedException):
        table.put_item({"pk": "a", "v": 9}, condition=[("attribute_not_exists", "pk")])
    assert cache.generation == generation and cache.cached == 1
    assert table.get_item({"pk": "a"})["v"] == 1


def test_more_threads_than_the_cache_holds(engine):
    table = engine.table("Tbl")
    table.batch_write(puts=[{"pk": f"k{n}", "v": n} for n in range(10)])
    count = _reads.MAX_CACHED_THREADS + 16
    barrier = threading.Barrier(count)
    results: list[bool] = []

    def read() -> None:
        barrier.wait(10)  # all alive at once: distinct thread idents
        results.append(all(table.get_item({"pk": f"k{n}"})["v"] == n for n in range(10)))
        barrier.wait(10)

    threads = [threading.Thread(target=read) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * count
    assert table.partitions[0].read_cache.cached <= _reads.MAX_CACHED_THREADS


def test_close_with_cached_snapshots_then_reopen(tmp_path):
    engine = Engine.open(tmp_path / "data", map_size_bytes=1 << 30)
    engine.create_table("Tbl", partition_key=("pk", "S"), partitions=2)
    table = engine.table("Tbl")
    table.batch_write(puts=[{"pk": f"k{n}", "v": n} for n in range(100)])
    threads = [threading.Thread(target=lambda: [table.get_item({"pk": f"k{n}"})
                                                for n in range(100)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(p.read_cache.cached for p in table.partitions) > 0
    engine.close()
    with Engine.open(tmp_path / "data") as again:
        assert [again.table("Tbl").get_item({"pk": f"k{n}"})["v"] for n in range(100)] == \
            list(range(100))
