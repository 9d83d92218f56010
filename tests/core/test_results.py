import math

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsim.core.results import (
    LatencyStream,
    Summary,
    decode_histogram,
    encode_histogram,
    histogram_percentiles_ms,
    latency_histogram,
    new_latency_histogram,
    percentile,
    percentiles_ms,
    record_latency_us,
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.001, 3_000_000), min_size=1, max_size=300), st.integers(0, 10))
def test_bulk_recording_equals_recording_one_by_one(xs: list[float], seed: int) -> None:
    ms = np.asarray(xs)
    bulk = latency_histogram(ms)
    ref = HdrHistogram(1, 3_600_000_000, 3)
    for v in np.clip(np.rint(ms * 1000), 1, None).astype(int):
        ref.record_value(int(v))
    assert bulk.get_total_count() == ref.get_total_count()
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert bulk.get_value_at_percentile(q) == ref.get_value_at_percentile(q)


def test_percentiles_within_hdr_precision() -> None:
    x = np.random.default_rng(0).exponential(50.0, 100_000)
    p = percentiles_ms(x)
    for q, v in p.items():
        assert v == pytest.approx(np.percentile(x, q), rel=2e-3, abs=2e-3)


def test_summary_from_latencies() -> None:
    s = Summary.from_latencies(
        np.array([10.0, 20.0, 30.0, 40.0]),
        duration_s=2,
        wire_bytes=400,
        requests=2,
        connections=3,
        server_memory_bytes=30.0,
        extra={"k": 1},
    )
    assert s.deliveries == 4 and s.deliveries_per_s == 2 and s.bytes_per_message == 100
    assert s.requests_per_message == 0.5 and s.mean_ms == 25 and s.max_ms == 40
    assert s.to_dict()["k"] == 1
    empty = Summary.from_latencies(
        np.array([]),
        duration_s=1,
        wire_bytes=0,
        requests=0,
        connections=0,
        server_memory_bytes=0,
    )
    assert empty.deliveries == 0 and math.isnan(empty.p50_ms)
    with pytest.raises(ValueError, match="duration_s must be > 0"):
        Summary.from_latencies(
            np.array([1.0]),
            duration_s=0,
            wire_bytes=0,
            requests=0,
            connections=0,
            server_memory_bytes=0,
        )


@given(
    st.lists(st.floats(0.001, 1e3, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([50.0, 95.0, 99.0]),
    st.sampled_from([1e-6, 1e-3, 1.0]),
)
def test_percentile_is_the_sample_percentile_to_three_significant_digits(
    xs: list[float], q: float, resolution: float
) -> None:
    x = np.asarray(xs)
    got = percentile(x, q, resolution=resolution)
    lo = np.percentile(x, q, method="lower")
    hi = np.percentile(x, q, method="higher")
    assert lo * (1 - 2e-3) - resolution <= got <= hi * (1 + 2e-3) + resolution


def test_percentile_refuses_bad_arguments_and_is_nan_without_samples() -> None:
    assert math.isnan(percentile(np.zeros(0), 50))
    with pytest.raises(ValueError, match="q must be in"):
        percentile(np.ones(3), 101)
    with pytest.raises(ValueError, match="resolution must be > 0"):
        percentile(np.ones(3), 50, resolution=0)


def test_summary_from_histogram_agrees_with_from_latencies() -> None:
    rng = np.random.default_rng(3)
    lat = rng.lognormal(2.0, 1.0, 5000)  # ms
    parts = [new_latency_histogram() for _ in range(3)]  # as if from three load workers
    for i, x in enumerate(lat):
        record_latency_us(parts[i % 3], int(x * 1000))
    merged = new_latency_histogram()
    for h in parts:
        merged.add(decode_histogram(encode_histogram(h)))  # the trip between processes
    s = Summary.from_histogram(merged, duration_s=2.0, connections=4, lost=1, extra={"k": 2})
    ref = Summary.from_latencies(
        lat, duration_s=2.0, wire_bytes=0, requests=0, connections=4, server_memory_bytes=0
    )
    assert s.deliveries == ref.deliveries == len(lat) and s.deliveries_per_s == len(lat) / 2
    for q in ("p50_ms", "p95_ms", "p99_ms", "p999_ms"):
        assert getattr(s, q) == pytest.approx(getattr(ref, q), rel=2e-3)
    assert s.mean_ms == pytest.approx(float(np.mean(lat)), rel=2e-3)
    assert s.max_ms == pytest.approx(float(np.max(lat)), rel=2e-3)
    assert math.isnan(s.bytes_per_message) and (s.lost, s.extra) == (1, {"k": 2})


def test_summary_from_an_empty_histogram_is_nan_not_zero() -> None:
    s = Summary.from_histogram(new_latency_histogram(), duration_s=1.0, connections=0)
    assert s.deliveries == 0 and math.isnan(s.p50_ms) and math.isnan(s.mean_ms)
    assert math.isnan(histogram_percentiles_ms(new_latency_histogram(), (50,))[50])
    with pytest.raises(ValueError, match="duration_s must be > 0"):
        Summary.from_histogram(new_latency_histogram(), duration_s=0, connections=0)


def test_recording_clamps_to_the_histogram_range() -> None:
    h = new_latency_histogram()
    record_latency_us(h, -5)  # a clock step backwards: counted as the smallest value
    record_latency_us(h, 10**15)
    assert h.get_total_count() == 2 and h.get_min_value() == 1
    assert h.get_max_value() >= 3_600 * 1_000_000 * 0.999


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0.0, 5_000_000), min_size=1, max_size=400),
    st.integers(1, 6),
)
def test_stream_in_chunks_equals_recording_one_by_one(xs: list[float], parts: int) -> None:
    ms = np.asarray(xs)
    ref = HdrHistogram(1, 3_600_000_000, 3)
    for v in np.clip(np.rint(ms * 1000), 1, 3_600_000_000).astype(int):
        ref.record_value(int(v))
    chunks = [LatencyStream().record(c) for c in np.array_split(ms, parts)]
    stream = chunks[0]
    for c in chunks[1:]:
        stream.merge(c)
    hist = stream.histogram()
    assert stream.count == hist.get_total_count() == ref.get_total_count() == len(ms)
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert hist.get_value_at_percentile(q) == ref.get_value_at_percentile(q)
    assert stream.max_ms == ms.max() and stream.sum_ms == pytest.approx(ms.sum(), rel=1e-12)


def test_summary_from_stream_equals_from_latencies() -> None:
    lat = np.random.default_rng(4).lognormal(3.0, 1.5, 20_000)
    kw = {"duration_s": 3.0, "wire_bytes": 10.0, "requests": 2, "connections": 5,
          "server_memory_bytes": 1.0, "lost": 2}  # fmt: skip
    whole = Summary.from_latencies(lat, **kw)
    assert Summary.from_stream(LatencyStream().record(lat), **kw) == whole
    stream = LatencyStream()
    for chunk in np.array_split(lat, 7):
        stream.record(chunk)
    chunked = Summary.from_stream(stream, **kw)
    assert chunked.mean_ms == pytest.approx(whole.mean_ms, rel=1e-12)
    assert chunked == Summary(**{**whole.__dict__, "mean_ms": chunked.mean_ms})
    empty = Summary.from_stream(LatencyStream(), **kw)
    assert empty.deliveries == 0 and math.isnan(empty.p50_ms) and math.isnan(empty.max_ms)
