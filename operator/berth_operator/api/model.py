"""`spec.model`: which weights to serve, where they come from, how they are loaded and cached.

`spec.model.cache` chooses who shares downloaded weights: each pod (an emptyDir, the default),
every pod on a node (a hostPath under the operator's BERTH_MODEL_CACHE_ROOT) or every pod that
mounts one ReadWriteMany claim. docs/model-cache.md says why the default is per pod.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field

from berth_operator.api.base import ApiModel, CrossFieldRule, cel_matches
from berth_operator.api.common import DNS_SUBDOMAIN_PATTERN, LocalObjectReference, QuantityAtMost

# The grammar of each scheme. An s3:// bucket is 3-63 characters here; S3's other naming rules,
# which a regular expression without look-around cannot say, are S3_BUCKET_RULES below.
SOURCE_PATTERN = (
    r"^(hf://[A-Za-z0-9][-A-Za-z0-9_.]*(/[A-Za-z0-9][-A-Za-z0-9_.]*)?"
    r"|s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9](/[^\s]*)?"
    r"|pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[^\s]*)?"
    r"|file:///[^\s]*)$"
)
# Amazon S3's general-purpose bucket naming rules beyond the characters and length (the runtime's
# fetcher applies the same ones: berth_runtime.fetch.source.s3_bucket_problem). Each pattern
# matches a source whose bucket breaks one rule.
S3_BUCKET_RULES = (
    r"^s3://[^/]*\.\.",  # two adjacent periods
    r"^s3://[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(/|$)",  # formatted as an IPv4 address
    r"^s3://(xn--|sthree-|amzn-s3-demo-)",  # reserved prefixes
    r"^s3://[^/]*(-s3alias|--ol-s3|\.mrap|--x-s3)(/|$)",  # reserved suffixes
)
# A `..` segment (also percent-encoded) after a pvc:// claim or in a file:// path: the runtime would
# read outside the claim's mount.
PARENT_SEGMENT_PATTERN = r"(?i)^(pvc|file)://.*(/|%2f)(\.|%2e)(\.|%2e)(/|%2f|$)"
MAX_CACHE_SIZE = "1Pi"
# What the runtime serves, as its registry and loaders say (the operator never imports the runtime;
# tests/unit/builders/test_builder_runtime_contract.py holds the two equal).
SERVED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "Phi3ForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
    "MixtralForCausalLM",
    "Qwen2MoeForCausalLM",
    "Qwen3MoeForCausalLM",
)
SERVED_GGUF_ARCHITECTURES = ("llama",)
PREQUANTIZED_FORMATS = (
    "compressed-tensors float-quantized (FP8)",
    "fp8 with weight_block_size",
    "awq (4-bit GEMM)",
    "gptq (4-bit)",
    "compressed-tensors pack-quantized (4-bit int, group or channel)",
)

Dtype = Literal["bfloat16", "float16", "float32"]
Quantization = Literal["none", "int8", "fp8"]
CacheMode = Literal["Pod", "Node", "PVC"]


class ModelCacheSpec(ApiModel):
    """Where hf:// and s3:// weights are downloaded to, and which pods share them."""

    mode: CacheMode = Field(
        default="Pod",
        description=(
            "Pod: every pod downloads into its own emptyDir (no sharing; works under the restricted "
            "Pod Security Standard). Node: the pods on one node share a cache in a hostPath folder "
            "under the operator's model cache root (BERTH_MODEL_CACHE_ROOT, chart value "
            "operator.modelCache.root), so the weights are downloaded once per node and reused by "
            "later pods and restarts; the namespace must admit hostPath volumes and a root-run init "
            "container with only CHOWN, and a spec asking for Node where the operator has no root is "
            "refused. PVC: the pods share a cache on the ReadWriteMany PersistentVolumeClaim "
            "`claimName`. Shared entries are verified by SHA-256 before each reuse and evicted "
            "least recently used first; see docs/model-cache.md."
        ),
    )
    claim_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description=(
            "PVC mode only, and required there: a ReadWriteMany PersistentVolumeClaim in this "
            "namespace that holds the shared cache (mounted read-write by the download container, "
            "read-only by the runtime)."
        ),
    )
    budget: Annotated[str, QuantityAtMost(MAX_CACHE_SIZE)] | None = Field(
        default=None,
        description=(
            "PVC mode only: most bytes the cache may fill on the claim; before a download, least "
            "recently used entries that no pod is filling, verifying or serving from are evicted to "
            "make room. Unset: "
            "nothing is evicted and the claim's capacity is the limit. (Node mode uses the operator's "
            "per-node budget, BERTH_MODEL_CACHE_BUDGET.)"
        ),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel="(self.mode == 'PVC') == has(self.claimName)",
            message="model.cache.claimName is required with mode PVC and only valid with it",
            holds=lambda cache: (cache.mode == "PVC") == (cache.claim_name is not None),
            field_path=".claimName",
        ),
        CrossFieldRule(
            cel="!has(self.budget) || self.mode == 'PVC'",
            message=(
                "model.cache.budget is only valid with mode PVC (Node mode uses the operator's "
                "BERTH_MODEL_CACHE_BUDGET; Pod mode uses model.cacheSizeLimit)"
            ),
            holds=lambda cache: cache.budget is None or cache.mode == "PVC",
            field_path=".budget",
        ),
    )


