"""Pods on a local node really run: probes gate Ready, Services get endpoints that answer, crashes
loop with the kubelet's back-off, deletion runs preStop then SIGTERM, env comes from ConfigMaps.

Why: these nodes are what proves berth end to end (tests/cluster/local_node); each behaviour the
operator and the runtime rely on is checked here on plain Kubernetes objects (no berth), so a
failure points at the node and not at berth. The module attaches its own local node to the
session's cluster (a 1 s crash-loop back-off instead of the kubelet's 10 s) and pins every pod to
it; the agent's log and the pods' container logs are printed when a test fails.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import launcher, processes
from tests.cluster.local_node.logs import read_pod_logs
from tests.cluster.local_node.node import POD_NETWORK_ANNOTATION
from tests.cluster.simulation import Simulation
from tests.integration.local_node_support import (
    LocalNode,
    ReadinessRecord,
    deployment,
    get,
    only_pod,
    pinned,
    ready,
)
from tests.integration.support import ClusterAccess, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_node(cluster: ClusterAccess) -> Iterator[LocalNode]:
    prefix = f"lt{os.getpid()}"
    simulation = Simulation(
        gpu_pools=(), cpu_nodes=0, local_nodes=1, local_node_prefix=prefix, local_node_backoff_seconds=1.0
    )
    attachment = launcher.attach(f"pytest-local-{os.getpid()}", cluster.kubeconfig, simulation)
    try:
        node = cluster.get("node", f"{prefix}-0")
        network = node["metadata"]["annotations"][POD_NETWORK_ANNOTATION]
        yield LocalNode(f"{prefix}-0", attachment, routed="local route" in network)
    finally:
        launcher.down(attachment.name)


@pytest.fixture
def on_failure(local_node: LocalNode, namespace: str, request: pytest.FixtureRequest) -> Iterator[None]:
    """Prints the agent's log and every pod's container logs when the test fails."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        agent_log = processes.log_tail(local_node.cluster.log_dir, "local-node", 60)
        print(f"\n----- local-node agent log -----\n{agent_log}")
        for folder in sorted(local_node.pods_root.glob(f"{namespace}_*")):
            pod = folder.name.split("_")[1]
            print(read_pod_logs(local_node.pods_root, namespace, pod, tail_lines=40))


WEB_SERVER = ["python", "-m", "http.server", "--bind", "0.0.0.0", "--directory", "/srv", "8080"]


