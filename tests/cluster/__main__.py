"""Shell entry point of the local control plane:
``python -m tests.cluster up|down|env|build|logs|services``.

Why: the demo script, CI and people at a terminal drive the same launcher the pytest fixtures
use. ``up`` prints nothing but the lines to eval (so ``eval "$(python -m tests.cluster up)"``
works); progress goes to stderr. ``logs`` prints a local-node pod's container logs, which
``kubectl logs`` cannot reach (there is no kubelet API). ``services`` prints the local address of
each berth Service (the stand-in for kube-proxy listens there; also the Service's annotation
berth.dev/local-address).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from tests.cluster import launcher
from tests.cluster.build import BuildError, ensure_binaries
from tests.cluster.local_node.logs import pod_log_files
from tests.cluster.processes import StartError
from tests.cluster.simulation import DEFAULT_GPU_PRODUCT, GpuPool, Simulation


def _exports(cluster: launcher.RunningCluster) -> str:
    env = cluster.env()
    lines = [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    lines.append(f'export PATH={shlex.quote(str(cluster.bin_dir))}:"$PATH"')
    return "\n".join(lines)


def _print_logs(args: argparse.Namespace) -> int:
    found = launcher.find(args.name)
    state_dir = found.state_dir if found else launcher.state_dir_for(args.name)
    files = pod_log_files(state_dir / launcher.LOCAL_NODE / "pods", args.namespace, args.pod, args.previous)
    if args.container:
        files = {name: path for name, path in files.items() if name == args.container}
    if not files:
        print(
            f"no logs of pod {args.namespace}/{args.pod} on cluster {args.name!r}'s local nodes",
            file=sys.stderr,
        )
        return 1
    for container, path in files.items():
        if len(files) > 1:
            print(f"----- {container} ({path}) -----")
        sys.stdout.write(path.read_text(errors="replace"))
    return 0


def _print_services(name: str) -> int:
    found = launcher.find(name)
    addresses = found.serving.service_addresses() if found else {}
    if not addresses:
        print(f"cluster {name!r} has no berth Service with a local address", file=sys.stderr)
        return 1
    for service, ports in sorted(addresses.items()):
        print(service, " ".join(f"{port}=http://{address}" for port, address in sorted(ports.items())))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build (first time) and start a cluster; prints shell exports")
    down = commands.add_parser("down", help="stop a cluster's processes by PID and remove its state")
    env = commands.add_parser("env", help="print shell exports for a running cluster")
    commands.add_parser("build", help="build the binaries into the cache and print their folder")
    logs = commands.add_parser("logs", help="print the container logs of a pod on a local node")
    services = commands.add_parser("services", help="print the local address of each berth Service")
    logs.add_argument("pod", help="the pod's name")
    logs.add_argument("-n", "--namespace", default="default")
    logs.add_argument("-c", "--container", help="only this container (default: all)")
    logs.add_argument("-p", "--previous", action="store_true", help="the run before the current one")
    for command in (up, down, env, logs, services):
        command.add_argument("--name", default="berth", help="cluster name (default: berth)")
    up.add_argument(
        "--gpu-pool",
        action="append",
        type=GpuPool.parse,
        metavar="PRODUCT:NODES[:GPUS_PER_NODE[:MEMORY_MIB]]",
        help=f"a pool of simulated GPU nodes; repeatable (default: {DEFAULT_GPU_PRODUCT}:4:8)",
    )
    up.add_argument("--cpu-nodes", type=int, default=1, help="simulated CPU-only nodes (default: 1)")
    up.add_argument(
        "--local-nodes",
        type=int,
        default=0,
        help="nodes whose pods really run as local processes (tests/cluster/local_node; default: 0)",
    )
    up.add_argument(
        "--local-backoff",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="first crash-loop back-off on local nodes, doubling to 5 min (default: 10, as the kubelet)",
    )
    up.add_argument(
        "--ready-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long a started pod stays unready, standing in for model loading (default: 0)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            print(ensure_binaries().bin_dir)
        elif args.command == "up":
            pools = tuple(args.gpu_pool) if args.gpu_pool else (GpuPool(),)
            simulation = Simulation(
                gpu_pools=pools,
                cpu_nodes=args.cpu_nodes,
                ready_delay_seconds=args.ready_delay,
                local_nodes=args.local_nodes,
                local_node_backoff_seconds=args.local_backoff,
            )
            cluster = launcher.up(args.name, simulation)
            phases = ", ".join(
                f"{phase} {seconds:.1f} s" for phase, seconds in cluster.startup_seconds.items()
            )
            print(f"cluster {cluster.name!r} is up at {cluster.server} ({phases})", file=sys.stderr)
            print(f"logs: {cluster.log_dir}", file=sys.stderr)
            if cluster.pids.get("service-proxy"):
                listing = f"python -m tests.cluster services --name {cluster.name}"
                print(f"berth Services answer on local ports: {listing}", file=sys.stderr)
            if cluster.prometheus_url:
                print(f"Prometheus scraping the runtime pods: {cluster.prometheus_url}", file=sys.stderr)
            print(_exports(cluster))
        elif args.command == "logs":
            return _print_logs(args)
        elif args.command == "services":
            return _print_services(args.name)
        elif args.command == "down":
            stopped = launcher.down(args.name)
            print(f"cluster {args.name!r} {'stopped' if stopped else 'was not running'}", file=sys.stderr)
        else:
            found = launcher.find(args.name)
            if found is None:
                print(
                    f"cluster {args.name!r} is not up; start it with `python -m tests.cluster up`",
                    file=sys.stderr,
                )
                return 1
            print(_exports(found))
    except (BuildError, StartError, launcher.ClusterExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
