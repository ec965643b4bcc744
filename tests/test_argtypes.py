"""Command-line value types: what they accept, and the one-line reasons they refuse."""

import argparse

import pytest

from emu_opcua import argtypes


@pytest.mark.parametrize("text, value", [("1", 1), ("502", 502), ("65535", 65535)])
def test_port(text, value):
    assert argtypes.port(text) == value


@pytest.mark.parametrize("text, reason", [("0", "1..65535"), ("65536", "1..65535"), ("http", "a port number"),
                                          ("", "a port number")])
def test_port_refused(text, reason):
    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        argtypes.port(text)


def test_listen_port_allows_0_for_any_free_port():
    assert argtypes.listen_port("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match="0..65535"):
        argtypes.listen_port("-1")


def test_port_or_auto():
    assert argtypes.port_or_auto("auto") is None
    assert argtypes.port_or_auto("5020") == 5020
    with pytest.raises(argparse.ArgumentTypeError):
        argtypes.port_or_auto("Auto")


@pytest.mark.parametrize("text", ["0", "-1", "nan", "x"])
def test_positive_float_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        argtypes.positive_float(text)


def test_int_range():
    rows = argtypes.int_range(0, 3000, "a number of rows")
    assert rows("0") == 0 and rows("3000") == 3000
    with pytest.raises(argparse.ArgumentTypeError, match="0..3000, got 3001"):
        rows("3001")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a number of rows"):
        rows("many")
    with pytest.raises(argparse.ArgumentTypeError, match=">= 1, got 0"):
        argtypes.int_range(1)("0")


def test_argparse_reports_the_reason(capsys):
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--port", type=argtypes.port)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--port", "70000"])
    assert exc.value.code == 2
    assert "argument --port: port must be 1..65535, got 70000" in capsys.readouterr().err
