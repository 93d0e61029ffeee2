"""`python -m berth_runtime fetch`: put a model into the pod's model cache before the server starts.

Runs as the init container the operator adds to every runtime pod. Sources: the Hugging Face Hub
(hf://), S3 (s3://), and local or volume paths (file://, pvc://); see `source` for the forms and
`fetcher` for the skip / resume / verify / mark procedure, and `node_cache` for the cache shared by
the pods of a node (or of a ReadWriteMany claim) that `--cache-root` turns on.
"""

from berth_runtime.fetch.errors import FetchError
from berth_runtime.fetch.fetcher import FetchOutcome, fetch
from berth_runtime.fetch.node_cache import fetch_through_cache
from berth_runtime.fetch.source import parse_source

__all__ = ["FetchError", "FetchOutcome", "fetch", "fetch_through_cache", "parse_source"]
