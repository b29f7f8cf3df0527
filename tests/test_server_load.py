"""A bounded load test of `tessera serve` as a process: boto3 threads doing a fixed-seed mix of
PutItem/GetItem/Query/UpdateItem for a fixed time while a CreateBackup runs to AVAILABLE.

Checks: no request fails; every acknowledged write is in the table afterwards with the value
last acknowledged; the backup holds at least the items acknowledged before CreateBackup was
sent and at most the final count. Latency percentiles and requests/s are printed (``-s``)
and written to ``load-results.json`` under the test's tmp dir.
"""

from __future__ import annotations

import json
import random
import threading
import time

from server_process import start_server, wait_for_backup

DURATION_S = 8.0  # the whole workload, backup included
THREADS = 4
PRELOADED = 2000  # items written before the clock starts, so the backup has some work
KEYS_PER_THREAD = 16  # partition keys each thread writes under
SEED = 20261122
TABLE = "load"


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


class Worker(threading.Thread):
    """One client thread: its own partition keys, so it knows exactly what each read must
    return. ``acked`` maps (pk, sk) -> the item as last acknowledged."""

    def __init__(self, number: int, client, stop: threading.Event) -> None:
        super().__init__(name=f"load-{number}", daemon=True)
        self.number = number
        self.client = client
        self.stop = stop
        self.rng = random.Random(SEED + number)
        self.acked: dict[tuple[str, int], dict] = {}
        self.latencies: dict[str, list[float]] = {
            "PutItem": [],
            "GetItem": [],
            "Query": [],
            "UpdateItem": [],
        }
        self.errors: list[str] = []
        self.next_sk = 0

    def run(self) -> None:
        while not self.stop.is_set():
            operation = self.rng.choices(
                ["PutItem", "GetItem", "Query", "UpdateItem"], weights=[4, 4, 1, 2]
            )[0]
            if operation != "PutItem" and not self.acked:
                operation = "PutItem"
            started = time.perf_counter()
            try:
                getattr(self, operation.lower())()
            except Exception as err:  # noqa: BLE001 - every failure is reported by the test
                self.errors.append(f"{operation}: {type(err).__name__}: {err}")
                return
            self.latencies[operation].append(time.perf_counter() - started)

    def _pk(self) -> str:
        return f"t{self.number}-{self.rng.randrange(KEYS_PER_THREAD)}"

    def putitem(self) -> None:
        pk, sk = self._pk(), self.next_sk
        self.next_sk += 1
        payload = self.rng.randbytes(self.rng.randrange(16, 512)).hex()
        item = {"pk": {"S": pk}, "sk": {"N": str(sk)}, "payload": {"S": payload}}
        self.client.put_item(TableName=TABLE, Item=item)
        self.acked[(pk, sk)] = item

    def getitem(self) -> None:
        pk, sk = self.rng.choice(list(self.acked))
        got = self.client.get_item(
            TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"N": str(sk)}}, ConsistentRead=True
        )
        assert got.get("Item") == self.acked[(pk, sk)], (pk, sk, got.get("Item"))

    def query(self) -> None:
        pk = self._pk()
        expected = sorted(sk for (key, sk) in self.acked if key == pk)
        request = {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": pk}},
            "ProjectionExpression": "sk",
        }
        got = []
        while True:
            page = self.client.query(**request)
            got.extend(int(item["sk"]["N"]) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        assert got == expected, (pk, len(got), len(expected))

    def updateitem(self) -> None:
        pk, sk = self.rng.choice(list(self.acked))
        answer = self.client.update_item(
            TableName=TABLE,
            Key={"pk": {"S": pk}, "sk": {"N": str(sk)}},
            UpdateExpression="ADD hits :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )
        previous = int(self.acked[(pk, sk)].get("hits", {"N": "0"})["N"])
        assert answer["Attributes"]["hits"] == {"N": str(previous + 1)}, answer
        self.acked[(pk, sk)] = answer["Attributes"]


def scan_all(client) -> dict[tuple[str, int], dict]:
    items = {}
    request = {"TableName": TABLE, "ConsistentRead": True}
    while True:
        page = client.scan(**request)
        for item in page["Items"]:
            items[(item["pk"]["S"], int(item["sk"]["N"]))] = item
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_mixed_load_with_backup(tmp_path):
    server = start_server(tmp_path / "serve", "--workers", "8")
    try:
        admin = server.client()
        admin.create_table(
            TableName=TABLE,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        rng = random.Random(SEED)
        preloaded = {}
        for start in range(0, PRELOADED, 25):
            batch = [
                {
                    "pk": {"S": f"pre-{index % 50}"},
                    "sk": {"N": str(index)},
                    "payload": {"S": rng.randbytes(256).hex()},
                }
                for index in range(start, min(start + 25, PRELOADED))
            ]
            answer = admin.batch_write_item(
                RequestItems={TABLE: [{"PutRequest": {"Item": item}} for item in batch]}
            )
            assert not answer.get("UnprocessedItems")
            preloaded.update({(i["pk"]["S"], int(i["sk"]["N"])): i for i in batch})

        stop = threading.Event()
        workers = [Worker(number, server.client(), stop) for number in range(THREADS)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        time.sleep(DURATION_S / 4)
        # Every write acknowledged by now must be in the backup.
        acked_before_backup = len(preloaded) + sum(len(w.acked) for w in workers)
        arn = admin.create_backup(TableName=TABLE, BackupName="under-load")["BackupDetails"][
            "BackupArn"
        ]
        details = wait_for_backup(admin, arn, timeout=DURATION_S * 4)
        backup_done_at = time.perf_counter() - started
        time.sleep(max(0.0, DURATION_S - (time.perf_counter() - started)))
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        elapsed = time.perf_counter() - started

        errors = [error for worker in workers for error in worker.errors]
        assert not errors, errors
        assert not any(worker.is_alive() for worker in workers)
        assert details["BackupStatus"] == "AVAILABLE", details

        expected = dict(preloaded)
        for worker in workers:
            expected.update(worker.acked)
        stored = scan_all(admin)
        missing = expected.keys() - stored.keys()
        assert not missing, (
            f"{len(missing)} acknowledged writes missing, e.g. {sorted(missing)[:5]}"
        )
        assert stored == expected

        backed_up = admin.describe_backup(BackupArn=arn)["BackupDescription"]["SourceTableDetails"][
            "ItemCount"
        ]
        assert acked_before_backup <= backed_up <= len(stored), (
            acked_before_backup,
            backed_up,
            len(stored),
        )

        merged = {
            op: sorted(x for worker in workers for x in worker.latencies[op])
            for op in workers[0].latencies
        }
        every = sorted(x for values in merged.values() for x in values)
        results = {
            "duration_s": round(elapsed, 3),
            "threads": THREADS,
            "requests": len(every),
            "requests_per_s": round(len(every) / elapsed, 1),
            "p50_ms": round(percentile(every, 0.50) * 1000, 2),
            "p99_ms": round(percentile(every, 0.99) * 1000, 2),
            "by_operation": {
                op: {
                    "count": len(values),
                    "p50_ms": round(percentile(values, 0.50) * 1000, 2),
                    "p99_ms": round(percentile(values, 0.99) * 1000, 2),
                }
                for op, values in merged.items()
                if values
            },
            "backup": {
                "available_after_s": round(backup_done_at, 3),
                "items_acked_before": acked_before_backup,
                "items_in_backup": backed_up,
                "items_final": len(stored),
            },
        }
        (tmp_path / "load-results.json").write_text(json.dumps(results, indent=2))
        print(
            f"\nload: {json.dumps(results, indent=2)}\nwritten to {tmp_path / 'load-results.json'}"
        )
        for op, values in merged.items():
            assert values, f"no {op} ran"
    finally:
        server.kill()
