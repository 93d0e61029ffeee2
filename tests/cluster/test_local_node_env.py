"""Environment resolution of the local-node agent: the kubelet's rules and messages (no cluster)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tests.cluster.local_node.envvars import (
    ContainerConfigError,
    PodFacts,
    expand,
    expand_command,
    resolve_env,
)

POD = {
    "metadata": {"name": "web-1", "namespace": "team", "uid": "u-1", "labels": {"app": "web"}},
    "spec": {"nodeName": "local-0", "serviceAccountName": "runner"},
}
FACTS = PodFacts(POD, pod_ip="10.213.7.5", host_ip="10.213.7.1")
CONFIG_MAPS = {"settings": {"greeting": "hello", "level": "debug"}}
SECRETS = {"chat-key": {"token": "s3cret"}}


def _config_maps(name: str) -> Mapping[str, str] | None:
    return CONFIG_MAPS.get(name)


def _secrets(name: str) -> Mapping[str, str] | None:
    return SECRETS.get(name)


def _resolve(container: dict[str, object], services: dict[str, str] | None = None) -> dict[str, str]:
    return resolve_env(container, FACTS, _config_maps, _secrets, services)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)-$(B)", "1-2"),
        ("$(MISSING)", "$(MISSING)"),  # unknown references stay as written
        ("$$(A)", "$(A)"),  # $$ escapes
        ("cost: $$5", "cost: $5"),
        ("$(A", "$(A"),  # unterminated
        ("trailing $", "trailing $"),
        ("$x", "$x"),
    ],
)
def test_expansion_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}.get) == expected


def test_env_overrides_env_from_and_values_expand_what_was_declared_before_them() -> None:
    env = _resolve(
        {
            "envFrom": [
                {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                {"secretRef": {"name": "chat-key"}},
            ],
            "env": [
                {"name": "CFG_level", "value": "info"},
                {"name": "URL", "value": "http://$(POD_IP):8000/$(CFG_greeting)"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            ],
        }
    )
    assert env["CFG_greeting"] == "hello"
    assert env["CFG_level"] == "info"
    assert env["token"] == "s3cret"
    # POD_IP is declared after URL, so URL cannot see it yet (the kubelet's order).
    assert env["URL"] == "http://$(POD_IP):8000/hello"
    assert env["POD_IP"] == "10.213.7.5"


def test_value_from_keys_and_pod_fields() -> None:
    env = _resolve(
        {
            "env": [
                {
                    "name": "GREETING",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}},
                },
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "chat-key", "key": "token"}}},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            ]
        }
    )
    assert env == {
        "GREETING": "hello",
        "TOKEN": "s3cret",
        "NAME": "web-1",
        "NS": "team",
        "APP": "web",
        "NODE": "local-0",
        "HOST": "10.213.7.1",
    }


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ({"secretKeyRef": {"name": "absent", "key": "token"}}, 'secret "absent" not found'),
        ({"configMapKeyRef": {"name": "absent", "key": "x"}}, 'configmap "absent" not found'),
        (
            {"configMapKeyRef": {"name": "settings", "key": "nope"}},
            "couldn't find key nope in ConfigMap team/settings",
        ),
        (
            {"secretKeyRef": {"name": "chat-key", "key": "nope"}},
            "couldn't find key nope in Secret team/chat-key",
        ),
    ],
)
def test_missing_objects_and_keys_fail_with_the_kubelets_message(
    variable: dict[str, object], message: str
) -> None:
    with pytest.raises(ContainerConfigError) as raised:
        _resolve({"env": [{"name": "X", "valueFrom": variable}]})
    assert str(raised.value) == message


def test_env_from_a_missing_object_fails_unless_optional() -> None:
    with pytest.raises(ContainerConfigError, match=r'^secret "gone" not found$'):
        _resolve({"envFrom": [{"secretRef": {"name": "gone"}}]})
    assert _resolve({"envFrom": [{"secretRef": {"name": "gone", "optional": True}}]}) == {}


def test_optional_references_that_are_absent_leave_the_variable_unset() -> None:
    env = _resolve(
        {
            "env": [
                {
                    "name": "A",
                    "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
                },
                {
                    "name": "B",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k", "optional": True}},
                },
                {"name": "C", "value": ""},
            ]
        }
    )
    assert env == {"C": ""}


def test_service_env_fills_only_undeclared_names_and_is_visible_to_expansion() -> None:
    env = _resolve(
        {
            "env": [
                {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST)"},
                {"name": "KUBERNETES_PORT", "value": "x"},
            ]
        },
        services={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_PORT": "tcp://127.0.0.1:6443"},
    )
    assert env["API"] == "https://127.0.0.1"
    assert env["KUBERNETES_PORT"] == "x"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"


def test_unsupported_sources_are_named() -> None:
    with pytest.raises(ContainerConfigError, match="resourceFieldRef is not supported"):
        _resolve({"env": [{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]})


def test_command_and_args_expand_from_the_final_environment() -> None:
    assert expand_command(["serve", "--port=$(PORT)", "$(UNSET)", "$$(PORT)"], {"PORT": "8000"}) == [
        "serve",
        "--port=8000",
        "$(UNSET)",
        "$(PORT)",
    ]
