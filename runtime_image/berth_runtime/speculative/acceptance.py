"""The greedy acceptance rule of speculative decoding.

The target model scores the last real token plus K drafts in one pass, giving its own greedy choice
at each of the K+1 positions. Drafts are kept while they equal the target's choice; at the first
mismatch the target's token replaces the draft and the rest is dropped; if all K match, the target's
choice after the last draft comes as a bonus. So 1..K+1 tokens are emitted per pass, and they are
exactly the tokens plain greedy decoding would have produced.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def accept_greedy(draft_token_ids: Sequence[int], target_token_ids: Sequence[int]) -> list[int]:
    """Tokens to append: the matching draft prefix, then the target's token after it.

    ``target_token_ids[i]`` is the target's greedy token after the history plus ``draft[:i]``, so
    ``len(target_token_ids) == len(draft_token_ids) + 1``.
    """
    if len(target_token_ids) != len(draft_token_ids) + 1:
        raise ValueError(
            f"target_token_ids must hold one token more than draft_token_ids; got {len(target_token_ids)} "
            f"targets for {len(draft_token_ids)} drafts"
        )
    accepted: list[int] = []
    for draft, target in zip(draft_token_ids, target_token_ids, strict=False):
        if draft != target:
            break
        accepted.append(draft)
    accepted.append(target_token_ids[len(accepted)])
    return accepted


def accept_greedy_batch(
    draft_token_ids: torch.Tensor, target_token_ids: torch.Tensor, num_drafts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same rule for a padded batch, on the device (no host sync per sequence).

    ``draft_token_ids``: [batch, K] (entries past ``num_drafts[b]`` are ignored);
    ``target_token_ids``: [batch, K + 1]; ``num_drafts``: [batch] in 0..K. Returns
    ``(num_emitted [batch], emitted [batch, K + 1])``: row ``b`` emits ``emitted[b, :num_emitted[b]]``
    (accepted drafts, then the target's token); the rest of the row is -1.
    """
    if draft_token_ids.dim() != 2 or target_token_ids.dim() != 2:
        raise ValueError(
            f"draft_token_ids must be [batch, K] and target_token_ids [batch, K + 1]; got "
            f"{list(draft_token_ids.shape)} and {list(target_token_ids.shape)}"
        )
    batch, k = draft_token_ids.shape
    if tuple(target_token_ids.shape) != (batch, k + 1) or tuple(num_drafts.shape) != (batch,):
        raise ValueError(
            f"for drafts of shape {[batch, k]} target_token_ids must be {[batch, k + 1]} and num_drafts "
            f"{[batch]}; got {list(target_token_ids.shape)} and {list(num_drafts.shape)}"
        )
    positions = torch.arange(k, device=draft_token_ids.device)
    matches = (draft_token_ids == target_token_ids[:, :k]) & (positions[None, :] < num_drafts[:, None])
    # accepted drafts = length of the all-True prefix of `matches`
    num_accepted = matches.to(torch.int64).cumprod(dim=1).sum(dim=1)
    emitted_positions = torch.arange(k + 1, device=draft_token_ids.device)
    from_drafts = emitted_positions[None, :k] < num_accepted[:, None]
    emitted = torch.full_like(target_token_ids, -1)
    emitted[:, :k] = torch.where(from_drafts, draft_token_ids, emitted[:, :k])
    emitted.scatter_(1, num_accepted[:, None], target_token_ids.gather(1, num_accepted[:, None]))
    return num_accepted + 1, emitted
