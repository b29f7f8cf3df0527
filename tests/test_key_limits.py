"""Keys up to DynamoDB's limits (issue 12): 2048-byte partition keys, 1024-byte sort keys,
S counted in UTF-8 bytes and B in raw bytes, stored in LMDB's 511-byte keys by key
format 2 (``engine._keycodec``: compacted components; ``engine.longkeys``: Query order).

* the codec: every key DynamoDB accepts fits LMDB; stored order equals DynamoDB order
  except inside a bucket; ``bucket_end`` finds exactly the buckets;
* the table: the exact limits and one byte over (DynamoDB's messages, nothing written)
  for every key type; Query order, ranges and paging over long sort keys sharing a long
  prefix, against a model (hypothesis);
* tables of key format 1 (created before) keep their plain keys and LMDB's limit.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from restore_helpers import backup_of

from engine import Engine, ValidationException
from engine import _keycodec as kc
from engine.backup.manifest import manifest_key
from engine.catalog import Catalog

HASH = "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes"
RANGE = ("One or more parameter values were invalid: Aggregated size of all range keys has "
         "exceeded the size limit of 1024 bytes")
COMPACT = kc.MODE_HASHED | kc.MODE_COMPACT


def true_bytes(value) -> bytes:
    """DynamoDB's order of S and B values: by UTF-8 bytes, or bytewise."""
    return value.encode() if isinstance(value, str) else bytes(value)


# ------------------------------------------------------------------------- codec
@pytest.mark.parametrize("pk_type,pk", [("S", "p" * 2048), ("B", b"\x00" * 2048),
                                        ("S", "\u00e9" * 1024), ("N", -(10 ** 37) - 1)])
@pytest.mark.parametrize("sk_type,sk", [("S", "\x00" * 1024), ("B", b"\x00" * 1024),
                                        ("B", b"\xff" * 1024), ("N", None)])
@pytest.mark.parametrize("mode", [kc.MODE_COMPACT, COMPACT])
def test_every_key_dynamodb_accepts_fits_lmdb(pk_type, pk, sk_type, sk, mode):
    key = kc.storage_key(mode, pk, pk_type, sk, sk_type if sk is not None else None)
    assert len(key) <= 511
    plain = kc.storage_key(mode & kc.MODE_HASHED, pk, pk_type, sk,
                           sk_type if sk is not None else None)
    if len(plain) <= 200:
        assert key == plain  # short keys are stored as they always were


def test_index_entry_keys_fit_lmdb():
    longest = kc.storage_key(COMPACT, b"\x00" * 2048, "B")
    longest += kc.compact(kc.encode_key(b"\x00" * 1024, "B", max_len=1024))
    longest += kc.tail(kc.encode_key(b"\x00" * 2048, "B") + kc.encode_key(b"\x00" * 1024, "B"))
    assert len(longest) <= 511
    assert kc.tail(b"\x03abc\x00\x01") == b"\x03abc\x00\x01"


long_bodies = st.one_of(
    st.binary(min_size=1, max_size=1024),
    st.builds(lambda head, tail: head + tail,
              st.sampled_from([b"a" * 164, b"a" * 163 + b"\x00", b"\x00" * 82, b"a" * 165]),
              st.binary(max_size=12)),
)


def ascii_bytes(value: bytes) -> bytes:
    return bytes(byte & 0x7F for byte in value)


def component(value: bytes, key_type: str) -> bytes:
    data = value if key_type == "B" else value.decode()
    return kc.compact(kc.encode_key(data, key_type, max_len=1024))


@settings(max_examples=400)
@given(a=long_bodies, b=long_bodies, key_type=st.sampled_from(["B", "S"]))
def test_stored_order_is_dynamodb_order_outside_a_bucket(a, b, key_type):
    if key_type == "S":  # ASCII text (NUL included): its UTF-8 bytes are the bytes
        a, b = ascii_bytes(a), ascii_bytes(b)
    stored_a, stored_b = component(a, key_type), component(b, key_type)
    assert len(stored_a) <= 200 and len(stored_b) <= 200
    end_a, end_b = kc.bucket_end(stored_a, 0), kc.bucket_end(stored_b, 0)
    plain_a = kc.encode_key(a if key_type == "B" else a.decode(), key_type)
    assert (end_a >= 0) == (len(plain_a) - 3 > kc.CUT)  # a bucket iff the body is long
    if a == b:
        assert stored_a == stored_b
        return
    same_bucket = end_a >= 0 and end_b >= 0 and stored_a[:end_a] == stored_b[:end_b]
    if not same_bucket:
        assert (stored_a < stored_b) == (a < b)
    if stored_a != plain_a:  # compacted: recognisable and self-delimiting
        assert kc.component_end(stored_a + b"\x02\x00", 0) == len(stored_a)


