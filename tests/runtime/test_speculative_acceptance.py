"""Greedy acceptance: keep the drafts that match the target's choices, then one target token; the
batched device version agrees with the scalar rule row by row."""

from __future__ import annotations

import pytest
import torch

from berth_runtime.speculative.acceptance import accept_greedy, accept_greedy_batch


@pytest.mark.parametrize(
    ("drafts", "targets", "emitted"),
    [
        ([5, 6, 7], [5, 6, 7, 8], [5, 6, 7, 8]),  # all accepted plus the bonus token
        ([5, 6, 7], [5, 9, 7, 8], [5, 9]),  # first mismatch: the target's token replaces the draft
        ([5, 6, 7], [4, 6, 7, 8], [4]),  # nothing accepted: plain decoding's one token
        ([], [3], [3]),  # no drafts
    ],
)
def test_accept_greedy(drafts: list[int], targets: list[int], emitted: list[int]) -> None:
    assert accept_greedy(drafts, targets) == emitted


def test_target_count_must_be_drafts_plus_one() -> None:
    with pytest.raises(ValueError, match="got 2 targets for 2 drafts"):
        accept_greedy([1, 2], [1, 2])


def test_batched_rule_equals_the_scalar_rule() -> None:
    generator = torch.Generator().manual_seed(0)
    batch, k = 64, 4
    targets = torch.randint(0, 3, (batch, k + 1), generator=generator)
    # drafts agree with the targets often, so every acceptance length occurs
    drafts = torch.where(torch.rand(batch, k, generator=generator) < 0.7, targets[:, :k], 1 - targets[:, :k])
    num_drafts = torch.randint(0, k + 1, (batch,), generator=generator)
    num_emitted, emitted = accept_greedy_batch(drafts, targets, num_drafts)
    lengths_seen = set()
    for row in range(batch):
        count = int(num_drafts[row])
        expected = accept_greedy(drafts[row, :count].tolist(), targets[row, : count + 1].tolist())
        assert emitted[row, : int(num_emitted[row])].tolist() == expected
        assert (emitted[row, int(num_emitted[row]) :] == -1).all()
        lengths_seen.add(len(expected))
    assert lengths_seen == {1, 2, 3, 4, 5}


def test_batched_rule_checks_shapes() -> None:
    with pytest.raises(ValueError, match=r"target_token_ids must be \[2, 4\]"):
        accept_greedy_batch(
            torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2)
        )
