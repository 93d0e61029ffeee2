"""The kubelet's crash-loop back-off, as a pure object a test can drive with its own clock.

Why: a container that keeps exiting must not be restarted in a tight loop, and a pod that crash-loops
here must look like one on a real node (restartCount growing, ``CrashLoopBackOff`` with the delay in
its message). The kubelet keeps one ``flowcontrol.Backoff`` entry per container (pkg/kubelet/
kuberuntime ``doBackOff``): the first exit restarts at once and arms the entry with the initial
delay; every later exit waits the current delay, counted from the exit, then doubles it up to the
maximum; an entry not touched for twice the maximum starts over. The kubelet's constants are 10 s
and 5 min; tests pass a base of about a second so a crash loop shows in a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

KUBELET_INITIAL_SECONDS = 10.0
KUBELET_MAXIMUM_SECONDS = 300.0


@dataclass
class CrashLoopBackOff:
    """One container's back-off; times are seconds on any monotonic clock."""

    initial_seconds: float = KUBELET_INITIAL_SECONDS
    maximum_seconds: float = KUBELET_MAXIMUM_SECONDS
    delay_seconds: float | None = None
    """The current delay; None until the container has been restarted once."""
    last_update: float | None = None

    def __post_init__(self) -> None:
        if self.initial_seconds <= 0:
            raise ValueError(f"back-off initial delay {self.initial_seconds} s; must be > 0")
        if self.maximum_seconds < self.initial_seconds:
            raise ValueError(
                f"back-off maximum {self.maximum_seconds} s is below "
                f"the initial delay {self.initial_seconds} s"
            )

    def _expired(self, event_time: float) -> bool:
        return self.last_update is None or event_time - self.last_update > 2 * self.maximum_seconds

    def remaining(self, finished_at: float, now: float) -> float:
        """Seconds still to wait before restarting a container that exited at ``finished_at``."""
        if self.delay_seconds is None or self._expired(finished_at):
            return 0.0
        return max(0.0, self.delay_seconds - (now - finished_at))

    def record_restart(self, finished_at: float, now: float) -> None:
        """Called when the container is restarted after exiting at ``finished_at``."""
        if self.delay_seconds is None or self._expired(finished_at):
            self.delay_seconds = self.initial_seconds
        else:
            self.delay_seconds = min(self.delay_seconds * 2, self.maximum_seconds)
        self.last_update = now


def go_duration(seconds: float) -> str:
    """``seconds`` the way Go prints a time.Duration: 500ms, 10s, 1m20s, 5m0s."""
    whole = round(seconds)
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if whole < 60:
        return f"{seconds:g}s" if seconds != whole else f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"
