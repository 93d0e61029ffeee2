"""Renders the runtime's command lines from the spec: the operator/runtime CLI contract.

The flags are berth_runtime's public interface (runtime_image/README.md keeps the table); a builder
test asserts the rendered lines and a runtime test parses them, so the two sides cannot drift.
"""

from __future__ import annotations

from berth_operator.api import InferenceDeploymentSpec

MODEL_CACHE_DIR = "/models"
DOWNLOADED_MODEL_PATH = f"{MODEL_CACHE_DIR}/model"
PVC_MOUNT_ROOT = "/mnt/pvc"
API_KEY_DIR = "/etc/berth/api-key"
RUNTIME_COMMAND = ["python", "-m", "berth_runtime"]


def pvc_claim_and_path(source: str) -> tuple[str, str]:
    """`pvc://claim/some/path` -> ("claim", "some/path")."""
    claim, _, path = source.removeprefix("pvc://").partition("/")
    return claim, path.strip("/")


def model_path(spec: InferenceDeploymentSpec) -> str:
    """Where the runtime container finds the weights."""
    source = spec.model.source
    if spec.model.is_downloaded:
        return DOWNLOADED_MODEL_PATH
    if source.startswith("pvc://"):
        claim, path = pvc_claim_and_path(source)
        return f"{PVC_MOUNT_ROOT}/{claim}/{path}".rstrip("/")
    return source.removeprefix("file://")


def fetch_command(spec: InferenceDeploymentSpec) -> list[str]:
    """The init container's command: download an hf:// or s3:// source into the model cache."""
    command = [*RUNTIME_COMMAND, "fetch", spec.model.source, DOWNLOADED_MODEL_PATH]
    if spec.model.revision is not None:
        command += ["--revision", spec.model.revision]
    return command


def serve_command(spec: InferenceDeploymentSpec) -> list[str]:
    """The runtime container's command: `python -m berth_runtime serve` with every flag the spec sets."""
    model, runtime, serving = spec.model, spec.runtime, spec.serving
    args = [
        *RUNTIME_COMMAND,
        "serve",
        "--model", model_path(spec),
        "--served-model-name", model.name,
        "--host", "0.0.0.0",
        "--port", str(serving.port),
        "--metrics-port", str(serving.metrics_port),
        "--device", "cuda" if spec.resources.gpu.count > 0 else "cpu",
        "--dtype", model.dtype,
        "--quantization", model.quantization,
    ]  # fmt: skip
    if model.max_model_len is not None:
        args += ["--max-model-len", str(model.max_model_len)]
    args += [
        "--max-num-seqs", str(runtime.max_batch_size),
        "--max-num-batched-tokens", str(runtime.max_num_batched_tokens),
        "--max-queue", str(runtime.max_queue),
        "--block-size", str(runtime.kv_cache.block_size),
    ]  # fmt: skip
    if runtime.kv_cache.blocks is not None:
        args += ["--kv-cache-blocks", str(runtime.kv_cache.blocks)]
    if runtime.kv_cache.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", repr(runtime.kv_cache.gpu_memory_utilization)]
    if runtime.kv_cache.prefix_caching:
        args.append("--enable-prefix-caching")
    args += ["--speculative-method", runtime.speculative.method]
    if runtime.speculative.num_tokens is not None:
        args += ["--num-speculative-tokens", str(runtime.speculative.num_tokens)]
    args += [
        "--tensor-parallel-size", str(runtime.tensor_parallel_size),
        "--drain-timeout", str(serving.drain_timeout_seconds),
        "--warmup-prompts", str(runtime.warmup.prompts),
    ]  # fmt: skip
    if serving.api_key_secret_ref is not None:
        args += ["--api-key-file", f"{API_KEY_DIR}/{serving.api_key_secret_ref.key}"]
    return args + list(runtime.extra_args)
