"""`python -m berth_operator`: runs the operator with berth's settings against the current cluster
(in-cluster service account, or the kubeconfig's current context)."""

from __future__ import annotations

import argparse
import logging
import random
import sys

import kopf
from prometheus_client import CollectorRegistry, start_http_server

import berth_operator.handlers.registration  # noqa: F401  (registers the handlers with Kopf)
from berth_operator.handlers.context import OperatorContext
from berth_operator.kube.transport import ClientKubeApi, load_api_client
from berth_operator.metrics import OperatorMetrics
from berth_operator.settings import OperatorSettings


class QuietFollowers(logging.Filter):
    """Drops Kopf's "Handler 'follow-...' succeeded." lines: one per pod and Deployment event, they
    drown everything else. Failures of those handlers are still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        routine = message.startswith("Handler 'follow-") and message.endswith("succeeded.")
        return not (record.levelno <= logging.INFO and routine)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m berth_operator",
        description="berth operator: reconciles InferenceDeployments (berth.dev/v1alpha1). "
        "Settings come from BERTH_* environment variables; flags override the namespaces.",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="namespace to watch (repeatable); default: BERTH_WATCH_NAMESPACES, else all namespaces",
    )
    parser.add_argument("--all-namespaces", action="store_true", help="watch all namespaces")
    return parser.parse_args(argv)


def _peering_priority(settings: OperatorSettings) -> int | None:
    """With peering, a random priority per replica: Kopf runs the highest and pauses the others,
    while equal priorities would pause them all."""
    if settings.peering_name is None:
        return None
    return random.SystemRandom().randint(1, 2**31 - 1)


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    try:
        settings = OperatorSettings.from_environment()
    except ValueError as error:
        print(f"berth-operator: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf.objects").addFilter(QuietFollowers())
    namespaces: tuple[str, ...] = ()
    if not arguments.all_namespaces:
        namespaces = tuple(arguments.namespace or ()) or settings.watch_namespaces

    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    if settings.metrics_enabled and settings.metrics_port:
        start_http_server(settings.metrics_port, registry=registry)
    api = ClientKubeApi(load_api_client(settings.api_concurrency), settings.api_concurrency)
    context = OperatorContext(api=api, settings=settings, metrics=metrics)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=settings.peering_name is None,
        peering_name=settings.peering_name,
        priority=_peering_priority(settings),
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        memo=kopf.Memo(berth=context),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
