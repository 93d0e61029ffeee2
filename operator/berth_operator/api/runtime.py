"""`spec.runtime`: the inference runtime's image and engine settings (rendered into its CLI)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from berth_operator.api.base import ApiModel, CrossFieldRule, section_default
from berth_operator.api.common import DNS_SUBDOMAIN_PATTERN, LocalObjectReference

# Flags the operator renders from the spec; `extraArgs` may not set them a second time.
MANAGED_RUNTIME_FLAGS = (
    "--model",
    "--served-model-name",
    "--host",
    "--port",
    "--metrics-port",
    "--dtype",
    "--device",
    "--quantization",
    "--max-model-len",
    "--max-num-seqs",
    "--max-batch-size",  # the runtime's older name for --max-num-seqs, still accepted
    "--max-num-batched-tokens",
    "--block-size",
    "--kv-cache-blocks",
    "--gpu-memory-utilization",
    "--enable-prefix-caching",
    "--speculative-method",
    "--num-speculative-tokens",
    "--tensor-parallel-size",
    "--max-queue",
    "--drain-timeout",
    "--warmup-prompts",
    "--api-key-file",
)
# The runtime's other `serve` flags, the only ones `extraArgs` may set, each as `--flag=value` with
# the value the runtime's parser accepts. Together with MANAGED_RUNTIME_FLAGS this is every flag
# of `python -m berth_runtime serve` (tests/unit/builders/test_builder_runtime_contract.py checks it
# against the runtime's own parser, which refuses abbreviations).
EXTRA_RUNTIME_FLAGS = {
    "--seed": ("-?[0-9]{1,18}", "an integer"),
    "--log-level": (
        "(critical|error|warning|info|debug|trace)",
        "critical, error, warning, info, debug or trace",
    ),
}
EXTRA_ARGUMENT_PATTERN = (
    "^(" + "|".join(f"{flag}={value}" for flag, (value, _) in EXTRA_RUNTIME_FLAGS.items()) + ")$"
)
# Environment the operator sets in the runtime container, and the variables that choose which GPUs a
# container sees (the NVIDIA container runtime honours NVIDIA_* on some nodes, exposing every GPU):
# `env` may set neither.
RESERVED_ENV_NAMES = ("HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES")
RESERVED_ENV_PREFIX = "NVIDIA_"
# An image reference: [registry[:port]/]path[:tag][@algorithm:digest], no whitespace.
IMAGE_PATTERN = (
    r"^[A-Za-z0-9][-A-Za-z0-9_.]*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[a-z0-9]+([+._-][a-z0-9]+)*:[a-fA-F0-9]{32,})?$"
)

ExtraArgument = Annotated[str, Field(min_length=1, max_length=256, pattern=EXTRA_ARGUMENT_PATTERN)]


def is_reserved_env_name(name: str) -> bool:
    return name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIX)


# The architectures whose layers the runtime shards (its registry's TENSOR_PARALLEL_FAMILIES;
# tests/unit/builders/test_builder_runtime_contract.py holds the two equal).
TENSOR_PARALLEL_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "Phi3ForCausalLM",
)


class KVCacheSpec(ApiModel):
    """Paged KV cache sizing and prefix reuse."""

    block_size: int = Field(default=16, ge=1, le=256, description="KV cache block size in tokens.")
    gpu_memory_utilization: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description=(
            "Share of GPU memory for weights plus KV cache, in (0, 1]. Unset: the runtime's default "
            "(0.9). Mutually exclusive with `blocks`."
        ),
    )
    blocks: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Explicit number of KV cache blocks. Mutually exclusive with `gpuMemoryUtilization`.",
    )
    prefix_caching: bool = Field(
        default=False, description="Reuse the KV cache of identical full-block prompt prefixes."
    )

    cross_field_rules = (
        CrossFieldRule(
            cel="!(has(self.blocks) && has(self.gpuMemoryUtilization))",
            message="runtime.kvCache: set either blocks or gpuMemoryUtilization, not both",
            holds=lambda kv: kv.blocks is None or kv.gpu_memory_utilization is None,
        ),
    )


class SpeculativeSpec(ApiModel):
    """Speculative decoding: draft tokens proposed cheaply, verified by the model in one step."""

    method: Literal["none", "ngram"] = Field(
        default="none", description="Draft method: none, or ngram (prompt lookup)."
    )
    num_tokens: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="Draft tokens proposed per step. Required with a method, forbidden without one.",
    )

    cross_field_rules = (
        CrossFieldRule(
            cel="has(self.numTokens) == (self.method != 'none')",
            message="runtime.speculative.numTokens must be set when method is not none, and only then",
            holds=lambda speculative: (speculative.num_tokens is not None) == (speculative.method != "none"),
            field_path=".numTokens",
        ),
    )


class WarmupSpec(ApiModel):
    """Warm-up generations run before the pod reports ready."""

    prompts: int = Field(
        default=1, ge=1, le=64, description="Warm-up generations before the runtime reports ready."
    )


class StartupSpec(ApiModel):
    """How long model load and warm-up may take before the pod is restarted."""

    timeout_seconds: int = Field(
        default=600,
        ge=30,
        le=7200,
        description=(
            "Seconds from container start until the runtime must be ready (weights loaded, warm-up "
            "done); the startup probe's budget. Download time of hf:// and s3:// sources does not "
            "count: it happens in the init container."
        ),
    )
    period_seconds: int = Field(
        default=10, ge=1, le=60, description="Seconds between startup probe attempts."
    )


class EnvVar(ApiModel):
    """An environment variable of the runtime container."""

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$",
        description="Variable name.",
    )
    value: str = Field(default="", max_length=4096, description="Variable value.")


class RuntimeSpec(ApiModel):
    """The inference runtime container: image and engine settings."""

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        pattern=IMAGE_PATTERN,
        description=(
            "Runtime container image, [registry/]path[:tag][@digest]. Unset: the operator's default "
            "runtime image."
        ),
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="Image pull policy. Unset: Kubernetes' default for the tag."
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        max_length=8,
        description="Secrets for pulling the runtime image.",
    )
    max_batch_size: int = Field(
        default=64, ge=1, le=4096, description="Most sequences running in one engine step."
    )
    max_num_batched_tokens: int = Field(
        default=2048,
        ge=16,
        le=1048576,
        description="Token budget of one engine step (long prompts are prefilled in chunks of it).",
    )
    max_queue: int = Field(
        default=256,
        ge=1,
        le=100000,
        description="Bounded waiting queue; beyond it the runtime answers 503 with Retry-After.",
    )
    kv_cache: KVCacheSpec = Field(
        default_factory=KVCacheSpec,
        description="KV cache sizing and prefix caching.",
        json_schema_extra=section_default(KVCacheSpec),
    )
    speculative: SpeculativeSpec = Field(
        default_factory=SpeculativeSpec,
        description="Speculative decoding.",
        json_schema_extra=section_default(SpeculativeSpec),
    )
    tensor_parallel_size: int = Field(
        default=1,
        ge=1,
        le=16,
        description=(
            "Tensor-parallel ranks one model replica is sharded across (Megatron-style: attention "
            "heads, MLP and vocabulary split across ranks, one all-reduce per attention and per MLP "
            "block), one GPU each; resources.gpu.count must equal it (or be 0: CPU ranks). Above 1: "
            "safetensors checkpoints of "
            + ", ".join(TENSOR_PARALLEL_ARCHITECTURES)
            + " (runtime quantization shards too); the attention heads must divide by it and the KV "
            "heads divide by it or divide it (then replicated). The runtime refuses a size the model "
            "does not allow (and other families, GGUF and pre-quantized checkpoints above 1) before "
            "loading weights, naming the sizes it accepts; status reports it (ConfigurationRefused)."
        ),
    )
    warmup: WarmupSpec = Field(
        default_factory=WarmupSpec,
        description="Warm-up before readiness.",
        json_schema_extra=section_default(WarmupSpec),
    )
    startup: StartupSpec = Field(
        default_factory=StartupSpec,
        description="Startup probe budget for model load and warm-up.",
        json_schema_extra=section_default(StartupSpec),
    )
    extra_args: list[ExtraArgument] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Extra runtime flags appended to the rendered command line, each one item of the form "
            "--flag=value: "
            + "; ".join(f"{flag}=<{accepted}>" for flag, (_, accepted) in EXTRA_RUNTIME_FLAGS.items())
            + ". Every other runtime flag is rendered from the spec and cannot be set here."
        ),
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Extra environment variables of the runtime container. Reserved: "
            + ", ".join(RESERVED_ENV_NAMES)
            + f" and {RESERVED_ENV_PREFIX}* (set by the operator, or choosing which GPUs the "
            "container sees)."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description=(
            "ServiceAccount of the runtime pods (its token is never mounted). Unset: the namespace's "
            "default account. An account that does not exist shows as FailedCreate in status."
        ),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel=(
                "!has(self.env) || self.env.all(variable, !(variable.name in ["
                + ", ".join(f"'{name}'" for name in RESERVED_ENV_NAMES)
                + f"]) && !variable.name.startsWith('{RESERVED_ENV_PREFIX}'))"
            ),
            message=(
                "runtime.env may not set "
                + ", ".join(RESERVED_ENV_NAMES)
                + f" or {RESERVED_ENV_PREFIX}*: the operator sets them, or they choose which GPUs the "
                "container sees"
            ),
            holds=lambda runtime: not any(is_reserved_env_name(variable.name) for variable in runtime.env),
            field_path=".env",
        ),
        CrossFieldRule(
            cel=None,  # the API server enforces it through the list's map key `name`
            message="runtime.env: each variable name may appear once",
            holds=lambda runtime: len({variable.name for variable in runtime.env}) == len(runtime.env),
        ),
    )
