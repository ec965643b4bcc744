"""The ``emu-opcua`` console script: one subcommand per job.

Each subcommand lives in the module that does the job; that module offers
``add_arguments(parser)`` and ``run(args) -> int``. Imports are lazy so that
``emu-opcua --help`` stays fast and a broken optional part never blocks another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("emu_opcua.opcua.serve", "run the OPC UA server (demo meters when no config is given)"),
    "simulate": ("emu_opcua.simulator.cli", "emulate one or many meters (HTTP + Modbus TCP)"),
    "probe": ("emu_opcua.probe", "check one meter: status, live values, datalog, cross-check"),
    "firmware": ("emu_opcua.firmware.cli", "update the meters' TCP module firmware (list, update, confirm, erase)"),
    "hash-password": ("emu_opcua.opcua.security", "print a password hash for [[users]] password_hash"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (to add its arguments)."""
    parser = argparse.ArgumentParser(prog="emu-opcua", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sp)
            sp.set_defaults(_module=module)
    return parser


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv if a in SUBCOMMANDS), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command(argv)).parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.WARNING if args.verbose < 2 else logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.WARNING if args.verbose < 2 else logging.DEBUG)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING if args.verbose < 2 else logging.DEBUG)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL if args.verbose < 2 else logging.DEBUG)
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
