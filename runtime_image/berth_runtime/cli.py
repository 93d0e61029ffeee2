"""The runtime's command line: `serve` (the inference server) and `fetch` (the model init step).

The operator renders these flags into every runtime pod, so the parser is one side of a contract
whose other side is the operator's builder; the flag table in runtime_image/README.md is that
contract. Parsing only builds a `RuntimeConfig` (which validates); nothing heavy is imported here,
so `fetch` never loads torch and `--help` is instant.

Abbreviated flags are refused on every parser: argparse would otherwise read a user's extra
`--por=9000` as `--port`, and the operator, which only refuses exact duplicates of the flags it
renders, could not see that a managed flag had been overridden. `option_strings` lists the exact
flags each command accepts, so the operator's contract test can compare against the parser itself.

Flags follow vLLM's names, so a vLLM command line reads the same here. A renamed flag keeps its
old name as a second option string of the same action (`--max-batch-size` for `--max-num-seqs`):
both parse, neither may be abbreviated, and `option_strings` lists both.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from berth_runtime.config import (
    DEVICES,
    DTYPES,
    LOG_LEVELS,
    QUANTIZATIONS,
    SPECULATIVE_METHODS,
    RuntimeConfig,
    check_against_model,
)
from berth_runtime.fetch.source import DEFAULT_PVC_MOUNT_ROOT

PROGRAM = "python -m berth_runtime"


def build_parser() -> argparse.ArgumentParser:
    """The runtime's parser; no parser in it accepts an abbreviation of a flag (`--por` for `--port`)."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="berth's LLM inference runtime", allow_abbrev=False
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,fetch}")
    _add_serve_arguments(
        commands.add_parser(
            "serve", help="serve a model over KServe v2 and the OpenAI API", allow_abbrev=False
        )
    )
    _add_fetch_arguments(
        commands.add_parser(
            "fetch", help="download a model into a directory (the pod's init step)", allow_abbrev=False
        )
    )
    return parser


def option_strings(command: str) -> frozenset[str]:
    """Every long option `command` (serve or fetch) accepts, without --help, as read from the parser."""
    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    if command not in commands.choices:
        raise ValueError(
            f"unknown command {command!r}; the runtime's commands are {sorted(commands.choices)}"
        )
    return frozenset(
        option
        for action in commands.choices[command]._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    )


def _add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    add = serve.add_argument
    add("--model", required=True, help="Hugging Face layout model directory, or a GGUF file")
    add("--served-model-name", help="name clients ask for (default: basename of --model)")
    add("--host", default="0.0.0.0", help="bind address (default: %(default)s)")
    add("--port", type=int, default=8000, help="HTTP port for KServe v2, OpenAI, /metrics, health")
    add("--metrics-port", type=int, default=0, help="if non-zero, /metrics is also served on this port")
    add("--dtype", choices=DTYPES, default="bfloat16", help="weight and activation dtype")
    add("--device", choices=DEVICES, help="default: cuda if available, else cpu")
    add("--quantization", choices=QUANTIZATIONS, default="none", help="weight-only quantization")
    add("--max-model-len", type=int, help="context limit, prompt + output (default: the model's)")
    add(
        "--max-num-seqs",
        "--max-batch-size",  # the flag's name before it took vLLM's; still accepted
        type=int,
        default=64,
        help="most running sequences per step (--max-batch-size: the same, its former name)",
    )
    add("--max-num-batched-tokens", type=int, default=2048, help="per-step token budget (chunked prefill)")
    add("--block-size", type=int, default=16, help="KV cache block size in tokens")
    memory = serve.add_mutually_exclusive_group()
    memory.add_argument("--kv-cache-blocks", type=int, default=0, help="explicit KV block count (0: derive)")
    memory.add_argument(
        "--gpu-memory-utilization", type=float, help="share of device memory for weights + KV cache (0, 1]"
    )
    add("--enable-prefix-caching", action="store_true", help="reuse the KV cache of shared prompt prefixes")
    add("--speculative-method", choices=SPECULATIVE_METHODS, default="none")
    add("--num-speculative-tokens", type=int, default=0, help="draft tokens per step (with a method)")
    add("--tensor-parallel-size", type=int, default=1)
    add("--max-queue", type=int, default=256, help="bounded waiting queue; beyond it 503 + Retry-After")
    add(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds in-flight requests may finish after SIGTERM",
    )
    add("--warmup-prompts", type=int, default=1, help="warm-up generations before ready (>= 1)")
    add("--api-key-file", help="if set, requests need 'Authorization: Bearer <key>'")
    add("--seed", type=int, default=0, help="default sampling seed base")
    add("--log-level", choices=LOG_LEVELS, default="info", type=str.lower)


def _add_fetch_arguments(fetch: argparse.ArgumentParser) -> None:
    fetch.add_argument(
        "source", help="hf://org/name[@rev], s3://bucket/prefix, file:///path, pvc://claim/path"
    )
    fetch.add_argument("destination", type=Path, help="directory to fill (created if missing)")
    fetch.add_argument(
        "--revision", help="branch, tag or commit (hf://); a label recorded with other sources"
    )
    fetch.add_argument(
        "--pvc-mount-root",
        type=Path,
        default=DEFAULT_PVC_MOUNT_ROOT,
        help="where pvc:// claims are mounted (default: %(default)s)",
    )
    fetch.add_argument(
        "--cache-root",
        type=Path,
        help="shared model cache (a node's hostPath, a ReadWriteMany claim): fill or reuse an entry "
        "there and make DESTINATION a link to it (default: none, fetch into DESTINATION itself)",
    )
    fetch.add_argument(
        "--cache-budget-bytes",
        type=int,
        help="with --cache-root: most bytes the cache may hold; least recently used entries not in "
        "use are evicted to make room (default: no limit)",
    )
    fetch.add_argument("--log-level", choices=LOG_LEVELS, default="info", type=str.lower)


