"""Exponential back-off with jitter, for the callers that own a reconnect loop.

The clients never retry on their own: after a failure they drop the connection and
raise. The caller (the gateway's poller, a script) decides when to try again; this small
helper gives it the delay::

    backoff = Backoff(initial=1.0, maximum=60.0)
    while True:
        try:
            values = await client.read_values()
        except MeterCommunicationError:
            await asyncio.sleep(backoff.next_delay())
            continue
        backoff.reset()

Delays grow ``initial, initial*factor, ...`` up to ``maximum``; each is spread by
``jitter`` ("equal jitter": a random share of up to ``jitter`` of the delay is taken
off), so a thousand meters that failed together do not retry in the same instant.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Exponential back-off with jitter; ``reset()`` after a success."""

    __slots__ = ("initial", "maximum", "factor", "jitter", "_random", "_attempts", "_current")

    def __init__(self, initial: float = 1.0, maximum: float = 60.0, *, factor: float = 2.0,
                 jitter: float = 0.25, random_fn: Callable[[], float] = random.random) -> None:
        if initial <= 0:
            raise ValueError(f"Backoff initial delay must be > 0, got {initial!r}")
        if maximum < initial:
            raise ValueError(f"Backoff maximum ({maximum!r}) must be >= initial ({initial!r})")
        if factor < 1:
            raise ValueError(f"Backoff factor must be >= 1, got {factor!r}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"Backoff jitter must be within 0..1, got {jitter!r}")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)
        self.jitter = float(jitter)
        self._random = random_fn
        self._attempts = 0
        self._current = self.initial

    @property
    def attempts(self) -> int:
        """Failures since the last ``reset()``."""
        return self._attempts

    def next_delay(self) -> float:
        """The delay before the next attempt (seconds); grows with each call."""
        base = self._current
        self._attempts += 1
        self._current = min(self._current * self.factor, self.maximum)
        return base * (1.0 - self.jitter * self._random())

    def reset(self) -> None:
        """Back to the initial delay (call after a success)."""
        self._attempts = 0
        self._current = self.initial

    def __repr__(self) -> str:
        return (f"Backoff(initial={self.initial}, maximum={self.maximum}, factor={self.factor}, "
                f"jitter={self.jitter}, attempts={self._attempts})")
