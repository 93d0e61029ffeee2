"""The agent: pod watches for its nodes, one worker per pod, and an orderly shutdown.

Why threads, not asyncio: the official client is synchronous, and most of what a kubelet does is
waiting on one thing at a time (a process to exit, a probe to answer, a grace period to pass).
A thread per watch, per pod, per probe and per process waiter keeps each of those a plain blocking
call; a handful of pods makes a few dozen threads that sleep almost always.

Each node's pods are listed with ``fieldSelector=spec.nodeName=<node>`` and then watched from the
list's resourceVersion (bookmarks keep it fresh); a 410 Gone, or any watch error, lists again and
reconciles: a pod missing from the new list is treated as deleted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from tests.cluster.local_node.kube import Kube, KubeError, WatchExpired
from tests.cluster.local_node.pod_worker import NodeContext, PodWorker

log = logging.getLogger(__name__)
RELIST_PAUSE_SECONDS = 1.0


class PodDispatcher:
    """Routes pod events to workers, one per pod UID; never starts a second worker for a UID."""

    def __init__(self, contexts: dict[str, NodeContext]) -> None:
        self._contexts = contexts
        self._lock = threading.Lock()
        self._workers: dict[str, PodWorker] = {}
        self._node_of: dict[str, str] = {}
        self._finished: set[str] = set()
        self._stopping = False

    def _done(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)
            self._finished.add(uid)

    def observe(self, node: str, event_type: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self._workers.get(uid)
            if event_type == "DELETED":
                self._finished.discard(uid)
                if worker is not None:
                    worker.object_deleted()
                return
            if worker is not None:
                worker.update(pod)
                return
            deleting = bool(pod["metadata"].get("deletionTimestamp"))
            finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and not deleting
            if self._stopping or uid in self._finished or finished:
                return
            worker = PodWorker(pod, self._contexts[node], self._done)
            self._workers[uid] = worker
            self._node_of[uid] = node
        log.info("pod %s/%s bound here: starting", pod["metadata"]["namespace"], pod["metadata"]["name"])
        worker.start()

    def reconcile(self, node: str, pods: Sequence[dict[str, Any]]) -> None:
        """After a (re)list: every listed pod is observed, every worker of a pod not listed is told
        its object is gone."""
        listed = {pod["metadata"]["uid"] for pod in pods}
        for pod in pods:
            self.observe(node, "MODIFIED", pod)
        with self._lock:
            missing = [
                worker
                for uid, worker in self._workers.items()
                if self._node_of.get(uid) == node and uid not in listed
            ]
        for worker in missing:
            worker.object_deleted()

    def shut_down(self, timeout: float) -> None:
        with self._lock:
            self._stopping = True
            workers = list(self._workers.values())
        for worker in workers:
            worker.shut_down()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


class PodWatch(threading.Thread):
    """List-then-watch of the pods bound to one node, for as long as the agent runs."""

    def __init__(self, kube: Kube, node: str, dispatcher: PodDispatcher, stop: threading.Event) -> None:
        super().__init__(name=f"watch-{node}", daemon=True)
        self._kube = kube
        self._node = node
        self._dispatcher = dispatcher
        self._stop_event = stop

    def run(self) -> None:
        query = [("fieldSelector", f"spec.nodeName={self._node}")]
        while not self._stop_event.is_set():
            try:
                listing = self._kube.request("GET", "/api/v1/pods", query)
                self._dispatcher.reconcile(self._node, listing.get("items") or [])
                version = listing["metadata"]["resourceVersion"]
                while not self._stop_event.is_set():
                    for event in self._kube.watch("/api/v1/pods", query, version):
                        obj = event.get("object") or {}
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        if event.get("type") != "BOOKMARK":
                            self._dispatcher.observe(self._node, event["type"], obj)
            except WatchExpired:
                log.info("node %s: pod watch expired; listing again", self._node)
            except KubeError as error:
                log.warning("node %s: pod watch failed (%s); listing again", self._node, error)
                self._stop_event.wait(RELIST_PAUSE_SECONDS)
            except Exception:
                log.exception("node %s: pod watch crashed; listing again", self._node)
                self._stop_event.wait(RELIST_PAUSE_SECONDS)
