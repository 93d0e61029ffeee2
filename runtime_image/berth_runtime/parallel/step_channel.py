"""Rank 0 broadcasts each step's `StepPlan` to the workers: one fixed-size header (what follows and
its shapes), then every array packed into one int64 tensor, both over the step (gloo) group; a
header of kind STOP ends the workers' loop. Two small collectives per step whatever the batch, and
the workers copy the arrays to their device exactly as rank 0 does. (One broadcast of a fixed-size
buffer would need room for the worst case, max_num_seqs block tables of max_model_len / block_size
entries: megabytes every step at long contexts, against a few kilobytes here.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import numpy as np
import torch

from berth_runtime.engine.step_plan import StepPlan
from berth_runtime.parallel.group import ShardGroup

STEP = 1
STOP = 2
_HEADER = 5  # kind, rows, tokens, block-table columns, logits rows


class StepChannel:
    def __init__(self, group: ShardGroup, abandon: Callable[[BaseException], NoReturn] | None = None) -> None:
        self.group = group
        self._abandon = abandon

    def abandon(self, error: BaseException) -> NoReturn:
        """Rank 0: a step it sent failed here; `abandon` (the launcher's) ends the server."""
        if self._abandon is None:
            raise error
        self._abandon(error)

    def send(self, plan: StepPlan) -> None:
        """Rank 0: the step every rank runs next."""
        rows, columns = plan.block_tables.shape
        header = np.array(
            [STEP, rows, plan.per_token.shape[1], columns, len(plan.logits_rows)], dtype=np.int64
        )
        self.group.broadcast_host(torch.from_numpy(header))
        arrays = [plan.query_lens, plan.starts, plan.block_tables.ravel(), plan.per_token.ravel()]
        payload = np.concatenate([*arrays, plan.logits_rows]).astype(np.int64, copy=False)
        self.group.broadcast_host(torch.from_numpy(payload))

    def send_stop(self) -> None:
        """Rank 0: the workers leave their loop and exit."""
        self.group.broadcast_host(torch.tensor([STOP, 0, 0, 0, 0], dtype=torch.int64))

    def receive(self) -> StepPlan | None:
        """A worker: the next step, or None when rank 0 says stop."""
        header = torch.empty(_HEADER, dtype=torch.int64)
        self.group.broadcast_host(header)
        kind, rows, tokens, columns, logits = (int(value) for value in header)
        if kind == STOP:
            return None
        payload = torch.empty(2 * rows + rows * columns + 3 * tokens + logits, dtype=torch.int64)
        self.group.broadcast_host(payload)
        array = payload.numpy()
        sizes = np.cumsum([rows, rows, rows * columns, 3 * tokens])
        query_lens, starts, tables, per_token, logits_rows = np.split(array, sizes)
        return StepPlan(
            query_lens=query_lens,
            starts=starts,
            block_tables=tables.reshape(rows, columns),
            per_token=per_token.reshape(3, tokens),
            logits_rows=logits_rows,
        )
