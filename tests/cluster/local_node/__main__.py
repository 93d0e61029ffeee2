"""``python -m tests.cluster.local_node``: one agent for one or more local nodes, until SIGTERM.

Why a process of its own: the launcher starts it like every other component (its own session, log
file, PID recorded, stopped by PID in ``down``), and a developer can run one by hand against any
cluster. On SIGTERM or SIGINT it stops every container it started, removes its pod route and exits;
it does not touch the pods or the nodes (a kubelet that stops does not either).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tests.cluster.local_node.agent import PodDispatcher, PodWatch
from tests.cluster.local_node.backoff import KUBELET_INITIAL_SECONDS, KUBELET_MAXIMUM_SECONDS
from tests.cluster.local_node.events import EventRecorder
from tests.cluster.local_node.kube import Kube
from tests.cluster.local_node.launch import service_env
from tests.cluster.local_node.network import AddressPool, set_up_subnet, tear_down_subnet
from tests.cluster.local_node.node import NodeHeartbeat, host_capacity, node_manifest
from tests.cluster.local_node.pod_worker import NodeContext
from tests.cluster.local_node.process import stop_leftovers
from tests.cluster.local_node.records import timestamp

BACKOFF_ENV = "BERTH_LOCAL_NODE_BACKOFF_SECONDS"
REGISTERED_FILE = "registered"
"""Written in the state folder once the nodes are registered: the launcher waits for it."""
SHUTDOWN_SECONDS = 8.0
"""How long the agent waits for its pods' processes on shutdown (the launcher allows it 10 s)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.local_node", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True, help="pods' volumes, logs and records")
    parser.add_argument("--node", action="append", required=True, help="a node name; repeatable")
    parser.add_argument(
        "--pod-network",
        choices=("auto", "route", "loopback"),
        default="auto",
        help="route: a local route for a private /24 (needs CAP_NET_ADMIN); loopback: 127.10.x.y "
        "(EndpointSlices stay empty); auto: route, else loopback (default)",
    )
    parser.add_argument(
        "--backoff-seconds",
        type=float,
        default=float(os.environ.get(BACKOFF_ENV, KUBELET_INITIAL_SECONDS)),
        help=f"first crash-loop back-off, doubling per restart (default ${BACKOFF_ENV} or the kubelet's 10)",
    )
    parser.add_argument("--backoff-max-seconds", type=float, default=KUBELET_MAXIMUM_SECONDS)
    parser.add_argument("--cpu", help="capacity to report instead of this host's CPU count")
    parser.add_argument("--memory", help="capacity to report instead of this host's memory, e.g. 64Gi")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    kube = Kube(args.kubeconfig)
    subnet = set_up_subnet(state_dir, args.pod_network)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    heartbeat: NodeHeartbeat | None = None
    dispatcher: PodDispatcher | None = None
    try:
        pool = AddressPool(subnet, reserved=len(args.node))
        capacity = host_capacity(state_dir, args.cpu, args.memory)
        manifests = [
            node_manifest(
                name, pool.node_address(index), capacity, state_dir / "pods", subnet.describe(), timestamp()
            )
            for index, name in enumerate(args.node)
        ]
        heartbeat = NodeHeartbeat(kube, manifests)
        heartbeat.register()
        services = service_env(kube.server)
        contexts = {
            name: NodeContext(
                kube=kube,
                node_name=name,
                host_ip=pool.node_address(index),
                pool=pool,
                recorder=EventRecorder(kube, name),
                state_dir=state_dir,
                backoff_initial_seconds=args.backoff_seconds,
                backoff_max_seconds=args.backoff_max_seconds,
                services=services,
            )
            for index, name in enumerate(args.node)
        }
        dispatcher = PodDispatcher(contexts)
        for name in args.node:
            PodWatch(kube, name, dispatcher, stop).start()
        heartbeat.start()
        logging.info("nodes %s registered; pods get addresses in %s", ", ".join(args.node), subnet.describe())
        (state_dir / REGISTERED_FILE).write_text(timestamp() + "\n")
        while not stop.wait(1.0):
            pass
        logging.info("stopping: ending every container this agent started")
    finally:
        stop.set()
        if heartbeat is not None:
            heartbeat.stop()
        if dispatcher is not None:
            dispatcher.shut_down(SHUTDOWN_SECONDS)
        stop_leftovers(state_dir)
        tear_down_subnet(state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
