"""Command-line value types shared by the subcommands (argparse ``type=`` callables).

Each raises ``argparse.ArgumentTypeError`` with a one-line reason, which argparse turns
into ``error: argument --x: <reason>`` and exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _number(text: str, kind: type, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def port(text: str) -> int:
    """A TCP port to connect to: 1..65535."""
    value = _number(text, int, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1..65535, got {value}")
    return value


def listen_port(text: str) -> int:
    """A TCP port to listen on: 0 (any free port) ..65535."""
    value = _number(text, int, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {value}")
    return value


def port_or_auto(text: str) -> int | None:
    """``auto`` (None: taken from the meter's status.json) or a port number."""
    return None if text == "auto" else port(text)


def positive_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def int_range(lo: int, hi: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    """An integer lo..hi (no upper bound when hi is None)."""

    def parse(text: str) -> int:
        value = _number(text, int, what)
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {lo}..{hi}, got {value}" if hi is not None
                                             else f"must be >= {lo}, got {value}")
        return value

    return parse
