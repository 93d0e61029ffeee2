"""How deeply a JSON text nests, measured on its bytes before anything parses it.

Parsers and the code that walks parsed values recurse once per level: a body nested a few hundred
levels deep raised RecursionError in `json.loads` or in the KServe codec (a plain-text 500). Every
JSON body is therefore measured first and refused beyond `MAX_JSON_DEPTH` levels. The scan is
vectorised with numpy in fixed-size chunks (each a short C call), so measuring a 32 MiB body in a
worker thread never holds the interpreter long enough to stall the event loop.
"""

from __future__ import annotations

import numpy as np

#: Most levels of nested arrays/objects accepted in a request body: far beyond any tensor's rank or
#: any JSON schema a client sends, far below where recursion in a parser could fail.
MAX_JSON_DEPTH = 128

_CHUNK_BYTES = 1 << 20
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_STEP = np.zeros(256, dtype=np.int32)  # +1 for a byte that opens a level, -1 for one that closes it
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


class JsonTooDeep(ValueError):
    """The body nests deeper than the limit (HTTP 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the request body nests JSON arrays/objects more than {limit} levels deep; "
            f"accepted: at most {limit} levels"
        )
        self.limit = limit


def check_json_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Raises JsonTooDeep if `data`, read as JSON, nests deeper than `limit` (brackets inside strings
    do not count). Text that is not JSON is left for the parser to refuse."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return
    depth = 0
    quote_parity = 0  # quotes seen so far, mod 2: odd means the next byte lies inside a string
    escape_next = False  # the previous chunk ended on an escaping backslash
    for start in range(0, len(data), _CHUNK_BYTES):
        chunk = np.frombuffer(data, np.uint8, count=min(_CHUNK_BYTES, len(data) - start), offset=start)
        escaped = _escaped_positions(chunk, escape_next)
        escape_next = bool(escaped.size) and int(escaped[-1]) == len(chunk)
        quotes = chunk == _QUOTE
        quotes[escaped[escaped < len(chunk)]] = False
        inside = (np.cumsum(quotes, dtype=np.int32) + quote_parity) & 1
        quote_parity = int(inside[-1])
        steps = _STEP[chunk]
        steps[inside == 1] = 0  # brackets inside strings (quotes themselves are no brackets)
        levels = np.cumsum(steps, dtype=np.int32) + depth
        if int(levels.max()) > limit:
            raise JsonTooDeep(limit)
        depth = int(levels[-1])


def _escaped_positions(chunk: np.ndarray, first_is_escaped: bool) -> np.ndarray:
    """Positions (possibly len(chunk)) of the bytes a backslash escapes: in a run of backslashes the
    1st, 3rd, ... escape the byte after them."""
    backslashes = np.flatnonzero(chunk == _BACKSLASH)
    if first_is_escaped and backslashes.size and backslashes[0] == 0:
        backslashes = backslashes[1:]  # escaped itself by the previous chunk's last backslash
    if backslashes.size == 0:
        return np.array([0] if first_is_escaped else [], dtype=np.int64)
    run_starts = np.ones(backslashes.size, dtype=bool)
    run_starts[1:] = backslashes[1:] != backslashes[:-1] + 1
    run_start_positions = np.maximum.accumulate(np.where(run_starts, backslashes, 0))
    targets = backslashes[(backslashes - run_start_positions) % 2 == 0] + 1
    return np.concatenate(([0], targets)) if first_is_escaped else targets
