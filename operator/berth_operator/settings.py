"""The operator's settings, read once at start from environment variables (the Helm chart sets them).

A bad value stops the operator with a message naming the variable, the value and what is accepted.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from berth_operator.api.prometheus import (
    HEADER_NAME_PATTERN,
    HEADER_VALUE_PATTERN,
    MAX_HEADER_VALUE_LENGTH,
    MAX_HEADERS,
)
from berth_operator.settings_model_cache import ModelCacheSettings, model_cache_from_environment

DEFAULT_RUNTIME_IMAGE = "ghcr.io/berth-dev/berth-runtime:0.1.0"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_API_CONCURRENCY = 32
MAX_API_CONCURRENCY = 256
MAX_GPU_HOURLY_PRICE = 1_000_000
CURRENCY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,15}$")


def _names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _port(environ: Mapping[str, str], variable: str, default: int) -> int:
    raw = environ.get(variable, "").strip() or str(default)
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ValueError(f"{variable}={raw!r}: expected a port number 0-65535 (0 disables)")
    return int(raw)


def _flag(environ: Mapping[str, str], variable: str, default: bool) -> bool:
    raw = environ.get(variable, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{variable}={raw!r}: expected true or false")
    return raw in ("true", "1", "yes")


def _count(environ: Mapping[str, str], variable: str, default: int, most: int) -> int:
    raw = environ.get(variable, "").strip() or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ValueError(f"{variable}={raw!r}: expected a whole number from 1 to {most}")
    return int(raw)


def _seconds(environ: Mapping[str, str], variable: str, default: float) -> float:
    raw = environ.get(variable, "").strip() or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValueError(f"{variable}={raw!r}: expected a positive number of seconds")
    return value


def _gpu_hourly_prices(environ: Mapping[str, str], variable: str) -> tuple[tuple[str, float], ...]:
    raw = environ.get(variable, "").strip()
    if not raw:
        return ()
    expected = (
        'expected a JSON object of GPU product to price per GPU-hour, e.g. {"NVIDIA-H100-80GB-HBM3": 2.49}'
    )
    try:
        parsed = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"{variable}={raw!r}: not JSON ({error}); {expected}") from error
    if not isinstance(parsed, dict):
        raise ValueError(f"{variable}={raw!r}: {expected}")
    prices = []
    for product, price in parsed.items():
        if not product.strip():
            raise ValueError(f"{variable}: an empty GPU product name; {expected}")
        if (
            isinstance(price, bool)
            or not isinstance(price, int | float)
            or not math.isfinite(price)
            or not 0 <= price <= MAX_GPU_HOURLY_PRICE
        ):
            raise ValueError(
                f"{variable}: price {price!r} for {product!r} must be a number "
                f"from 0 to {MAX_GPU_HOURLY_PRICE}"
            )
        prices.append((product.strip(), float(price)))
    return tuple(sorted(prices))


def _currency(environ: Mapping[str, str], variable: str) -> str | None:
    raw = environ.get(variable, "").strip()
    if raw and not CURRENCY_PATTERN.match(raw):
        raise ValueError(
            f"{variable}={raw!r}: expected a short label such as USD, EUR or credits (a letter, then up to "
            "15 letters, digits, '_', '.' or '-')"
        )
    return raw or None


def _file(environ: Mapping[str, str], variable: str) -> str | None:
    raw = environ.get(variable, "").strip()
    if raw and not raw.startswith("/"):
        raise ValueError(
            f"{variable}={raw!r}: expected an absolute path of a file in the operator's container"
        )
    return raw or None


def _headers(environ: Mapping[str, str], variable: str) -> tuple[tuple[str, str], ...]:
    raw = environ.get(variable, "").strip()
    if not raw:
        return ()
    expected = (
        f"expected a JSON object of at most {MAX_HEADERS} HTTP header names to values, "
        'e.g. {"X-Scope-OrgID": "team-a"}'
    )
    try:
        parsed = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"{variable}: not JSON ({error}); {expected}") from None
    if not isinstance(parsed, dict) or len(parsed) > MAX_HEADERS:
        raise ValueError(f"{variable}: {expected}")
    for name, value in parsed.items():
        if not re.fullmatch(HEADER_NAME_PATTERN, name):
            raise ValueError(
                f"{variable}: header name {name!r} must be 1-128 letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )
        # The value is not shown: a header may carry a credential.
        if (
            not isinstance(value, str)
            or len(value) > MAX_HEADER_VALUE_LENGTH
            or not re.fullmatch(HEADER_VALUE_PATTERN, value)
        ):
            raise ValueError(
                f"{variable}: the value of header {name!r} must be a string of at most "
                f"{MAX_HEADER_VALUE_LENGTH} printable ASCII characters"
            )
    return tuple(sorted(parsed.items()))


def _check_prometheus_access(settings: OperatorSettings) -> None:
    """Contradictory or pointless Prometheus access settings stop the operator at start."""
    if settings.prometheus_basic_auth_username is not None and ":" in settings.prometheus_basic_auth_username:
        raise ValueError("BERTH_PROMETHEUS_BASIC_AUTH_USERNAME: a basic-auth user name cannot contain ':'")
    if (settings.prometheus_basic_auth_username is None) != (
        settings.prometheus_basic_auth_password_file is None
    ):
        raise ValueError(
            "BERTH_PROMETHEUS_BASIC_AUTH_USERNAME and BERTH_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE go together: "
            "set both or neither"
        )
    credentials = settings.prometheus_bearer_token_file is not None or (
        settings.prometheus_basic_auth_username is not None
    )
    if (
        settings.prometheus_bearer_token_file is not None
        and settings.prometheus_basic_auth_username is not None
    ):
        raise ValueError(
            "BERTH_PROMETHEUS_BEARER_TOKEN_FILE and BERTH_PROMETHEUS_BASIC_AUTH_USERNAME: set one kind "
            "of credentials"
        )
    if credentials and any(name.lower() == "authorization" for name, _ in settings.prometheus_headers):
        raise ValueError(
            "BERTH_PROMETHEUS_HEADERS may not set Authorization beside a bearer token or basic auth "
            "(they set it)"
        )
    if settings.prometheus_insecure_skip_verify and settings.prometheus_ca_file is not None:
        raise ValueError(
            "BERTH_PROMETHEUS_INSECURE_SKIP_VERIFY=true checks no certificate, so BERTH_PROMETHEUS_CA_FILE "
            "would be ignored: set one or the other"
        )
    tls = (
        settings.prometheus_ca_file is not None
        or settings.prometheus_insecure_skip_verify
        or settings.prometheus_server_name is not None
    )
    given = [
        variable
        for variable, value in (
            ("BERTH_PROMETHEUS_BEARER_TOKEN_FILE", settings.prometheus_bearer_token_file),
            ("BERTH_PROMETHEUS_BASIC_AUTH_USERNAME", settings.prometheus_basic_auth_username),
            ("BERTH_PROMETHEUS_CA_FILE", settings.prometheus_ca_file),
            ("BERTH_PROMETHEUS_INSECURE_SKIP_VERIFY", settings.prometheus_insecure_skip_verify),
            ("BERTH_PROMETHEUS_SERVER_NAME", settings.prometheus_server_name),
            ("BERTH_PROMETHEUS_HEADERS", settings.prometheus_headers),
        )
        if value
    ]
    if given and settings.prometheus_url is None:
        raise ValueError(f"{', '.join(given)}: for the default Prometheus, but BERTH_PROMETHEUS_URL is unset")
    if tls and not (settings.prometheus_url or "").startswith("https://"):
        raise ValueError(
            f"BERTH_PROMETHEUS_CA_FILE, _INSECURE_SKIP_VERIFY and _SERVER_NAME need an https:// "
            f"BERTH_PROMETHEUS_URL, not {settings.prometheus_url!r}"
        )


@dataclass(frozen=True)
class OperatorSettings:
    """Operator-wide settings; each field names its environment variable, unit and default."""

    watch_namespaces: tuple[str, ...] = ()
    """BERTH_WATCH_NAMESPACES: comma-separated namespaces to watch. Default empty: all namespaces."""
    gpu_products: tuple[str, ...] = ()
    """BERTH_GPU_PRODUCTS: comma-separated allow-list of resources.gpu.product values (node label
    nvidia.com/gpu.product). Default empty: any product. A spec naming another product is refused."""
    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    """BERTH_RUNTIME_IMAGE: runtime image for specs that leave runtime.image unset."""
    prometheus_url: str | None = None
    """BERTH_PROMETHEUS_URL: Prometheus the autoscaler queries when a spec names none. Default: none."""
    prometheus_bearer_token_file: str | None = None
    """BERTH_PROMETHEUS_BEARER_TOKEN_FILE: file in the operator's container holding a bearer token for
    the default Prometheus (BERTH_PROMETHEUS_URL), read again for every query so a rotated token is used
    (OpenShift: /var/run/secrets/kubernetes.io/serviceaccount/token). Default: none. Not with basic auth."""
    prometheus_basic_auth_username: str | None = None
    """BERTH_PROMETHEUS_BASIC_AUTH_USERNAME: user name for HTTP basic auth to the default Prometheus,
    with BERTH_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE. Default: none."""
    prometheus_basic_auth_password_file: str | None = None
    """BERTH_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE: file in the operator's container holding that user's
    password, read again for every query. Default: none."""
    prometheus_ca_file: str | None = None
    """BERTH_PROMETHEUS_CA_FILE: PEM CA bundle that replaces the system's when checking the default
    Prometheus' certificate (an https:// URL). Default: none, the system's CA bundle."""
    prometheus_insecure_skip_verify: bool = False
    """BERTH_PROMETHEUS_INSECURE_SKIP_VERIFY: do not check the default Prometheus' certificate at all.
    Default false; not with BERTH_PROMETHEUS_CA_FILE."""
    prometheus_server_name: str | None = None
    """BERTH_PROMETHEUS_SERVER_NAME: host name sent (SNI) and checked in the default Prometheus'
    certificate instead of the URL's host. Default: none, the URL's host."""
    prometheus_headers: tuple[tuple[str, str], ...] = ()
    """BERTH_PROMETHEUS_HEADERS: extra HTTP headers on every query to the default Prometheus, a JSON object
    of at most 16 names to values, e.g. {"X-Scope-OrgID": "team-a"}. Default: none. No Authorization
    header beside a bearer token or basic auth. A spec's own headers win, name by name."""
    health_port: int = 8080
    """BERTH_HEALTH_PORT: port of the liveness endpoint /healthz. Default 8080; 0 disables it."""
    metrics_enabled: bool = True
    """BERTH_METRICS_ENABLED: serve the operator's Prometheus metrics. Default true."""
    metrics_port: int = 9090
    """BERTH_METRICS_PORT: port of the operator's /metrics. Default 9090."""
    peering_name: str | None = None
    """BERTH_PEERING_NAME: Kopf peering object shared by operator replicas. Default empty: standalone
    (one replica, no peering objects needed)."""
    log_level: str = "INFO"
    """BERTH_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR. Default INFO."""
    missing_secret_retry_seconds: float = 30.0
    """BERTH_MISSING_SECRET_RETRY_SECONDS: how often, in seconds, a spec waiting for a missing Secret
    is re-checked. Default 30."""
    api_concurrency: int = DEFAULT_API_CONCURRENCY
    """BERTH_API_CONCURRENCY: most Kubernetes API requests the operator has in flight at once (worker
    threads and pooled connections), 1-256. Default 32; more helps when hundreds of resources change
    at once, if the API server keeps up."""
    gpu_hourly_prices: tuple[tuple[str, float], ...] = ()
    """BERTH_GPU_HOURLY_PRICES: price of one GPU-hour per GPU product (nvidia.com/gpu.product), as a JSON
    object, e.g. {"NVIDIA-H100-80GB-HBM3": 2.49}; numbers from 0 to 1,000,000, no currency assumed.
    Used for the cost figures in status.economics when a spec sets no spec.cost.gpuHourlyPrice. Default
    empty: no prices (cost figures are absent, and status says why)."""
    gpu_price_currency: str | None = None
    """BERTH_GPU_PRICE_CURRENCY: label shown beside the cost figures (e.g. USD), display only. Default:
    none."""
    model_cache: ModelCacheSettings = field(default_factory=ModelCacheSettings)
    """BERTH_MODEL_CACHE_ROOT and BERTH_MODEL_CACHE_BUDGET: the node-local model cache that
    spec.model.cache.mode Node uses (settings_model_cache.py). Default: no root, so Node is refused."""

    def gpu_hourly_price(self, product: str) -> float | None:
        """The operator's price of one GPU-hour of `product`; None when it has none."""
        return dict(self.gpu_hourly_prices).get(product)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        log_level = env.get("BERTH_LOG_LEVEL", "").strip().upper() or "INFO"
        if log_level not in LOG_LEVELS:
            raise ValueError(f"BERTH_LOG_LEVEL={log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
        prometheus_url = env.get("BERTH_PROMETHEUS_URL", "").strip() or None
        if prometheus_url is not None and not prometheus_url.startswith(("http://", "https://")):
            raise ValueError(f"BERTH_PROMETHEUS_URL={prometheus_url!r}: expected an http:// or https:// URL")
        settings = cls(
            watch_namespaces=_names(env.get("BERTH_WATCH_NAMESPACES", "")),
            gpu_products=_names(env.get("BERTH_GPU_PRODUCTS", "")),
            runtime_image=env.get("BERTH_RUNTIME_IMAGE", "").strip() or DEFAULT_RUNTIME_IMAGE,
            prometheus_url=prometheus_url,
            prometheus_bearer_token_file=_file(env, "BERTH_PROMETHEUS_BEARER_TOKEN_FILE"),
            prometheus_basic_auth_username=env.get("BERTH_PROMETHEUS_BASIC_AUTH_USERNAME", "").strip()
            or None,
            prometheus_basic_auth_password_file=_file(env, "BERTH_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE"),
            prometheus_ca_file=_file(env, "BERTH_PROMETHEUS_CA_FILE"),
            prometheus_insecure_skip_verify=_flag(env, "BERTH_PROMETHEUS_INSECURE_SKIP_VERIFY", False),
            prometheus_server_name=env.get("BERTH_PROMETHEUS_SERVER_NAME", "").strip() or None,
            prometheus_headers=_headers(env, "BERTH_PROMETHEUS_HEADERS"),
            health_port=_port(env, "BERTH_HEALTH_PORT", 8080),
            metrics_enabled=_flag(env, "BERTH_METRICS_ENABLED", True),
            metrics_port=_port(env, "BERTH_METRICS_PORT", 9090),
            peering_name=env.get("BERTH_PEERING_NAME", "").strip() or None,
            log_level=log_level,
            missing_secret_retry_seconds=_seconds(env, "BERTH_MISSING_SECRET_RETRY_SECONDS", 30.0),
            api_concurrency=_count(
                env, "BERTH_API_CONCURRENCY", DEFAULT_API_CONCURRENCY, MAX_API_CONCURRENCY
            ),
            gpu_hourly_prices=_gpu_hourly_prices(env, "BERTH_GPU_HOURLY_PRICES"),
            gpu_price_currency=_currency(env, "BERTH_GPU_PRICE_CURRENCY"),
            model_cache=model_cache_from_environment(env),
        )
        _check_prometheus_access(settings)
        return settings