def test_a_pod_runs_its_init_container_then_serves_and_is_ready_only_once_its_probe_passes(
    cluster: ClusterAccess, namespace: str, local_node: LocalNode, tmp_path: Path, on_failure: None
) -> None:
    site = tmp_path / "site"
    settings = {"greeting": "hello from a ConfigMap"}
    cluster.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": settings},
        namespace,
    )
    write_greeting = (
        "import os, sys; open(sys.argv[1], 'w').write(os.environ['GREETING'] + ' to ' + os.environ['POD_IP'])"
    )
    spec = {
        "initContainers": [
            {
                "name": "greet",
                "image": "python:3.11",
                "command": ["python", "-c", write_greeting, "/srv/greeting.txt"],
                "env": [
                    {
                        "name": "GREETING",
                        "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}},
                    },
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                ],
                "volumeMounts": [{"name": "site", "mountPath": "/srv"}],
            }
        ],
        "containers": [
            {
                "name": "web",
                "image": "python:3.11",
                "command": WEB_SERVER,
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {
                    "httpGet": {"path": "/ready.txt", "port": "http"},
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
                "volumeMounts": [{"name": "site", "mountPath": "/srv"}],
            }
        ],
        "volumes": [{"name": "site", "hostPath": {"path": str(site), "type": "DirectoryOrCreate"}}],
    }
    with ReadinessRecord(cluster.kubeconfig, namespace, "web") as record:
        created = time.monotonic()
        cluster.apply(deployment(local_node, "web", spec), namespace)

        def running() -> dict[str, Any] | None:
            pod = only_pod(cluster, namespace, "web")
            return pod if pod and pod["status"].get("phase") == "Running" else None

        pod = wait_for(running, 30, "the web pod Running")
        running_after = time.monotonic() - created
        status = pod["status"]
        pod_ip = status["podIP"]
        assert pod["spec"]["nodeName"] == local_node.name
        assert status["podIPs"] == [{"ip": pod_ip}] and pod_ip != status["hostIP"]
        init = status["initContainerStatuses"][0]["state"]["terminated"]
        assert (init["exitCode"], init["reason"]) == (0, "Completed")
        assert status["containerStatuses"][0]["state"].get("running")
        # The process answers on the pod's own address, and got the ConfigMap key and its IP through env.
        assert wait_for(lambda: get(f"http://{pod_ip}:8080/greeting.txt"), 10, "the server answering") == (
            f"hello from a ConfigMap to {pod_ip}"
        )
        # /ready.txt does not exist yet: the probe fails every second and the pod stays unready.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            pod = cluster.get("pod", pod["metadata"]["name"], namespace)
            assert not ready(pod), "Ready before the readiness probe could pass"
            time.sleep(0.5)
        assert pod["status"]["containerStatuses"][0]["ready"] is False
        unhealthy = cluster.get("events", namespace=namespace)
        assert any(
            event["reason"] == "Unhealthy"
            and "Readiness probe failed: HTTP probe failed with statuscode: 404" in event["message"]
            for event in unhealthy
        )

        made_ready = time.monotonic()
        (site / "ready.txt").write_text("ok")
        pod = wait_for(
            lambda: (p := only_pod(cluster, namespace, "web")) and ready(p) and p, 10, "the web pod Ready"
        )
        ready_after = time.monotonic() - made_ready
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    assert len(record.seen) >= 4  # each status write the agent made was seen
    assert not record.ready_before(made_ready), "Ready for a moment before the readiness probe could pass"
    print(f"\nweb pod: Running {running_after:.1f} s after apply; Ready {ready_after:.1f} s after ready.txt")


def test_a_service_gets_the_ready_pod_address_as_its_endpoint_and_it_answers(
    cluster: ClusterAccess, namespace: str, local_node: LocalNode, tmp_path: Path, on_failure: None
) -> None:
    if not local_node.routed:
        pytest.skip(
            "the agent could not add its local route (no CAP_NET_ADMIN): loopback pod addresses, no endpoints"
        )
    (tmp_path / "index.html").write_text("served by a local node")
    spec = {
        "containers": [
            {
                "name": "web",
                "image": "python:3.11",
                "command": WEB_SERVER,
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                "volumeMounts": [{"name": "site", "mountPath": "/srv"}],
            }
        ],
        "volumes": [{"name": "site", "hostPath": {"path": str(tmp_path)}}],
    }
    cluster.apply(deployment(local_node, "site", spec), namespace)
    service_spec = {
        "selector": {"app": "site"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
    }
    cluster.apply(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "site"}, "spec": service_spec}, namespace
    )
    pod = wait_for(
        lambda: (p := only_pod(cluster, namespace, "site")) and ready(p) and p, 30, "the site pod Ready"
    )

    def ready_endpoints() -> list[dict[str, Any]] | None:
        slices = cluster.get("endpointslices", namespace=namespace, **{"kubernetes.io/service-name": "site"})
        endpoints = [endpoint for piece in slices for endpoint in piece.get("endpoints") or []]
        return endpoints if any(e["conditions"].get("ready") for e in endpoints) else None

    endpoints = wait_for(ready_endpoints, 20, "a ready endpoint of Service site")
    assert [endpoint["addresses"] for endpoint in endpoints] == [[pod["status"]["podIP"]]]
    assert endpoints[0]["nodeName"] == local_node.name
    slices = cluster.get("endpointslices", namespace=namespace, **{"kubernetes.io/service-name": "site"})
    port = slices[0]["ports"][0]["port"]
    assert get(f"http://{endpoints[0]['addresses'][0]}:{port}/") == "served by a local node"


