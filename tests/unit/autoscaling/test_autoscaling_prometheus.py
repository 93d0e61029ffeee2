"""The Prometheus client over a real socket: parsing, and each failure mapped to its typed error."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from prometheus_stub import PrometheusStub, Reply, serve_prometheus_stub, vector

from berth_operator.autoscaling.errors import (
    PrometheusError,
    PrometheusQueryRejected,
    PrometheusResponseInvalid,
    PrometheusUnavailable,
)
from berth_operator.autoscaling.prometheus import PrometheusClient, validate_base_url


@pytest.fixture
def stub() -> Iterator[PrometheusStub]:
    with serve_prometheus_stub() as server:
        yield server


async def test_vector_result_is_parsed_with_labels_values_and_time(stub: PrometheusStub) -> None:
    stub.replies["up"] = vector(({"job": "a"}, 1), ({"job": "b"}, "NaN"), at=1_800_000_123.5)
    async with PrometheusClient(stub.url) as client:
        result = await client.query("up", at=1_800_000_123.5)
    assert [(dict(s.labels), s.timestamp) for s in result.samples] == [
        ({"job": "a"}, 1_800_000_123.5),
        ({"job": "b"}, 1_800_000_123.5),
    ]
    assert result.samples[0].value == 1.0
    assert stub.queries[-1] == {"query": ["up"], "time": ["1800000123.500"]}


async def test_scalar_and_nan_and_empty_results(stub: PrometheusStub) -> None:
    stub.replies["scalar(1)"] = Reply(
        body=json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "42"]}})
    )
    stub.replies["nan"] = vector(({}, "NaN"))
    async with PrometheusClient(stub.url) as client:
        assert (await client.query("scalar(1)")).single_value() == 42.0
        assert (await client.query("nan")).single_value() is None
        assert (await client.query("nothing")).single_value() is None


async def test_more_than_one_series_where_one_was_expected_is_an_error(stub: PrometheusStub) -> None:
    stub.replies["two"] = vector(({"pod": "a"}, 1), ({"pod": "b"}, 2))
    async with PrometheusClient(stub.url) as client:
        result = await client.query("two")
    with pytest.raises(PrometheusResponseInvalid, match="expected at most one series, got 2"):
        result.single_value()


async def test_bad_query_is_rejected_with_prometheus_error_type(stub: PrometheusStub) -> None:
    stub.replies["sum("] = Reply(
        status=400,
        body=json.dumps({"status": "error", "errorType": "bad_data", "error": "unexpected end of input"}),
    )
    async with PrometheusClient(stub.url) as client:
        with pytest.raises(PrometheusQueryRejected) as caught:
            await client.query("sum(")
    assert caught.value.error_type == "bad_data"
    assert "unexpected end of input" in str(caught.value)


async def test_server_error_means_unavailable(stub: PrometheusStub) -> None:
    stub.default = Reply(status=503, body="Service Unavailable")
    async with PrometheusClient(stub.url) as client:
        with pytest.raises(PrometheusUnavailable, match="HTTP 503"):
            await client.query("up")


async def test_non_json_and_wrong_shapes_are_invalid_responses(stub: PrometheusStub) -> None:
    stub.replies["html"] = Reply(body="<html>proxy login</html>")
    stub.replies["matrix"] = Reply(
        body=json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})
    )
    stub.replies["garbled"] = Reply(
        body=json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1]}]}}
        )
    )
    async with PrometheusClient(stub.url) as client:
        with pytest.raises(PrometheusResponseInvalid, match="not JSON"):
            await client.query("html")
        with pytest.raises(PrometheusResponseInvalid, match="resultType 'matrix'"):
            await client.query("matrix")
        with pytest.raises(PrometheusResponseInvalid, match=r"not a \[timestamp, value\] pair"):
            await client.query("garbled")


async def test_a_slow_server_times_out_as_unavailable(stub: PrometheusStub) -> None:
    stub.default = Reply(body=vector().body, delay_seconds=3.0)
    async with PrometheusClient(stub.url, timeout_seconds=0.2) as client:
        with pytest.raises(PrometheusUnavailable, match="timed out"):
            await client.query("up")


async def test_nothing_listening_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with PrometheusClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(PrometheusUnavailable, match=f"127.0.0.1:{port} is unavailable"):
            await client.query("up")


async def test_every_failure_is_a_prometheus_error(stub: PrometheusStub) -> None:
    stub.default = Reply(status=500, body="boom")
    async with PrometheusClient(stub.url) as client:
        with pytest.raises(PrometheusError):
            await client.query("up")


@pytest.mark.parametrize("url", ["prometheus:9090", "ftp://p", "http://", "http://p:9090/?x=1"])
def test_bad_base_url_names_the_field_and_value(url: str) -> None:
    with pytest.raises(ValueError, match=f"prometheus.url: {url!r}".replace("?", r"\?")):
        validate_base_url(url)


def test_base_url_keeps_a_path_prefix_without_trailing_slash() -> None:
    assert validate_base_url("https://mon.example/prometheus/") == "https://mon.example/prometheus"
