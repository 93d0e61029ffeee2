"""Pure builders: a parsed spec in, Kubernetes manifests (plain dicts) out.

No I/O, no kopf, no Kubernetes client (import-linter enforces it), so every manifest the operator
writes can be checked in a table-driven unit test.
"""

from berth_operator.builders.children import build_children
from berth_operator.builders.context import BuildContext, Owner

__all__ = ["BuildContext", "Owner", "build_children"]