def test_a_container_that_exits_3_crash_loops_with_a_doubling_back_off(
    cluster: ClusterAccess, namespace: str, local_node: LocalNode, on_failure: None
) -> None:
    command = ["python", "-c", "import sys; print('cannot load weights'); sys.exit(3)"]
    spec = {"containers": [{"name": "crash", "image": "python:3.11", "command": command}]}
    cluster.apply(deployment(local_node, "crash", spec), namespace)
    messages: set[str] = set()

    def looping() -> dict[str, Any] | None:
        pod = only_pod(cluster, namespace, "crash")
        if not pod or not pod["status"].get("containerStatuses"):
            return None
        container = pod["status"]["containerStatuses"][0]
        waiting = container["state"].get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            messages.add(waiting["message"].split(" restarting")[0])
        return (
            container
            if container["restartCount"] >= 3 and waiting.get("reason") == "CrashLoopBackOff"
            else None
        )

    container = wait_for(looping, 30, "restartCount 3 in CrashLoopBackOff", interval=0.2)
    last = container["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (3, "Error")
    assert last["message"] == "cannot load weights"
    assert container["ready"] is False
    pod = only_pod(cluster, namespace, "crash")
    assert pod is not None and pod["status"]["phase"] == "Running"
    metadata = pod["metadata"]
    assert container["state"]["waiting"]["message"].endswith(
        f"restarting failed container=crash pod={metadata['name']}_{namespace}({metadata['uid']})"
    )
    # 1 s, then 2 s: the delay doubles (the first exit restarts at once, as the kubelet does).
    assert {"back-off 1s", "back-off 2s"} <= messages
    events = cluster.get("events", namespace=namespace)
    assert any(event["reason"] == "BackOff" and event["source"]["component"] == "kubelet" for event in events)


GRACEFUL = """
import os, signal, sys, time
def on_term(signum, frame):
    with open(os.path.join(sys.argv[1], "sigterm"), "w") as marker:
        marker.write(json.dumps({"pid": os.getpid(), "at": time.time()}))
    sys.exit(0)
import json
signal.signal(signal.SIGTERM, on_term)
print("serving", flush=True)
while True:
    time.sleep(0.05)
"""
PRE_STOP = "import sys, time; open(sys.argv[1], 'w').write(repr(time.time())); time.sleep(1)"


def test_deleting_a_pod_runs_pre_stop_then_sigterm_within_the_grace_period_and_the_pod_goes(
    cluster: ClusterAccess, namespace: str, local_node: LocalNode, tmp_path: Path, on_failure: None
) -> None:
    spec = pinned(
        local_node,
        {
            "terminationGracePeriodSeconds": 10,
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11",
                    "command": ["python", "-c", GRACEFUL, "/markers"],
                    "lifecycle": {
                        "preStop": {"exec": {"command": ["python", "-c", PRE_STOP, "/markers/prestop"]}}
                    },
                    "volumeMounts": [{"name": "markers", "mountPath": "/markers"}],
                }
            ],
            "volumes": [{"name": "markers", "hostPath": {"path": str(tmp_path)}}],
        },
    )
    cluster.apply(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "graceful"}, "spec": spec}, namespace
    )
    wait_for(
        lambda: read_pod_logs(local_node.pods_root, namespace, "graceful").endswith("serving"),
        30,
        "the process started",
    )
    deleted_at = time.time()
    cluster.kubectl("delete", "pod", "graceful", "--wait=false", namespace=namespace)
    wait_for(lambda: cluster.get_or_none("pod", "graceful", namespace) is None, 20, "the pod object gone")
    pre_stop = float((tmp_path / "prestop").read_text())
    sigterm = json.loads((tmp_path / "sigterm").read_text())
    assert deleted_at <= pre_stop <= sigterm["at"] - 1  # the hook ran, and SIGTERM came after it returned
    assert sigterm["at"] - deleted_at < 10  # within terminationGracePeriodSeconds
    assert not processes.is_alive(sigterm["pid"])