def config_from_args(arguments: argparse.Namespace) -> RuntimeConfig:
    """The `serve` flags as a validated RuntimeConfig (ValueError names the bad field)."""
    return RuntimeConfig(
        model=arguments.model,
        served_model_name=arguments.served_model_name,
        host=arguments.host,
        port=arguments.port,
        metrics_port=arguments.metrics_port,
        dtype=arguments.dtype,
        device=arguments.device,
        quantization=arguments.quantization,
        max_model_len=arguments.max_model_len,
        max_num_seqs=arguments.max_num_seqs,
        max_num_batched_tokens=arguments.max_num_batched_tokens,
        block_size=arguments.block_size,
        kv_cache_blocks=arguments.kv_cache_blocks,
        gpu_memory_utilization=arguments.gpu_memory_utilization,
        enable_prefix_caching=arguments.enable_prefix_caching,
        speculative_method=arguments.speculative_method,
        num_speculative_tokens=arguments.num_speculative_tokens,
        tensor_parallel_size=arguments.tensor_parallel_size,
        max_queue=arguments.max_queue,
        drain_timeout=arguments.drain_timeout,
        warmup_prompts=arguments.warmup_prompts,
        api_key_file=arguments.api_key_file,
        seed=arguments.seed,
        log_level=arguments.log_level,
    )


def _configure_logging(level: str) -> None:
    numeric = logging.DEBUG if level == "trace" else getattr(logging, level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    )
    handler.addFilter(_RequestIdFilter())
    logging.basicConfig(level=numeric, handlers=[handler])


class _RequestIdFilter(logging.Filter):
    """Names the HTTP request a log line was written for ("-" outside one), read from the server's
    context variable; without importing the server, so `fetch` stays light."""

    def filter(self, record: logging.LogRecord) -> bool:
        server_context = sys.modules.get("berth_runtime.server.request_context")
        record.request_id = server_context.current_request_id.get() if server_context else "-"
        return True


def _run_fetch(arguments: argparse.Namespace) -> int:
    from berth_runtime.cold_start import record_fetch_seconds
    from berth_runtime.fetch import FetchError, fetch, fetch_through_cache, parse_source

    _configure_logging(arguments.log_level)
    budget = arguments.cache_budget_bytes
    if budget is not None and (arguments.cache_root is None or budget < 1):
        print(
            f"{PROGRAM} fetch: error: --cache-budget-bytes {budget}: expected a positive number of bytes "
            "together with --cache-root",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    try:
        source = parse_source(arguments.source, arguments.revision, arguments.pvc_mount_root)
        if arguments.cache_root is None:
            outcome = fetch(source, arguments.destination)
        else:
            outcome = fetch_through_cache(
                source, arguments.destination, arguments.cache_root, budget_bytes=budget
            )
    except FetchError as error:
        print(f"{PROGRAM} fetch: error: {error}", file=sys.stderr)
        return 1
    record_fetch_seconds(arguments.destination, time.monotonic() - started)
    state = "already complete" if outcome.skipped else f"complete at {outcome.resolved_revision}"
    print(f"{source}: {state} in {arguments.destination}", file=sys.stderr)
    return 0


def _check_against_model(config: RuntimeConfig) -> None:
    """The flag checks that need --model's config.json or GGUF metadata but not its weights (the
    context limit, whether the model splits over --tensor-parallel-size): a ValueError is a usage
    error (exit 2) known before any weight loads. A config that cannot be read is skipped (loading
    then reports why, with the file and key); a model this runtime does not serve is raised."""
    from berth_runtime.models.checkpoint import gguf_file_for
    from berth_runtime.models.gguf_reader import GGUFModelFile
    from berth_runtime.models.model_config import (
        ModelDirectoryError,
        UnsupportedModelError,
        load_model_config,
    )
    from berth_runtime.models.registry import check_tensor_parallel_support

    try:
        gguf_path = gguf_file_for(Path(config.model))
        model_config = (
            load_model_config(Path(config.model)) if gguf_path is None else GGUFModelFile(gguf_path).config
        )
    except UnsupportedModelError:
        raise
    except (ModelDirectoryError, OSError):
        return
    check_against_model(config, model_config.max_context_len)
    checkpoint_format = "huggingface" if gguf_path is None else "gguf"
    check_tensor_parallel_support(model_config, checkpoint_format, config.tensor_parallel_size)


def _run_serve(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> int:
    try:
        config = config_from_args(arguments)
        _check_against_model(config)
    except ValueError as error:
        parser.exit(2, f"{PROGRAM} serve: error: {error}\n")
    _configure_logging(config.log_level)
    from berth_runtime.server.runner import serve

    return serve(config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.command == "fetch":
        return _run_fetch(arguments)
    return _run_serve(parser, arguments)