def test_bucket_prefix_never_splits_an_escape_pair():
    value = b"a" * (kc.CUT - 1) + b"\x00" + b"z" * 50
    stored = component(value, "B")
    end = kc.bucket_end(stored, 0)
    assert stored[end - 1:end] == b"a" and stored[end:end + 2] == b"\x00\x02"
    plain = kc.encode_key(value, "B")
    assert kc.bucket_end(plain, 0) == end  # the plain and compacted forms agree


# ------------------------------------------------------------------------- table
@pytest.fixture
def engine(tmp_path):
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 27) as engine:
        yield engine


def _make(engine, name, pk_type, sk_type):
    engine.create_table(name, partition_key=("pk", pk_type),
                        sort_key=None if sk_type is None else ("sk", sk_type), partitions=3)
    return engine.table(name)


def _value(key_type, size):
    return {"S": "x" * size, "B": b"\x00" * size}[key_type]


@pytest.mark.parametrize("pk_type", ["S", "B"])
def test_partition_keys_at_the_limit_and_one_over(engine, pk_type):
    table = _make(engine, "Hash", pk_type, None)
    at_limit = {"pk": _value(pk_type, 2048)}
    table.put_item({**at_limit, "v": 1})
    assert table.get_item(at_limit) == {**at_limit, "v": 1}
    table.update_item(at_limit, "SET v = v + :one", values={":one": 1})
    assert table.get_item(at_limit)["v"] == 2
    assert table.query(at_limit["pk"])[0] == [{**at_limit, "v": 2}]
    over = {"pk": _value(pk_type, 2049)}
    for attempt in (lambda: table.put_item({**over, "v": 1}),
                    lambda: table.get_item(over),
                    lambda: table.update_item(over, "SET v = :one", values={":one": 1}),
                    lambda: table.delete_item(over),
                    lambda: table.batch_write(puts=[{**over, "v": 1}]),
                    lambda: table.query(over["pk"])):
        with pytest.raises(ValidationException) as caught:
            attempt()
        assert str(caught.value) == HASH
    assert list(table.iter_items()) == [{**at_limit, "v": 2}]
    assert table.delete_item(at_limit, return_values="ALL_OLD") == {**at_limit, "v": 2}
    assert list(table.iter_items()) == []


def test_multibyte_strings_count_utf8_bytes(engine):
    table = _make(engine, "Utf8", "S", "S")
    key = {"pk": "\u00e9" * 1024, "sk": "\u20ac" * 341 + "a"}  # 2048 and 1024 bytes
    table.put_item(key)
    assert table.get_item(key) == key
    with pytest.raises(ValidationException, match="maximum size limit of2048"):
        table.put_item({"pk": "\u00e9" * 1024 + "a", "sk": "s"})
    with pytest.raises(ValidationException, match="size limit of 1024 bytes"):
        table.put_item({"pk": "p", "sk": "\u20ac" * 342})
    assert list(table.iter_items()) == [key]


@pytest.mark.parametrize("sk_type", ["S", "B", "N"])
def test_sort_keys_at_the_limit_and_one_over(engine, sk_type):
    table = _make(engine, "Range", "B", sk_type)
    pk = b"\x00" * 2048
    if sk_type == "N":
        sk = -(10 ** 37) - 1  # 38 digits: numbers are never long
        key = {"pk": pk, "sk": sk}
        table.put_item(key)
        assert table.get_item(key) == key
        return
    key = {"pk": pk, "sk": _value(sk_type, 1024)}
    table.put_item({**key, "v": 1})
    assert table.get_item(key) == {**key, "v": 1}
    over = {"pk": pk, "sk": _value(sk_type, 1025)}
    for attempt in (lambda: table.put_item(over), lambda: table.get_item(over),
                    lambda: table.delete_item(over),
                    lambda: table.query(pk, ("=", over["sk"])),
                    lambda: table.query(pk, exclusive_start_key=over)):
        with pytest.raises(ValidationException) as caught:
            attempt()
        assert str(caught.value) == RANGE
    assert list(table.iter_items()) == [{**key, "v": 1}]


