"""The one error type the model fetcher raises.

`python -m berth_runtime fetch` runs as an init container: its only interface is the exit status and
one line on stderr. Every failure therefore becomes a `FetchError` whose message says what was
asked for, what went wrong and what the operator of the cluster can do about it.
"""


class FetchError(RuntimeError):
    """A model could not be fetched; the message is meant for the person reading the pod's logs."""
