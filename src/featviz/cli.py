"""The ``featviz`` command line: ``featviz --help`` lists the sub-commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
from collections.abc import Sequence

from featviz._version import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command of `featviz.commands` registered."""
    parser = argparse.ArgumentParser(
        prog="featviz",
        description="See what PyTorch vision models do: CAMs, feature maps, correlations, "
        "projections, image conversion.",
    )
    parser.add_argument("--version", action="version", version=f"featviz {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress notes")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from featviz import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"featviz.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))
