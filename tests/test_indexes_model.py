"""Model-based test of secondary indexes (issue 14): random puts, updates, deletes and
batch writes on a table with one LSI and two GSIs; after every step each LSI, and after
a catch-up each GSI, equals the index rebuilt from a full scan (tests/index_reference.py),
and queries return entries in DynamoDB's order with working pagination keys."""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from index_reference import canonical, check_query_order, expected_entries, index_entries

from engine import Engine, ValidationException

TABLE_KEYS = [("pk", "S"), ("sk", "N")]
LSI = {"name": "byRank", "key_schema": [("pk", "S"), ("rank", "N")], "projection": "KEYS_ONLY"}
GSI_A = {"name": "byGroup", "key_schema": [("grp", "S"), ("rank", "N")], "projection": "ALL"}
GSI_B = {"name": "byTag", "key_schema": [("tag", "S")],
         "projection": {"type": "INCLUDE", "non_key_attributes": ["note"]}}

pks = st.sampled_from(["a", "b", "c"])
sks = st.integers(0, 5)
ranks = st.one_of(st.none(), st.integers(-3, 3), st.just("wrong-type"))
groups = st.one_of(st.none(), st.sampled_from(["g1", "g2"]), st.just(7))
tags = st.one_of(st.none(), st.sampled_from(["x", "y", "zz"]), st.just(""))
notes = st.one_of(st.none(), st.text(max_size=3))


def _valid(item: dict) -> bool:
    """Would the engine accept this item (index key attributes of the declared types)?"""
    rank, grp, tag = item.get("rank"), item.get("grp"), item.get("tag")
    return (rank is None or isinstance(rank, int)) and (grp is None or isinstance(grp, str)) \
        and (tag is None or (isinstance(tag, str) and tag != ""))


class IndexModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="tessera-index-model-")
        # data/ inside the temp directory: the default backup store is its sibling
        self.engine = Engine.open(f"{self.directory}/data", wal_segment_bytes=1 << 14,
                                  map_size_bytes=1 << 28)
        self.engine.create_table("Model", ("pk", "S"), ("sk", "N"), partitions=3,
                                 local_indexes=[LSI], global_indexes=[GSI_A, GSI_B])
        self.table = self.engine.table("Model")
        self.model: dict[tuple, dict] = {}

    def _item(self, pk, sk, rank, grp, tag, note) -> dict:
        item = {"pk": pk, "sk": sk}
        for name, value in (("rank", rank), ("grp", grp), ("tag", tag), ("note", note)):
            if value is not None:
                item[name] = value
        return item

    @rule(pk=pks, sk=sks, rank=ranks, grp=groups, tag=tags, note=notes)
    def put(self, pk, sk, rank, grp, tag, note):
        item = self._item(pk, sk, rank, grp, tag, note)
        if _valid(item):
            self.table.put_item(item)
            self.model[(pk, sk)] = item
        else:
            try:
                self.table.put_item(item)
            except ValidationException as err:
                assert "Index" in str(err) or "index" in str(err)
            else:
                raise AssertionError(f"{item} was accepted")

    @rule(pk=pks, sk=sks, rank=ranks, grp=groups)
    def update(self, pk, sk, rank, grp):
        actions, values = [], {}
        if rank is None:
            actions.append("REMOVE #r")
        else:
            actions.append("SET #r = :r")
            values[":r"] = rank
        if grp is not None:
            actions[-1] += ", #g = :g" if actions[-1].startswith("SET") else ""
            if not actions[-1].startswith("SET"):
                actions.append("SET #g = :g")
            values[":g"] = grp
        expression = " ".join(actions)
        names = {"#r": "rank"}
        if grp is not None:
            names["#g"] = "grp"
        new = dict(self.model.get((pk, sk), {"pk": pk, "sk": sk}))
        new.pop("rank", None)
        if rank is not None:
            new["rank"] = rank
        if grp is not None:
            new["grp"] = grp
        creates = (pk, sk) in self.model or rank is not None or grp is not None
        try:
            self.table.update_item({"pk": pk, "sk": sk}, expression, names=names,
                                   values=values or None)
        except ValidationException:
            assert not _valid(new)
            return
        assert _valid(new)
        if creates:
            self.model[(pk, sk)] = new

    @rule(pk=pks, sk=sks)
    def delete(self, pk, sk):
        self.table.delete_item({"pk": pk, "sk": sk})
        self.model.pop((pk, sk), None)

    @rule(pk=pks, tag=tags, grp=groups, count=st.integers(1, 4))
    def batch(self, pk, tag, grp, count):
        items = [self._item(pk, sk, sk, grp, tag, None) for sk in range(count)]
        if all(_valid(item) for item in items):
            self.table.batch_write(puts=items)
            for item in items:
                self.model[(pk, item["sk"])] = item

    @invariant()
    def local_index_is_exact_now(self):
        items = list(self.table.iter_items())
        assert sorted(items, key=canonical) == sorted(self.model.values(), key=canonical)
        assert index_entries(self.engine, "Model", "byRank") == \
            expected_entries(items, TABLE_KEYS, LSI)

    @invariant()
    def global_indexes_are_exact_after_catch_up(self):
        self.engine.wait_for_index_catch_up("Model")
        items = list(self.table.iter_items())
        for definition in (GSI_A, GSI_B):
            assert index_entries(self.engine, "Model", definition["name"]) == \
                expected_entries(items, TABLE_KEYS, definition)

    def teardown(self):
        try:
            for definition in (LSI, GSI_A, GSI_B):
                check_query_order(self.engine, "Model", definition, TABLE_KEYS)
        finally:
            self.engine.close()
            shutil.rmtree(self.directory, ignore_errors=True)


IndexModel.TestCase.settings = settings(max_examples=30, stateful_step_count=40, deadline=None)
TestIndexModel = IndexModel.TestCase
