"""A rolling model swap under continuous streaming load: two replicas of SmolLM2 serve streams without
pause while spec.model changes (maxModelLen 2048 -> 1536: a new pod revision, the same served name).
No request fails, no stream is cut (each ends with finish_reason "length" and all its tokens), the
Service never runs out of ready endpoints, and afterwards only the new revision answers: every
/v1/models through the Service reports the new max_model_len, and every pod carries the new
berth.dev/revision label.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client  # type: ignore[import-untyped]

from tests.e2e.load import LoadGenerator
from tests.e2e.local_model import local_model, service_address
from tests.integration.endpoint_watch import ReadyEndpointWatch
from tests.integration.idep_reads import INSTANCE_LABEL, idep_status, wait_idep_ready
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import ClusterAccess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NAME = "swap"
REPLICAS = 2
OLD_MAX_MODEL_LEN = 2048
NEW_MAX_MODEL_LEN = 1536
CONCURRENCY = 4
"""Streams in flight at every moment: two per replica, on two shared cores that also start the new pods."""
MAX_TOKENS = 32
ROLLOUT_TIMEOUT_SECONDS = 300.0
MODELS_CHECKS = 20
REVISION_LABEL = "berth.dev/revision"


def _max_model_len(url: str) -> int:
    with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as response:
        cards = json.loads(response.read())["data"]
    assert len(cards) == 1, cards
    return int(cards[0]["max_model_len"])


class ServedRevisions:
    """Asks /v1/models through the Service twice a second (a new connection each time) and keeps what
    each answer said, in order: which revision answered when, and any request that failed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, int | str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="served-revisions", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                answer: int | str = _max_model_len(self.url)
            except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
                answer = f"{type(error).__name__}: {error}"
            self.answers.append((time.monotonic(), answer))

    def __enter__(self) -> ServedRevisions:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def failures(self) -> list[str]:
        return [answer for _, answer in self.answers if isinstance(answer, str)]

    def summary(self, since: float) -> str:
        """When each answer was first and last given, seconds after `since` (monotonic)."""
        spans: dict[int | str, list[float]] = {}
        for moment, answer in self.answers:
            spans.setdefault(answer, [moment, moment])[1] = moment
        return ", ".join(
            f"{answer} from +{first - since:.1f} s to +{last - since:.1f} s"
            for answer, (first, last) in spans.items()
        )


def _pods(core: Any, namespace: str) -> list[Any]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"{INSTANCE_LABEL}={NAME}").items)


def test_a_rolling_model_swap_under_streaming_load_fails_no_request_and_leaves_only_the_new_revision(
    bed: ClusterAccess, bed_namespace: str, bed_operator: OperatorProcess, bed_api: object
) -> None:
    namespace = bed_namespace
    core = client.CoreV1Api(bed_api)
    manifest = local_model(NAME, replicas=REPLICAS)
    assert manifest["spec"]["model"]["maxModelLen"] == OLD_MAX_MODEL_LEN
    model = manifest["spec"]["model"]["name"]
    bed.apply(manifest, namespace=namespace)
    before = wait_idep_ready(bed, namespace, NAME, REPLICAS)
    old_revision = before["revision"]["current"]
    url = service_address(bed, namespace, NAME)
    assert _max_model_len(url) == OLD_MAX_MODEL_LEN
    old_pods = {pod.metadata.name for pod in _pods(core, namespace)}

    load = LoadGenerator(url, model, CONCURRENCY, MAX_TOKENS, ramp_seconds=2.0)
    with ReadyEndpointWatch(bed.kubeconfig, namespace, NAME) as endpoints, ServedRevisions(url) as served:
        load.start()
        try:
            time.sleep(5)  # streams in flight on both old pods before the change
            manifest["spec"]["model"]["maxModelLen"] = NEW_MAX_MODEL_LEN
            bed.apply(manifest, namespace=namespace)
            changed_at = time.monotonic()

            def swapped() -> dict[str, Any] | None:
                status = idep_status(bed, namespace, NAME)
                revision = status.get("revision") or {}
                pods = _pods(core, namespace)
                done = (
                    revision.get("target") not in (None, old_revision)
                    and revision.get("current") == revision.get("target")
                    and status.get("phase") == "Ready"
                    and status.get("ready") == f"{REPLICAS}/{REPLICAS}"
                    and len(pods) == REPLICAS
                    and not old_pods & {pod.metadata.name for pod in pods}
                )
                return status if done else None

            after = wait_for(
                swapped, ROLLOUT_TIMEOUT_SECONDS, "the new revision on both replicas, old pods gone"
            )
            swapped_at = time.monotonic()
            time.sleep(3)  # streams that began on the new pods alone
        finally:
            result = load.stop()
    new_revision = after["revision"]["current"]
    during = [r for r in result.records if r.ended >= changed_at and r.started <= swapped_at]

    answers = [_max_model_len(url) for _ in range(MODELS_CHECKS)]
    pods = _pods(core, namespace)
    labels = {pod.metadata.name: pod.metadata.labels.get(REVISION_LABEL) for pod in pods}
    incomplete = result.incomplete()
    print(
        f"\nrevision {old_revision} -> {new_revision}: rollout {swapped_at - changed_at:.1f} s "
        f"(spec applied -> old pods gone, status Ready {after['ready']})\n"
        f"load, {CONCURRENCY} streams throughout: {result.summary()}; "
        f"{len(during)} streams overlapped the rollout\n"
        f"fewest ready endpoints during the rollout: {endpoints.lowest_ready_count}\n"
        f"/v1/models through the Service ({len(served.answers)} asked): {served.summary(changed_at)}\n"
        f"after: {MODELS_CHECKS} x /v1/models -> {sorted(set(answers))}; pod revisions {labels}"
    )

    assert new_revision != old_revision
    assert not incomplete, [
        f"#{r.index}: finish={r.finish_reason} tokens={r.completion_tokens} error={r.error}"
        for r in incomplete
    ]
    assert len(during) >= CONCURRENCY, "too few streams overlapped the rollout to prove anything"
    assert not served.failures(), served.failures()
    assert endpoints.lowest_ready_count is not None and endpoints.lowest_ready_count >= 1
    assert answers == [NEW_MAX_MODEL_LEN] * MODELS_CHECKS
    assert set(labels.values()) == {new_revision} and len(labels) == REPLICAS, labels
    assert NEW_MAX_MODEL_LEN in {answer for _, answer in served.answers}
