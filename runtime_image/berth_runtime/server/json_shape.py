"""How deeply a JSON text nests and how many values it holds, measured on its bytes before any
parser sees it.

Parsers and the code that walks parsed values recurse once per level: a body nested a few hundred
levels deep raised RecursionError in `json.loads` or in the KServe codec (a plain-text 500). And
parsing then validating a JSON value costs the event loop about 0.6 us per array element on the
2-core test machine, in C calls that never release the GIL: 1M token ids stalled health probes for
0.65 s, 10M for 5.7 s. Every JSON body is therefore measured first and refused beyond
`MAX_JSON_DEPTH` levels or `MAX_JSON_VALUES` values. The scan is vectorised with numpy in
fixed-size chunks (each a short C call), so measuring a 32 MiB body in a worker thread never holds
the interpreter long enough to stall the event loop.
"""

from __future__ import annotations

import numpy as np

#: Most levels of nested arrays/objects accepted in a request body: far beyond any tensor's rank or
#: any JSON schema a client sends, far below where recursion in a parser could fail.
MAX_JSON_DEPTH = 128
#: Most values (array elements and object members) in a request body: a prompt of 128Ki token ids
#: fits, and parsing and validating this many keeps the event loop busy well under 100 ms.
MAX_JSON_VALUES = 128 * 1024

_CHUNK_BYTES = 1 << 20
_QUOTE, _BACKSLASH, _COMMA = ord('"'), ord("\\"), ord(",")
_STEP = np.zeros(256, dtype=np.int32)  # +1 for a byte that opens a level, -1 for one that closes it
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


class JsonTooLarge(ValueError):
    """The body nests deeper or holds more values than accepted (HTTP 400); the message says which."""


def check_json_shape(data: bytes, max_depth: int = MAX_JSON_DEPTH, max_values: int = MAX_JSON_VALUES) -> None:
    """Raises JsonTooLarge if `data`, read as JSON, nests deeper than `max_depth` or holds more than
    `max_values` values (brackets and commas inside strings do not count). Text that is not JSON is
    left for the parser to refuse."""
    may_be_deep = data.count(b"[") + data.count(b"{") > max_depth
    if not may_be_deep and data.count(b",") < max_values:
        return
    depth = 0
    separators = 0  # commas outside strings: a body holds more values than that
    quote_parity = 0  # quotes seen so far, mod 2: odd means the next byte lies inside a string
    escape_next = False  # the previous chunk ended on an escaping backslash
    for start in range(0, len(data), _CHUNK_BYTES):
        chunk = np.frombuffer(data, np.uint8, count=min(_CHUNK_BYTES, len(data) - start), offset=start)
        escaped = _escaped_positions(chunk, escape_next)
        escape_next = bool(escaped.size) and int(escaped[-1]) == len(chunk)
        quotes = chunk == _QUOTE
        quotes[escaped[escaped < len(chunk)]] = False
        outside = ((np.cumsum(quotes, dtype=np.int32) + quote_parity) & 1) == 0
        quote_parity = 0 if bool(outside[-1]) else 1
        separators += int(np.count_nonzero((chunk == _COMMA) & outside))
        if separators >= max_values:
            raise JsonTooLarge(
                f"the request body holds more than {max_values} JSON values (array elements and "
                f"object members); accepted: at most {max_values}"
            )
        steps = _STEP[chunk] * outside  # brackets inside strings do not count
        levels = np.cumsum(steps, dtype=np.int32) + depth
        if int(levels.max()) > max_depth:
            raise JsonTooLarge(
                f"the request body nests JSON arrays/objects more than {max_depth} levels deep; "
                f"accepted: at most {max_depth} levels"
            )
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
