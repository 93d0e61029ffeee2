"""The entry point: bad settings stop it with a message; routine handler chatter is filtered."""

from __future__ import annotations

import logging

import pytest

from berth_operator.__main__ import QuietFollowers, _peering_priority, main
from berth_operator.settings import OperatorSettings


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


def test_routine_follower_successes_are_dropped_but_failures_kept() -> None:
    quiet = QuietFollowers()
    assert not quiet.filter(_record(logging.INFO, "Handler 'follow-pods' succeeded."))
    assert quiet.filter(
        _record(logging.ERROR, "Handler 'follow-pods' failed with an exception. Will ignore.")
    )
    assert quiet.filter(_record(logging.INFO, "Handler 'apply-on-create' succeeded."))


def test_bad_settings_stop_the_operator_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BERTH_HEALTH_PORT", "eighty")
    assert main([]) == 2
    assert "BERTH_HEALTH_PORT='eighty'" in capsys.readouterr().err


def test_peering_replicas_get_distinct_priorities() -> None:
    assert _peering_priority(OperatorSettings()) is None  # standalone
    peered = OperatorSettings(peering_name="berth")
    drawn = {_peering_priority(peered) for _ in range(20)}
    assert len(drawn) > 1 and all(priority is not None and priority > 0 for priority in drawn)
