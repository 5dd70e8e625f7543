"""The ``featviz`` command line: ``featviz --help`` lists the sub-commands.

Errors: a command's ``run`` may raise; `main` turns any exception (except
``KeyboardInterrupt``) into ONE line on stderr, ``featviz <command>: <message>``, and
exit code 1. User errors (`CLIError`, ``ValueError``, ``TypeError``, ``OSError`` such as
``FileNotFoundError`` and ``PermissionError``, ``RuntimeError`` from torch (devices,
memory), and exceptions featviz defines, such as ``featviz.demo.DemoError``) print just
their message, with the command's options named instead of the library's parameters
(each command passes ``options``, parameter -> option, to ``set_defaults``). Anything
else is a bug: the line names the exception type and adds
"run with --verbose for the traceback". With ``-v``/``--verbose`` the traceback is
printed too, before that line. Warnings are printed as one line each,
``featviz <command>: warning: <message>`` (Python's usual format with ``--verbose``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from featviz._errors import CLIError, cli_wording
from featviz._version import __version__

__all__ = ["CLIError", "build_parser", "main"]

_EXIT_ERROR = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130
_USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command of `featviz.commands` registered."""
    parser = argparse.ArgumentParser(
        prog="featviz",
        description="See what PyTorch vision models do: CAMs, feature maps, correlations, "
        "projections, image conversion.",
    )
    parser.add_argument("--version", action="version", version=f"featviz {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress notes; tracebacks on errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from featviz import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"featviz.commands.{info.name}")
        module.register(sub)
    for command in sub.choices.values():
        # `featviz cam ... -v` works as well as `featviz -v cam ...`
        if "--verbose" not in command._option_string_actions:
            command.add_argument(
                "-v",
                "--verbose",
                action="store_true",
                default=argparse.SUPPRESS,
                help="log progress notes; tracebacks on errors",
            )
    return parser


def _is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, _USER_ERRORS) or type(exc).__module__.split(".")[0] == "featviz"


def _one_line(exc: BaseException, options: Mapping[str, str]) -> str:
    text = cli_wording(str(exc), options) or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename!r}"
    if _is_user_error(exc):
        return text
    return f"internal error: {type(exc).__name__}: {text} (run with --verbose for the traceback)"


def _one_line_warning(command: str, options: Mapping[str, str]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints ``featviz <command>: warning: <message>``.

    Each distinct message is printed once per run (a warning raised for every image of a
    batch is one line), with the command's options named instead of the library's
    parameters.
    """
    seen: set[str] = set()

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        text = cli_wording(str(message), options)
        if text not in seen:
            seen.add(text)
            sys.stderr.write(f"featviz {command}: warning: {text}\n")

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Returns:
        0 on success, 1 when the command failed (one line on stderr, see the module
        docstring), 2 for usage errors (argparse), 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return _EXIT_USAGE
    options: Mapping[str, str] = getattr(args, "options", {})
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.showwarning = _one_line_warning(args.command, options)
            return int(args.func(args))
    except KeyboardInterrupt:
        sys.stderr.write(f"featviz {args.command}: interrupted\n")
        return _EXIT_INTERRUPTED
    except Exception as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        sys.stderr.write(f"featviz {args.command}: {_one_line(exc, options)}\n")
        return _EXIT_ERROR