# A model of one long partition key holding sort keys built to share long prefixes (so
# most fall into a few buckets), queried with every condition, both directions, paged.
_STEMS = [b"", b"k" * 170, b"k" * 164 + b"\x00", b"k" * 200 + b"\x00" * 3, b"\x00" * 90]
sort_keys = st.builds(lambda stem, tail: (stem + tail)[:1024] or b"\x01",
                      st.sampled_from(_STEMS),
                      st.binary(max_size=3) | st.binary(min_size=800, max_size=900))


@pytest.fixture(scope="module")
def model_engine(tmp_path_factory):
    with Engine.open(tmp_path_factory.mktemp("model") / "data",
                     map_size_bytes=1 << 27) as engine:
        yield engine


_counter = iter(range(1_000_000))


@settings(max_examples=25, deadline=None)
@given(keys=st.lists(sort_keys, min_size=1, max_size=40, unique=True),
       sk_type=st.sampled_from(["B", "S"]), data=st.data())
def test_query_order_ranges_and_paging_match_a_model(model_engine, keys, sk_type, data):
    table = _make(model_engine, f"Model{next(_counter)}", "S", sk_type)
    if sk_type == "S":  # ASCII text (NUL included), so UTF-8 order is the bytes' order
        keys = list(dict.fromkeys(ascii_bytes(key).decode() for key in keys))
    pk = "q" * 2048
    for key in keys:
        table.put_item({"pk": pk, "sk": key, "n": len(key)})
    table.put_item({"pk": "other", "sk": keys[0]})
    ordered = sorted(keys, key=true_bytes)
    pivot, other = data.draw(st.sampled_from(keys)), data.draw(st.sampled_from(keys))
    lo, hi = sorted((pivot, other), key=true_bytes)
    prefix = data.draw(st.integers(0, len(true_bytes(pivot))).map(
        lambda n: true_bytes(pivot)[:n]))
    if sk_type == "S":
        prefix = prefix.decode()
    conditions = {
        None: ordered,
        ("=", pivot): [pivot],
        ("<", pivot): [k for k in ordered if true_bytes(k) < true_bytes(pivot)],
        ("<=", pivot): [k for k in ordered if true_bytes(k) <= true_bytes(pivot)],
        (">", pivot): [k for k in ordered if true_bytes(k) > true_bytes(pivot)],
        (">=", pivot): [k for k in ordered if true_bytes(k) >= true_bytes(pivot)],
        ("between", lo, hi): [k for k in ordered
                              if true_bytes(lo) <= true_bytes(k) <= true_bytes(hi)],
        ("begins_with", prefix): [k for k in ordered
                                  if true_bytes(k).startswith(true_bytes(prefix))],
    }
    condition = data.draw(st.sampled_from(list(conditions)))
    forward = data.draw(st.booleans())
    limit = data.draw(st.none() | st.integers(1, 7))
    want = conditions[condition] if forward else conditions[condition][::-1]
    got, start = [], None
    for _ in range(len(keys) + 2):
        items, start = table.query(pk, condition, forward=forward, limit=limit,
                                   exclusive_start_key=start)
        got += [item["sk"] for item in items]
        assert all(item["n"] == len(item["sk"]) for item in items)
        if start is None:
            break
    assert got == want
    model_engine.delete_table(table.name)


