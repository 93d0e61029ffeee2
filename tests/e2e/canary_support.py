"""What the end-to-end canary tests read while a canary runs on real pods: the rollout's course in
status (polled in the background, so every phase and step is seen with the moment it began), the
resource's Events, the revision each pod runs, and which revision Prometheus says served requests.

Why apart from the tests: test_canary.py holds two rollouts (promoted, rolled back) that observe the
same things; the reads here are cheap API calls (no kubectl process per poll), so they take little
CPU from the model on the two shared cores.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from berth_operator.autoscaling.signals import SeriesSelector
from berth_operator.rollout.analysis import REVISION_SERIES_LABEL
from tests.e2e.load import LoadGenerator
from tests.integration.idep_reads import INSTANCE_LABEL
from tests.integration.support import wait_for

REVISION_LABEL = "berth.dev/revision"
TRACK_LABEL = "berth.dev/track"
SETTLE_SCRAPES_SECONDS = 2.5
"""Longer than two of the test bed's 1 s Prometheus scrapes: a count unchanged over it is complete."""


class Bed:
    """Reads of one InferenceDeployment and its pods through the API."""

    def __init__(self, api_client: object, namespace: str, name: str) -> None:
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace, self.name = namespace, name

    def status(self) -> dict[str, Any]:
        resource = self.custom.get_namespaced_custom_object(
            "berth.dev", "v1alpha1", self.namespace, "inferencedeployments", self.name
        )
        assert isinstance(resource, dict), resource
        return dict(resource.get("status") or {})

    def rollout(self) -> dict[str, Any]:
        return dict(self.status().get("rollout") or {})

    def pods(self) -> list[Any]:
        selector = f"{INSTANCE_LABEL}={self.name}"
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def pod_revisions(self) -> dict[str, str]:
        """Each pod's berth.dev/revision label, terminating pods included (they may still serve)."""
        return {pod.metadata.name: pod.metadata.labels.get(REVISION_LABEL, "") for pod in self.pods()}

    def deployment_replicas(self, name: str) -> int | None:
        """spec.replicas of the Deployment `name`; None when it does not exist."""
        try:
            deployment = self.apps.read_namespaced_deployment(name, self.namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return None if deployment.spec is None else deployment.spec.replicas

    def events(self, reason: str) -> list[str]:
        """Messages of the resource's Events of `reason`, oldest first."""
        selector = f"involvedObject.kind=InferenceDeployment,involvedObject.name={self.name}"
        items = self.core.list_namespaced_event(self.namespace, field_selector=selector).items
        ordered = sorted(items, key=lambda event: event.last_timestamp or event.event_time or 0)
        return [str(event.message) for event in ordered if event.reason == reason]


@dataclass(frozen=True)
class Moment:
    """The rollout as one poll saw it, `at` seconds on the monotonic clock."""

    at: float
    phase: str
    step: int | None
    summary: str


class RolloutTimeline:
    """Polls status.rollout every `interval` seconds in the background and keeps each change of
    (phase, step, summary), so the test can tell when every phase and step began."""

    def __init__(self, bed: Bed, interval: float = 0.5) -> None:
        self.bed, self.interval = bed, interval
        self.moments: list[Moment] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollout-timeline", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                rollout = self.bed.rollout()
            except Exception as error:  # an API hiccup is noted, not fatal to the test's own reads
                self.errors.append(f"{type(error).__name__}: {error}")
                continue
            moment = Moment(
                time.monotonic(),
                str(rollout.get("phase", "")),
                rollout.get("currentStep"),
                str(rollout.get("summary", "")),
            )
            last = self.moments[-1] if self.moments else None
            if last is None or (last.phase, last.step, last.summary) != (
                moment.phase,
                moment.step,
                moment.summary,
            ):
                self.moments.append(moment)

    def __enter__(self) -> RolloutTimeline:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def first(self, phase: str, step: int | None = None) -> float | None:
        """When `phase` (at `step`, if given) was first seen."""
        return next(
            (
                moment.at
                for moment in self.moments
                if moment.phase == phase and (step is None or moment.step == step)
            ),
            None,
        )

    def step_ready(self, step: int) -> float | None:
        """When canary step `step` had its new-revision replicas ready (its summary no longer says
        Starting: the pause and the analyses count from then)."""
        return next(
            (
                moment.at
                for moment in self.moments
                if moment.phase == "Canary" and moment.step == step and "Starting" not in moment.summary
            ),
            None,
        )

    def steps_seen(self, phase: str = "Canary") -> list[int]:
        """The steps seen in `phase`, in order, each once."""
        steps: list[int] = []
        for moment in self.moments:
            if moment.phase == phase and moment.step is not None and moment.step not in steps:
                steps.append(moment.step)
        return steps

    def describe(self, since: float) -> str:
        """Every change, seconds after `since` (monotonic)."""
        return "; ".join(
            f"+{moment.at - since:.1f} s {moment.summary or moment.phase}" for moment in self.moments
        )


class RevisionTraffic:
    """Requests each revision finished, per Prometheus: `vllm:request_success_total` summed by the
    series label the revision's pod label becomes (the chart's PodMonitor relabeling)."""

    def __init__(self, prometheus_url: str, namespace: str, name: str) -> None:
        self.url = prometheus_url
        self.query = (
            f"sum by ({REVISION_SERIES_LABEL}) "
            f"(vllm:request_success_total{SeriesSelector(namespace, name).matchers()})"
        )

    def finished(self) -> dict[str, float]:
        parameters = urllib.parse.urlencode({"query": self.query})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{parameters}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return {
            series["metric"].get(REVISION_SERIES_LABEL, ""): float(series["value"][1])
            for series in body["data"]["result"]
        }

    def _settled(self, timeout: float) -> dict[str, float]:
        """The counts once Prometheus holds every request that finished before this call: unchanged
        over SETTLE_SCRAPES_SECONDS. Read at once, a request the load finished in the last scrape
        interval was missing from them, and the next count gave it to the fresh requests (9 of 8)."""
        deadline = time.monotonic() + timeout
        previous = self.finished()
        while True:
            time.sleep(SETTLE_SCRAPES_SECONDS)
            current = self.finished()
            if current == previous or time.monotonic() > deadline:
                return current
            previous = current

    def served_by(self, load: LoadGenerator, requests: int, timeout: float = 20.0) -> dict[str, float]:
        """Sends `requests` requests through `load` and returns how many each revision finished, once
        Prometheus has scraped them all (a revision that served none is left out)."""
        before = self._settled(timeout)
        result = load.run(requests)
        assert not result.incomplete(), [record.error for record in result.incomplete()]

        def counted() -> dict[str, float] | None:
            after = self.finished()
            served = {revision: after[revision] - before.get(revision, 0.0) for revision in after}
            served = {revision: count for revision, count in served.items() if count > 0}
            return served if sum(served.values()) >= requests else None

        return wait_for(counted, timeout, f"Prometheus counting the {requests} requests by revision")
