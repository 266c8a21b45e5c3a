"""The API's per-snapshot response cache: bounded by bytes, oldest evicted first, huge pages
never cached (the cache answers repeated requests before routing: api/cached.py)."""

from __future__ import annotations

from marketflow_assets.api.snapshots import ResponseCache


def test_the_oldest_responses_are_evicted_past_the_capacity():
    cache = ResponseCache(capacity=800)
    for n in range(12):  # 100 bytes each: the 9th put evicts the first
        cache.put((f"/v1/bars/T{n}", b""), bytes(100), "application/json", f"cursor-{n}")
    assert cache.get(("/v1/bars/T0", b"")) is None
    assert cache.get(("/v1/bars/T3", b"")) is None
    assert cache.get(("/v1/bars/T4", b"")) == (bytes(100), "application/json", "cursor-4")
    assert cache.get(("/v1/bars/T11", b"")) is not None
    assert cache._bytes == 800


def test_a_page_over_an_eighth_of_the_capacity_is_not_cached():
    cache = ResponseCache(capacity=800)
    cache.put(("/v1/prices/latest", b""), bytes(101), "application/json", None)
    assert cache.get(("/v1/prices/latest", b"")) is None


def test_the_same_request_keeps_its_first_answer():
    cache = ResponseCache(capacity=800)
    cache.put(("/v1/prices/latest", b"tickers=AAPL"), b"first", "application/json", None)
    cache.put(("/v1/prices/latest", b"tickers=AAPL"), b"second", "application/json", None)
    assert cache.get(("/v1/prices/latest", b"tickers=AAPL"))[0] == b"first"
    assert cache._bytes == len(b"first")