def test_missing_secret_volume_and_config_key_hold_the_pod_with_the_kubelets_reasons(
    cluster: ClusterAccess, namespace: str, local_node: LocalNode, on_failure: None
) -> None:
    sleeper = ["python", "-c", "import time; time.sleep(300)"]
    mount = {"name": "api-key", "mountPath": "/keys"}
    mounting = {
        "containers": [{"name": "c", "image": "x", "command": sleeper, "volumeMounts": [mount]}],
        "volumes": [{"name": "api-key", "secret": {"secretName": "chat-key"}}],
    }
    absent_key = {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "absent"}}}
    configured = {"containers": [{"name": "c", "image": "x", "command": sleeper, "env": [absent_key]}]}
    cluster.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}},
        namespace,
    )
    for name, spec in (("mounting", mounting), ("configured", configured)):
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": pinned(local_node, spec),
            },
            namespace,
        )

    def failed_mount() -> dict[str, Any] | None:
        events = cluster.get("events", namespace=namespace)
        return next(
            (e for e in events if e["reason"] == "FailedMount" and e["involvedObject"]["name"] == "mounting"),
            None,
        )

    event = wait_for(failed_mount, 20, "a FailedMount event")
    assert event["type"] == "Warning"
    assert event["message"] == 'MountVolume.SetUp failed for volume "api-key" : secret "chat-key" not found'
    assert event["source"]["component"] == "kubelet"
    pod = cluster.get("pod", "mounting", namespace)
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"

    def config_error() -> dict[str, Any] | None:
        statuses = cluster.get("pod", "configured", namespace)["status"].get("containerStatuses") or []
        waiting = statuses[0]["state"].get("waiting") if statuses else None
        return waiting if waiting and waiting["reason"] == "CreateContainerConfigError" else None

    waiting = wait_for(config_error, 20, "CreateContainerConfigError")
    assert waiting["message"] == f"couldn't find key absent in ConfigMap {namespace}/settings"

    # Both recover once what they wait for exists, as on a real node.
    cluster.kubectl(
        "create", "secret", "generic", "chat-key", "--from-literal=key=s3cret", namespace=namespace
    )
    cluster.kubectl(
        "patch", "configmap", "settings", "-p", '{"data": {"absent": "here now"}}', namespace=namespace
    )
    for name in ("mounting", "configured"):
        wait_for(lambda name=name: ready(cluster.get("pod", name, namespace)), 30, f"pod {name} Ready")


def test_down_stops_the_agent_and_every_process_it_started(cluster: ClusterAccess, namespace: str) -> None:
    simulation = Simulation(gpu_pools=(), cpu_nodes=0, local_nodes=1, local_node_prefix=f"ld{os.getpid()}")
    attachment = launcher.attach(f"pytest-local-down-{os.getpid()}", cluster.kubeconfig, simulation)
    node = f"ld{os.getpid()}-0"
    try:
        spec = pinned(
            LocalNode(node, attachment, routed=False),
            {
                "containers": [
                    {"name": "c", "image": "x", "command": ["python", "-c", "import time; time.sleep(300)"]}
                ]
            },
        )
        cluster.apply(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"}, "spec": spec}, namespace
        )
        pod = wait_for(
            lambda: ready(p := cluster.get("pod", "sleeper", namespace)) and p, 30, "the sleeper Ready"
        )
        pid = int(pod["status"]["containerStatuses"][0]["containerID"].rsplit("/", 1)[1])
        assert processes.is_alive(pid)
        agent = attachment.pids["local-node"]
    finally:
        launcher.down(attachment.name)
    assert not processes.is_alive(agent)
    assert not processes.is_alive(pid)
    assert cluster.get_or_none("node", node) is None
