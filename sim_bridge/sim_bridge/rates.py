"""The achieved rate of a periodic loop, over a sliding window of its ticks.

Every node reports ``achieved_rate_hz`` on /diagnostics (the sim bridge's control steps,
the arm emulator's physics periods, the real bridge's control cycles, the policy node's
cycles). :class:`RateMeter` is that number, computed one way for all of them: the loop
calls :meth:`RateMeter.tick` with a monotonic time (s) at each iteration, and the rate is
``(ticks in the window - 1) / (last tick - first tick)``, in Hz.

Pure Python (no ROS). ``tick`` is called from the loop's thread and ``rate_hz`` from a
diagnostics thread: ``rate_hz`` works on one snapshot of the window, taken under the GIL.
"""
from __future__ import annotations

from collections import deque

__all__ = ["RateMeter"]


class RateMeter:
    """Ticks per second over the last ``window`` ticks (module docstring)."""

    def __init__(self, window: int):
        window = int(window)
        if window < 2:
            raise ValueError(f"a rate needs a window of at least 2 ticks, got {window}")
        self.window = window
        self._times: deque[float] = deque(maxlen=window)

    @classmethod
    def over(cls, seconds: float, rate_hz: float, *, minimum: int = 10) -> RateMeter:
        """A meter whose window holds ``seconds`` of ticks at the nominal ``rate_hz``
        (``int(rate_hz * seconds)`` ticks), at least ``minimum``."""
        return cls(max(int(minimum), int(rate_hz * seconds)))

    def tick(self, t_s: float) -> None:
        """One iteration of the loop at monotonic time ``t_s`` (s)."""
        self._times.append(t_s)

    @property
    def last_s(self) -> float | None:
        """The time of the latest tick (s), or None before the first."""
        times = self._times
        return times[-1] if times else None

    def __len__(self) -> int:
        """Ticks in the window (at most ``window``)."""
        return len(self._times)

    def clear(self) -> None:
        self._times.clear()

    def rate_hz(self) -> float:
        """Ticks per second over the window (Hz); 0.0 with fewer than 2 ticks or no time
        between the first and the last."""
        times = tuple(self._times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])
