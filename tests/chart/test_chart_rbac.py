"""The chart grants the operator exactly what it documents it needs: berth_operator.kube's
REQUIRED_PERMISSIONS (its own API calls) and KOPF_CLUSTER_PERMISSIONS, plus Kopf peering and the
OPTIONAL_PERMISSIONS (Secrets) when turned on. Nothing more (no wildcards, no extra verbs) and nothing
less, in every RBAC layout the chart has."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from berth_operator.kube import KOPF_CLUSTER_PERMISSIONS, OPTIONAL_PERMISSIONS, REQUIRED_PERMISSIONS

from .conftest import NAMESPACE, Chart, Rendered

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES = ("", "namespaces")
SECRETS = ("", "secrets")


def _grants(permissions: Iterable[tuple[str, str, Iterable[str]]]) -> set[Grant]:
    return {(group, resource, verb) for group, resource, verbs in permissions for verb in verbs}


def _rule_grants(rules: list[dict[str, Any]]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _kopf_cluster(*resources: tuple[str, str]) -> set[Grant]:
    return {grant for grant in _grants(KOPF_CLUSTER_PERMISSIONS) if grant[:2] in resources}


OPERATOR_NAMESPACED = _grants(REQUIRED_PERMISSIONS)
PEERING_VERBS = ("get", "list", "watch", "patch")


def _role_grants(objects: Rendered, kind: str, namespace: str | None = None) -> set[Grant]:
    roles = [
        obj for obj in objects.find(kind) if namespace is None or obj["metadata"]["namespace"] == namespace
    ]
    assert len(roles) == 1, f"expected one {kind} in {namespace}, rendered {len(roles)}"
    return _rule_grants(roles[0]["rules"])


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watchNamespaces": ["a", "b"]},
        {"peering": {"enabled": True}},
        {"peering": {"enabled": True}, "watchNamespaces": ["a"]},
    ],
)
def test_no_rule_uses_a_wildcard(chart: Chart, values: dict[str, Any]) -> None:
    for obj in chart.render(values):
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{obj['kind']} {obj['metadata']['name']}: {rule}"
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule


def test_cluster_wide_role_is_exactly_the_documented_needs(chart: Chart) -> None:
    objects = chart.render()
    assert not objects.find("Role") and not objects.find("RoleBinding")
    granted = _role_grants(objects, "ClusterRole")
    # Watching every namespace, Kopf lists no namespaces; it still discovers CRDs.
    assert granted == OPERATOR_NAMESPACED | _kopf_cluster(CRDS)


def test_namespaced_install_grants_namespaced_needs_only_in_the_watched_namespaces(chart: Chart) -> None:
    objects = chart.render({"watchNamespaces": ["team-a", "team-b"]})
    assert _role_grants(objects, "ClusterRole") == _kopf_cluster(CRDS, NAMESPACES)
    for namespace in ("team-a", "team-b"):
        assert _role_grants(objects, "Role", namespace) == OPERATOR_NAMESPACED
        (binding,) = [b for b in objects.find("RoleBinding") if b["metadata"]["namespace"] == namespace]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": objects.find("Role")[0]["metadata"]["name"],
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "berth", "namespace": NAMESPACE}]
    assert len(objects.find("Role")) == 2


def test_peering_adds_only_the_peering_object_of_the_watch_scope(chart: Chart) -> None:
    cluster = chart.render({"peering": {"enabled": True}})
    assert _role_grants(cluster, "ClusterRole") == (
        OPERATOR_NAMESPACED
        | _kopf_cluster(CRDS)
        | {("kopf.dev", "clusterkopfpeerings", verb) for verb in PEERING_VERBS}
    )
    namespaced = chart.render({"peering": {"enabled": True}, "watchNamespaces": ["ml"]})
    assert _role_grants(namespaced, "Role", "ml") == (
        OPERATOR_NAMESPACED | {("kopf.dev", "kopfpeerings", verb) for verb in PEERING_VERBS}
    )
    assert _role_grants(namespaced, "ClusterRole") == _kopf_cluster(CRDS, NAMESPACES)


def test_no_secret_is_readable_by_default_and_read_secrets_adds_only_get_in_the_watched_scope(
    chart: Chart,
) -> None:
    assert not any(grant[:2] == SECRETS for grant in _role_grants(chart.render(), "ClusterRole"))
    cluster_wide = _role_grants(chart.render({"rbac": {"readSecrets": True}}), "ClusterRole")
    assert cluster_wide == OPERATOR_NAMESPACED | _grants(OPTIONAL_PERMISSIONS) | _kopf_cluster(CRDS)
    namespaced = chart.render({"rbac": {"readSecrets": True}, "watchNamespaces": ["ml"]})
    assert _role_grants(namespaced, "Role", "ml") == OPERATOR_NAMESPACED | _grants(OPTIONAL_PERMISSIONS)
    assert not any(grant[:2] == SECRETS for grant in _role_grants(namespaced, "ClusterRole"))
