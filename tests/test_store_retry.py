"""The S3 retry bound (engine.store.retry), counted on the wire.

A :class:`~s3_servers.FaultProxy` in front of a real server (moto: it never drops an
upload, so every count is the client's doing) answers chosen requests with a fault and
counts what arrives. botocore is the real one: nothing is mocked. The bound: a part or a
range is sent at most ``integrity_attempts`` times, each send at most
``request_attempts`` requests — transport faults alone stop at ``request_attempts``,
damaged bytes alone at ``integrity_attempts``, both alternating at their product.
"""

from __future__ import annotations

import random

import google_crc32c
import pytest
from s3_servers import TEST_PART_SIZE_BYTES

from engine.errors import StoreError
from engine.store.s3 import S3RetryPolicy

POLICY = S3RetryPolicy(base_delay_seconds=0.01)  # the default counts: 3 and 3
#: Three parts (and three ranges), the last one short.
DATA = random.Random(5).randbytes(2 * TEST_PART_SIZE_BYTES + 4321)


def part(number: int):
    return lambda request: request.method == "PUT" and request.part_number == number


def get_of(key: str, byte_range: str | None = None):
    return lambda request: (request.method == "GET" and request.path.endswith(f"/{key}")
                            and byte_range in (None, request.range))


def test_the_default_policy_and_its_bound() -> None:
    default = S3RetryPolicy()
    assert (default.request_attempts, default.integrity_attempts, default.mode) == (
        3, 3, "standard")
    assert default.max_requests_per_part == 9
    assert default.botocore_retries() == {"mode": "standard", "total_max_attempts": 3}
    with pytest.raises(ValueError, match="adaptive"):
        S3RetryPolicy(mode="legacy")
    with pytest.raises(ValueError, match="at least 1"):
        S3RetryPolicy(integrity_attempts=0)


@pytest.mark.parametrize("fault", ["500", "reset"])
def test_transport_faults_are_retried_by_botocore_alone(make_fault_proxy, make_s3_store,
                                                        fault: str) -> None:
    proxy = make_fault_proxy("moto")
    s3 = make_s3_store(proxy, retry=POLICY)
    proxy.fail(part(2), fault, forever=True)
    with pytest.raises(StoreError, match=r"part 2/3 .* failed after 3 attempt\(s\)"):
        s3.put("bound/obj", DATA)
    assert proxy.count(part(2)) == POLICY.request_attempts == 3  # was 3 x 4 = 12
    assert not s3.exists("bound/obj")


def test_damaged_parts_are_resent_by_our_loop_alone(make_fault_proxy, make_s3_store) -> None:
    proxy = make_fault_proxy("moto")
    s3 = make_s3_store(proxy, retry=POLICY)
    proxy.fail(part(2), "bad_digest", forever=True)
    with pytest.raises(StoreError, match=r"failed after 3 attempt\(s\); last error: BadDigest"):
        s3.put("bound/obj", DATA)
    assert proxy.count(part(2)) == POLICY.integrity_attempts == 3  # was 4


def test_alternating_faults_reach_the_product_and_no_more(make_fault_proxy,
                                                          make_s3_store) -> None:
    """Each send: two 500s (botocore retries) then BadDigest (botocore gives up, we
    resend) — the worst case, request_attempts x integrity_attempts requests."""
    proxy = make_fault_proxy("moto")
    s3 = make_s3_store(proxy, retry=POLICY)
    proxy.fail(part(2), *["500", "500", "bad_digest"] * 4)
    with pytest.raises(StoreError, match=r"failed after 9 attempt\(s\); last error: BadDigest"):
        s3.put("bound/obj", DATA)
    assert proxy.count(part(2)) == POLICY.max_requests_per_part == 9


def test_a_fault_that_clears_costs_one_more_request(make_fault_proxy, make_s3_store) -> None:
    proxy = make_fault_proxy("moto")
    s3 = make_s3_store(proxy, retry=POLICY)
    proxy.fail(part(1), "500")
    proxy.fail(part(2), "bad_digest")
    proxy.fail(part(3), "reset", "bad_digest")
    info = s3.put("bound/obj", DATA)
    assert [proxy.count(part(n)) for n in (1, 2, 3)] == [2, 2, 3]
    assert info.crc32c == google_crc32c.value(DATA) and s3.get("bound/obj") == DATA


def test_short_ranged_reads_are_resent_by_our_loop(make_fault_proxy, make_s3_store,
                                                   tmp_path) -> None:
    """A body cut short is seen only after botocore returned: ours to retry, as
    StoreError (before: one try, then urllib3's ProtocolError escaped the store)."""
    proxy = make_fault_proxy("moto")
    s3 = make_s3_store(proxy, retry=POLICY, max_concurrency=1)  # one range at a time
    s3.put("bound/obj", DATA)
    proxy.fail(get_of("obj"), "short_body", "short_body")  # the first range, twice
    s3.download("bound/obj", str(tmp_path / "once"))
    assert (tmp_path / "once").read_bytes() == DATA
    assert proxy.count(get_of("obj")) == 3 + 2  # three ranges, the first sent three times

    first_range = get_of("obj", f"bytes=0-{TEST_PART_SIZE_BYTES - 1}")
    proxy.fail(first_range, "short_body", forever=True)
    before = proxy.count(first_range)
    with pytest.raises(StoreError, match=r"GET bytes=0-.* failed after 3 attempt\(s\).*Short"):
        s3.download("bound/obj", str(tmp_path / "never"))
    assert proxy.count(first_range) - before == POLICY.integrity_attempts
    assert not (tmp_path / "never").exists()
    proxy.fail(get_of("obj", "bytes=10-19"), "short_body", forever=True)
    with pytest.raises(StoreError, match=r"failed after 3 attempt\(s\)"):
        s3.get("bound/obj", start=10, end=20)
    assert proxy.count(get_of("obj", "bytes=10-19")) == POLICY.integrity_attempts
