"""Prompt-lookup proposals: longest suffix first, latest occurrence wins, continuation capped."""

from __future__ import annotations

import numpy as np
import pytest

from berth_runtime.speculative.ngram import NgramProposer, propose_ngram


def test_copies_what_followed_the_earlier_occurrence_of_the_suffix() -> None:
    history = [5, 6, 7, 8, 9, 1, 2, 5, 6, 7]
    assert propose_ngram(history, 3) == [8, 9, 1]


def test_latest_occurrence_wins() -> None:
    history = [1, 2, 3, 1, 2, 4, 1, 2]
    assert propose_ngram(history, 2, max_ngram=2) == [4, 1]


def test_longer_patterns_are_preferred_over_shorter_ones() -> None:
    # the 1-gram [3] last occurred before 9; the 2-gram [2, 3] only before 7
    history = [2, 3, 7, 7, 3, 9, 2, 3]
    assert propose_ngram(history, 1, max_ngram=2) == [7]
    assert propose_ngram(history, 1, max_ngram=1) == [9]


def test_continuation_stops_at_the_end_of_the_history() -> None:
    assert propose_ngram([4, 4, 4], 5) == [4]  # suffix [4, 4] at 0 is followed only by one token
    assert propose_ngram([1, 2, 1], 5, max_ngram=1) == [2, 1]


def test_no_match_or_no_room_proposes_nothing() -> None:
    assert propose_ngram([1, 2, 3, 4], 3) == []
    assert propose_ngram([], 3) == []
    assert propose_ngram([7], 3) == []
    assert propose_ngram([1, 2, 1, 2], 0) == []


def test_min_ngram_excludes_short_matches() -> None:
    assert propose_ngram([3, 8, 9, 3], 2, max_ngram=3, min_ngram=2) == []
    assert propose_ngram([3, 8, 9, 3], 2, max_ngram=3, min_ngram=1) == [8, 9]


def test_numpy_history_is_accepted() -> None:
    assert propose_ngram(np.array([9, 1, 9], dtype=np.int32), 1) == [1]


def test_proposer_validates_its_settings_and_honours_a_limit() -> None:
    with pytest.raises(ValueError, match="num_speculative_tokens must be >= 1 for the ngram method; got 0"):
        NgramProposer(num_speculative_tokens=0)
    with pytest.raises(ValueError, match="got min_ngram 3, max_ngram 2"):
        NgramProposer(num_speculative_tokens=2, max_ngram=2, min_ngram=3)
    proposer = NgramProposer(num_speculative_tokens=4)
    history = [1, 2, 3, 4, 5, 6, 1, 2]
    assert proposer.propose(history) == [3, 4, 5, 6]
    assert proposer.propose(history, limit=2) == [3, 4]
    assert proposer.propose(history, limit=0) == []
