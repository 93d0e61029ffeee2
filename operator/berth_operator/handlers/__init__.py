"""Kopf glue: handlers parse once, call the pure builders and status derivation, act through `kube`.

`reconcile`, `status_sync` and `checks` are plain async functions (tested in-process against an
InMemoryKubeApi); `registration` binds them to Kopf with explicit handler ids.
"""
