"""A hypothesis state machine: a table behaves like a dict of items, across reopens."""

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine import ConditionalCheckFailedException, Engine

pks = st.sampled_from(["a", "b", "c", "dd", "é"])
sks = st.integers(-3, 3)
values = st.one_of(st.integers(-10**6, 10**6), st.text(max_size=5), st.binary(max_size=5),
                   st.booleans(), st.none(), st.lists(st.integers(0, 3), max_size=3))


class TableModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        import tempfile

        self.directory = tempfile.mkdtemp(prefix="tessera-model-")
        self.engine = Engine.open(os.path.join(self.directory, "data"), wal_segment_bytes=4096,
                                  map_size_bytes=1 << 28)
        self.engine.create_table("Model", partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=3)
        self.model: dict[tuple, dict] = {}

    @property
    def table(self):
        return self.engine.table("Model")

    @rule(pk=pks, sk=sks, value=values)
    def put(self, pk, sk, value):
        item = {"pk": pk, "sk": sk, "v": value}
        self.table.put_item(item)
        self.model[(pk, sk)] = item

    @rule(pk=pks, sk=sks)
    def delete(self, pk, sk):
        old = self.table.delete_item({"pk": pk, "sk": sk}, return_values="ALL_OLD")
        assert old == self.model.pop((pk, sk), None)

    @rule(pk=pks, sk=sks, amount=st.integers(-5, 5))
    def add(self, pk, sk, amount):
        new = self.table.update_item({"pk": pk, "sk": sk}, [("ADD", "n", amount)], return_values="ALL_NEW")
        expected = dict(self.model.get((pk, sk), {"pk": pk, "sk": sk}))
        expected["n"] = expected.get("n", 0) + amount
        self.model[(pk, sk)] = expected
        assert new == expected

    @rule(pk=pks, sk=sks, value=values)
    def put_if_absent(self, pk, sk, value):
        item = {"pk": pk, "sk": sk, "w": value}
        try:
            self.table.put_item(item, condition=[("attribute_not_exists", "pk")])
        except ConditionalCheckFailedException:
            assert (pk, sk) in self.model
        else:
            assert (pk, sk) not in self.model
            self.model[(pk, sk)] = item

    @rule(pk=pks, lo=sks, hi=sks)
    def query(self, pk, lo, hi):
        lo, hi = min(lo, hi), max(lo, hi)
        items, _ = self.table.query(pk, ("between", lo, hi))
        expected = [self.model[k] for k in sorted(self.model) if k[0] == pk and lo <= k[1] <= hi]
        assert items == expected

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def reopen(self):
        self.engine.close()
        self.engine = Engine.open(os.path.join(self.directory, "data"), wal_segment_bytes=4096,
                                  map_size_bytes=1 << 28)

    @invariant()
    def scan_matches(self):
        items = sorted(self.table.iter_items(), key=lambda i: (i["pk"], i["sk"]))
        assert items == [self.model[k] for k in sorted(self.model)]

    def teardown(self):
        import shutil

        self.engine.close()
        shutil.rmtree(self.directory, ignore_errors=True)


TableModel.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
test_table_model = TableModel.TestCase
