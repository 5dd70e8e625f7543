"""``featviz demo``: write every visualization featviz offers into one folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: run_demo parameter -> the option that sets it, for messages
OPTIONS = {"overwrite": "--overwrite", "out_dir": "--out", "device": "--device"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser(
        "demo",
        help="train/load the built-in model and write every visualization into a folder",
        description="Build the Shapes data and the built-in TinyCNN, then write every "
        "visualization featviz offers into OUT, with an index.md listing the files.",
    )
    p.add_argument("--out", default="featviz-demo", help="output folder (default: %(default)s)")
    p.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty OUT (replacing its files)"
    )
    # the flag's old name, kept working (hidden) so scripts written for it still run
    p.add_argument("--force", dest="overwrite", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fast", action="store_true", help="fewer images and iterations (for tests)")
    p.add_argument(
        "--full",
        action="store_true",
        help="full-size scores (more images and steps; several minutes on a CPU)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.set_defaults(func=run, options=OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0 on success.

    A `featviz.demo.DemoError` (OUT not empty, bad device, a failed section) reaches
    `featviz.cli.main`, which prints it as one line (the traceback with ``-v``).
    """
    from featviz.demo import run_demo

    index = run_demo(
        Path(args.out),
        overwrite=args.overwrite,
        fast=args.fast,
        full=args.full,
        device=args.device,
        progress=not args.quiet,
    )
    sys.stdout.write(f"featviz demo: wrote {index.parent} (see {index})\n")
    return 0
