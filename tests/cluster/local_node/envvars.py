"""A container's environment, resolved as the kubelet resolves it (makeEnvironmentVariables).

Why: configuration reaches berth's runtime through env: plain values, ConfigMap and Secret keys,
the pod's own IP and name. A local process must see the same values a container would, and a
missing ConfigMap or key must stop the container with the kubelet's reason and words
(``CreateContainerConfigError``, ``secret "x" not found``), because tests and the operator read
them. Pure: ConfigMaps and Secrets come through lookup functions, so every rule is unit-tested.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Lookup = Callable[[str], Mapping[str, str] | None]
"""Name -> the object's data (Secret values decoded), or None when the object does not exist."""

_FIELD_INDEX = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerConfigError(Exception):
    """The container cannot be created yet; the message is the kubelet's, shown as waiting.message."""


@dataclass(frozen=True)
class PodFacts:
    """What fieldRef can name: the pod's metadata and the addresses the agent gave it."""

    pod: Mapping[str, Any]
    pod_ip: str
    host_ip: str


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, unknown ones stay as written,
    ``$$`` is a literal ``$`` (third_party/forked/golang/expansion)."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "$" or index + 1 >= len(text):
            out.append(char)
            index += 1
            continue
        following = text[index + 1]
        if following == "$":
            out.append("$")
            index += 2
        elif following == "(":
            close = text.find(")", index + 2)
            if close == -1:
                out.append("$(")
                index += 2
                continue
            name = text[index + 2 : close]
            value = lookup(name)
            out.append(value if value is not None else f"$({name})")
            index = close + 1
        else:
            out.append("$" + following)
            index += 2
    return "".join(out)


def field_value(path: str, facts: PodFacts) -> str:
    """The value of a downward-API ``fieldRef.fieldPath``."""
    metadata = facts.pod.get("metadata", {})
    spec = facts.pod.get("spec", {})
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
    }
    if path in simple:
        return str(simple[path])
    indexed = _FIELD_INDEX.match(path)
    if indexed:
        return str((metadata.get(indexed.group(1)) or {}).get(indexed.group(2), ""))
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def _object(kind: str, name: str, lookup: Lookup, optional: bool) -> Mapping[str, str] | None:
    data = lookup(name)
    if data is None and not optional:
        raise ContainerConfigError(f'{kind} "{name}" not found')
    return data


def _key_ref(
    reference: Mapping[str, Any], kind: str, title: str, lookup: Lookup, namespace: str
) -> str | None:
    """A configMapKeyRef/secretKeyRef's value; None when optional and absent."""
    name, key = reference.get("name", ""), reference.get("key", "")
    optional = bool(reference.get("optional", False))
    data = _object(kind, name, lookup, optional)
    if data is None:
        return None
    if key not in data:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {title} {namespace}/{name}")
    return data[key]


def _value_from(
    name: str, value_from: Mapping[str, Any], facts: PodFacts, config_maps: Lookup, secrets: Lookup
) -> str | None:
    """An env var's ``valueFrom``; None when it names an optional object or key that is absent."""
    namespace = facts.pod.get("metadata", {}).get("namespace", "")
    if "fieldRef" in value_from:
        return field_value(value_from["fieldRef"].get("fieldPath", ""), facts)
    if "configMapKeyRef" in value_from:
        return _key_ref(value_from["configMapKeyRef"], "configmap", "ConfigMap", config_maps, namespace)
    if "secretKeyRef" in value_from:
        return _key_ref(value_from["secretKeyRef"], "secret", "Secret", secrets, namespace)
    unsupported = ", ".join(sorted(value_from))
    raise ContainerConfigError(f"env {name}: valueFrom {unsupported} is not supported on a local node")


def resolve_env(
    container: Mapping[str, Any],
    facts: PodFacts,
    config_maps: Lookup,
    secrets: Lookup,
    service_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's declared environment: envFrom first, then env (which overrides it), ``$(VAR)``
    expanded against what is declared before it; ``service_env`` fills names nobody declared.
    Raises ContainerConfigError with the kubelet's message for a missing object or key."""
    service_env = dict(service_env or {})
    declared: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            reference, kind, lookup = source["configMapRef"], "configmap", config_maps
        elif "secretRef" in source:
            reference, kind, lookup = source["secretRef"], "secret", secrets
        else:
            continue
        data = _object(kind, reference.get("name", ""), lookup, bool(reference.get("optional", False)))
        for key, text in (data or {}).items():
            declared[prefix + key] = text

    def known(name: str) -> str | None:
        return declared.get(name, service_env.get(name))

    for variable in container.get("env") or []:
        resolved: str | None = variable.get("value", "")
        if resolved:
            resolved = expand(resolved, known)
        elif variable.get("valueFrom"):
            resolved = _value_from(variable["name"], variable["valueFrom"], facts, config_maps, secrets)
            if resolved is None:
                continue
        declared[variable["name"]] = resolved or ""
    return {**service_env, **declared}


def expand_command(words: list[str], env: Mapping[str, str]) -> list[str]:
    """command and args with ``$(VAR)`` replaced from the container's final environment."""
    return [expand(word, env.get) for word in words]
