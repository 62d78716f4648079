"""The `hm2bp` console script: a thin dispatcher.

Each subcommand parses its arguments here and calls one importable function of its room, so that
the CLI, `ray job submit` entry points and tests all run the same code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version

# name -> (help, function that adds the subcommand's arguments, function that runs it)
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _commands() -> dict[str, Command]:
    return {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hm2bp", description="HM2-BP spiking neural networks on Ray: convert, train, sweep."
    )
    parser.add_argument("--version", action="version", version=f"hm2bp {version('hm2bp')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, run) in _commands().items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(cmd)
        cmd.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
