"""Reads the Ready replicas' own `/metrics` over HTTP, all at once, within a short timeout.

Why: pod sampling (`autoscaling.live`) needs each replica's requests in flight every couple of
seconds; this is the I/O half, beside the Prometheus client. A round must never hold up the
evaluations around it, so every replica is read concurrently and each read is cut off at
`timeout_seconds` (at most MAX_TIMEOUT_SECONDS and half the sampling interval: `round_timeout_seconds`)
whatever stage it is in -- connecting to an address nobody answers on (a KWOK pod) included. A
replica that does not answer, answers with an error status, or answers with something other than the
gauges is a `SampleFailure` with the reason in words; nothing is raised for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from berth_operator.autoscaling.live import PodMetricsError, PodSample, parse_pod_metrics
from berth_operator.autoscaling.sampling_report import PodAddress, SampleFailure, SampleRound

MAX_TIMEOUT_SECONDS = 1.0
"""The longest a round waits for a replica (seconds)."""


def round_timeout_seconds(interval_seconds: float) -> float:
    """How long a round waits for the replicas: MAX_TIMEOUT_SECONDS, or half the sampling interval
    when that is shorter."""
    return min(MAX_TIMEOUT_SECONDS, interval_seconds / 2)


def metrics_url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip  # an IPv6 pod address
    return f"http://{host}:{port}/metrics"


async def sample_pods(
    pods: Sequence[PodAddress],
    port: int,
    timeout_seconds: float,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SampleRound:
    """GET every pod's `http://IP:port/metrics` concurrently; the gauges of those that answered, in
    the pods' order, and why the others did not. Returns within about `timeout_seconds`."""
    if not pods:
        return SampleRound(samples=(), failures=())
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds),
        transport=transport,
        trust_env=False,  # a proxy from the environment would not reach pod addresses
        follow_redirects=False,
    ) as client:
        results = await asyncio.gather(*(_read(client, pod, port, timeout_seconds) for pod in pods))
    return SampleRound(
        samples=tuple(result for result in results if isinstance(result, PodSample)),
        failures=tuple(result for result in results if isinstance(result, SampleFailure)),
    )


async def _read(
    client: httpx.AsyncClient, pod: PodAddress, port: int, timeout_seconds: float
) -> PodSample | SampleFailure:
    address = f"{pod.ip}:{port}"

    def failed(error: str) -> SampleFailure:
        return SampleFailure(pod=pod.name, address=address, error=error)

    try:
        async with asyncio.timeout(timeout_seconds):
            response = await client.get(metrics_url(pod.ip, port))
    except (TimeoutError, httpx.TimeoutException):
        return failed(f"timed out after {timeout_seconds:g}s")
    except httpx.ConnectError as error:
        return failed(_connect_failure(error))
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as error:
        return failed(f"{type(error).__name__}: {error}")
    if response.status_code != httpx.codes.OK:
        return failed(f"HTTP {response.status_code} from /metrics")
    try:
        return parse_pod_metrics(response.text)
    except PodMetricsError as error:
        return failed(str(error))


def _connect_failure(error: httpx.ConnectError) -> str:
    """Why a connection failed, from the deepest cause httpx wrapped (its own message is often only
    "All connection attempts failed")."""
    cause: BaseException = error
    for _ in range(8):  # a chain is a few links long; never follow a cycle
        deeper = cause.__cause__ or cause.__context__
        if deeper is None:
            break
        cause = deeper
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
    return f"cannot connect: {reason}"