def test_scan_pages_visit_every_long_key_once(engine):
    table = _make(engine, "Scanned", "B", "B")
    rng = random.Random(7)
    keys = {(bytes([rng.randrange(3)]) * rng.choice([1, 300, 2048]),
             b"s" * rng.choice([1, 170, 1022]) + bytes([i % 256, i // 256]))
            for i in range(120)}
    for pk, sk in keys:
        table.put_item({"pk": pk, "sk": sk})
    seen, start = [], None
    while True:
        items, start = table.scan(limit=7, exclusive_start_key=start)
        seen += [(item["pk"], item["sk"]) for item in items]
        if start is None:
            break
    assert sorted(seen) == sorted(keys)
    segments = []  # parallel-scan segments partition the items too
    for segment in range(3):
        segments += [(i["pk"], i["sk"]) for i in table.scan(segment=segment,
                                                            total_segments=3)[0]]
    assert sorted(segments) == sorted(keys)


# ------------------------------------------------------------------------- format 1
def test_a_key_format_1_table_keeps_plain_keys_and_lmdbs_limit(tmp_path):
    """A table created before key format 2 (its record has no ``key_format``) is read
    and written exactly as before; keys LMDB cannot hold are refused, nothing written."""
    data = tmp_path / "data"
    medium = {"pk": "p" * 400, "sk": b"s"}  # 400-byte partition key: plain in format 1
    with Engine.open(data, map_size_bytes=1 << 26) as engine:
        engine.create_table("Old", partition_key=("pk", "S"), sort_key=("sk", "B"),
                            partitions=1)
    catalog = Catalog(data / "system")
    record = catalog.get_table("Old")
    assert record.pop("key_format") == 2
    catalog.put_table(record)
    catalog.close()
    with Engine.open(data, map_size_bytes=1 << 26) as engine:
        table = engine.table("Old")
        assert not table.schema.long_keys
        table.put_item({**medium, "v": 1})
        [partition] = table.partitions
        with partition.reader() as txn:
            stored = [key for key, _ in txn.cursor()]
        assert stored == [table.schema.storage_key(medium["pk"], medium["sk"], full=True)]
        with pytest.raises(ValidationException, match="key format 1"):
            table.put_item({"pk": "p" * 600, "sk": b"s"})
        assert table.get_item({"pk": "p" * 600, "sk": b"s"}) is None
        assert table.query(medium["pk"])[0] == [{**medium, "v": 1}]
        assert list(table.iter_items()) == [{**medium, "v": 1}]


def test_a_backup_from_before_key_formats_restores_as_key_format_1(tmp_path):
    """A backup whose manifest has no ``settings.key_format`` (written before key format
    2) holds plain keys: the restored table must read them as such — a 400-byte partition
    key that format 2 would compact is found — and keep LMDB's limit."""
    data = tmp_path / "data"
    key = {"pk": "p" * 400, "sk": b"s"}
    with Engine.open(data, map_size_bytes=1 << 26) as engine:
        engine.create_table("Old", partition_key=("pk", "S"), sort_key=("sk", "B"),
                            partitions=2)
    catalog = Catalog(data / "system")
    record = catalog.get_table("Old")
    del record["key_format"]
    catalog.put_table(record)
    catalog.close()
    with Engine.open(data, map_size_bytes=1 << 26) as engine:
        engine.table("Old").put_item({**key, "v": 1})
        backup_id = backup_of(engine, "Old")
        store = engine.backup_store
        manifest_json = json.loads(store.get(manifest_key("", backup_id)))
        assert manifest_json["settings"].pop("key_format") == 1
        store.put(manifest_key("", backup_id), json.dumps(manifest_json).encode())
        engine.restore_table(backup_id, "Back", partitions=3)
        assert engine.wait_for_table("Back", timeout=60)["status"] == "ACTIVE"
        restored = engine.table("Back")
        assert not restored.schema.long_keys
        assert restored.get_item(key) == {**key, "v": 1}
        assert restored.query(key["pk"])[0] == [{**key, "v": 1}]
        with pytest.raises(ValidationException, match="key format 1"):
            restored.put_item({"pk": "p" * 600, "sk": b"s"})


def test_a_split_inside_a_bucket_keeps_query_order(engine):
    """One partition key whose 1024-byte sort keys share their first 900 bytes (one
    bucket): split at the median stored key — inside the bucket, so the bucket straddles
    two partitions — and at a key dict; Query still answers in DynamoDB order, both ways
    and paged; merged back, the same."""
    engine.create_table("Split", partition_key=("pk", "S"), sort_key=("sk", "B"),
                        partitions=1)
    table = engine.table("Split")
    rng = random.Random(3)
    keys = sorted({b"x" * 900 + rng.randbytes(124) for _ in range(60)})
    table.batch_write(puts=[{"pk": "p" * 2048, "sk": sk} for sk in keys])

    def check():
        for forward in (True, False):
            got, start = [], None
            while True:
                items, start = table.query("p" * 2048, forward=forward, limit=9,
                                           exclusive_start_key=start)
                got += [item["sk"] for item in items]
                if start is None:
                    break
            assert got == (keys if forward else keys[::-1])
        middle = keys[30]
        assert [i["sk"] for i in table.query("p" * 2048, ("<", middle))[0]] == keys[:30]

    [only] = table.partition_map.partition_ids()
    left, right = engine.split_partition("Split", only)
    check()
    assert all(partition.stats()[0] > 0 for partition in table.partitions)
    # A key dict names a stored key; in a bucket, stored order is the digests': take the
    # right half's last stored key.
    last = max(keys, key=lambda sk: table.schema.key_of({"pk": "p" * 2048, "sk": sk}))
    engine.split_partition("Split", right, at={"pk": "p" * 2048, "sk": last})
    assert len(table.partitions) == 3
    check()
    ids = table.partition_map.partition_ids()
    engine.merge_partitions("Split", ids[0], ids[1])
    check()