class ModelSpec(ApiModel):
    """The model to serve and where its weights come from."""

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.:/]*$",
        description=(
            "The name clients ask for: the OpenAI `model` field and the KServe v2 model name "
            "(runtime flag --served-model-name)."
        ),
    )
    source: str = Field(
        max_length=1024,
        pattern=SOURCE_PATTERN,
        description=(
            "Where the weights come from, in Hugging Face layout (config.json, *.safetensors, "
            "tokenizer.json). One of: hf://org/name (Hugging Face Hub; pin the version with "
            "`revision`), s3://bucket/prefix, pvc://claim/path (a PersistentVolumeClaim in this "
            "namespace, mounted read-only; nothing is copied), file:///path (a directory already "
            "inside the runtime image; nothing is copied). hf:// and s3:// are downloaded by an "
            "init container into a pod-local cache before the server starts. Served architectures "
            "(config.json `architectures`): " + ", ".join(SERVED_ARCHITECTURES) + "; a single GGUF "
            "file (file:// or pvc:// to it) of general.architecture "
            + ", ".join(SERVED_GGUF_ARCHITECTURES)
            + "; pre-quantized checkpoints (config.json `quantization_config`), served as stored: "
            + ", ".join(PREQUANTIZED_FORMATS)
            + ". Anything else is refused by the runtime before it "
            "loads weights and reported in status (reason ConfigurationRefused) with the accepted list."
        ),
    )
    revision: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_./]*$",
        description=(
            "Hugging Face revision (commit, branch or tag) of an hf:// source. Changing it is a "
            "model swap: a new revision of the pods is rolled out. Only valid with hf:// sources."
        ),
    )
    dtype: Dtype = Field(default="bfloat16", description="Weight and activation dtype.")
    quantization: Quantization = Field(
        default="none",
        description=(
            "Weight-only quantization applied at load time: none, int8 or fp8. A pre-quantized "
            "checkpoint is served as stored and needs none; int8 or fp8 on one is refused by the "
            "runtime and reported in status (ConfigurationRefused)."
        ),
    )
    max_model_len: int | None = Field(
        default=None,
        ge=1,
        le=1048576,
        description=(
            "Context limit in tokens (prompt plus output). Unset: the model's max_position_embeddings."
        ),
    )
    credentials_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description=(
            "Secret whose keys become environment variables of the download (init) container only: "
            "HF_TOKEN for hf://; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, "
            "AWS_REGION for s3://. Its values are never copied into the pod spec, status or logs. "
            "Only valid with hf:// and s3:// sources."
        ),
    )
    cache_size_limit: Annotated[str, QuantityAtMost(MAX_CACHE_SIZE)] | None = Field(
        default=None,
        description=(
            "Size limit of the pod-local model cache (an emptyDir) that hf:// and s3:// sources are "
            "downloaded into with cache mode Pod (only valid with it). Unset: no limit beyond the "
            "node's ephemeral storage."
        ),
    )
    cache: ModelCacheSpec | None = Field(
        default=None,
        description=(
            "Which pods share the downloaded weights of an hf:// or s3:// source: each pod (Pod), the "
            "pods of a node (Node) or of a ReadWriteMany claim (PVC). Unset: mode Pod."
        ),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel=" && ".join(f"!{cel_matches('self.source', rule)}" for rule in S3_BUCKET_RULES),
            message=(
                "model.source: an s3:// bucket name follows S3's rules: 3-63 lowercase letters, digits, "
                "'.' and '-', beginning and ending with a letter or digit, no '..', not an IP address, "
                "no prefix xn--, sthree- or amzn-s3-demo-, no suffix -s3alias, --ol-s3, .mrap or --x-s3"
            ),
            holds=lambda model: not any(re.search(rule, model.source) for rule in S3_BUCKET_RULES),
            field_path=".source",
        ),
        CrossFieldRule(
            cel=f"!{cel_matches('self.source', PARENT_SEGMENT_PATTERN)}",
            message="model.source: a pvc:// or file:// path may not contain '..' segments",
            holds=lambda model: re.search(PARENT_SEGMENT_PATTERN, model.source) is None,
            field_path=".source",
        ),
        CrossFieldRule(
            cel="!has(self.revision) || self.source.startsWith('hf://')",
            message="model.revision is only valid with an hf:// source; for other sources change the source",
            holds=lambda model: model.revision is None or model.source.startswith("hf://"),
            field_path=".revision",
        ),
        CrossFieldRule(
            cel=(
                "!has(self.credentialsSecretRef) || self.source.startsWith('hf://') "
                "|| self.source.startsWith('s3://')"
            ),
            message="model.credentialsSecretRef is only valid with an hf:// or s3:// source",
            holds=lambda model: (
                model.credentials_secret_ref is None or model.source.startswith(("hf://", "s3://"))
            ),
            field_path=".credentialsSecretRef",
        ),
        CrossFieldRule(
            cel=(
                "!has(self.cache) || self.cache.mode == 'Pod' || self.source.startsWith('hf://') "
                "|| self.source.startsWith('s3://')"
            ),
            message=(
                "model.cache.mode Node or PVC is only valid with an hf:// or s3:// source (pvc:// and "
                "file:// sources are read in place, nothing is downloaded)"
            ),
            holds=lambda model: model.cache_mode == "Pod" or model.is_downloaded,
            field_path=".cache.mode",
        ),
        CrossFieldRule(
            cel="!has(self.cacheSizeLimit) || !has(self.cache) || self.cache.mode == 'Pod'",
            message=(
                "model.cacheSizeLimit limits the pod-local cache and is only valid with cache mode Pod; "
                "a shared cache keeps to its budget"
            ),
            holds=lambda model: model.cache_size_limit is None or model.cache_mode == "Pod",
            field_path=".cacheSizeLimit",
        ),
    )

    @property
    def scheme(self) -> str:
        """The source's scheme without `://`: hf, s3, pvc or file."""
        return self.source.split("://", 1)[0]

    @property
    def is_downloaded(self) -> bool:
        """Whether an init container must fetch the weights (hf:// and s3://)."""
        return self.scheme in ("hf", "s3")

    @property
    def cache_mode(self) -> CacheMode:
        """Pod, Node or PVC; Pod when `cache` is unset."""
        return "Pod" if self.cache is None else self.cache.mode
