"""Shared error types and wording: what every featviz surface says when something is wrong.

A private module every featviz module may import (the CLI and its commands too, so no
command imports `featviz.cli`). The library's wording follows scikit-learn: "The 'n'
parameter of f must be an int in the range [1, inf). Got 0 instead."; the command line
says the same with its options named instead of the library's parameters (`cli_wording`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["CLIError", "cli_wording", "describe", "param_error"]


class CLIError(Exception):
    """A user error found by a command (a bad option value); printed as one line."""


def describe(value: Any) -> str:
    """What a value is, for an error message: type, and shape and dtype where it has them.

    Args:
        value: Anything a user passed.

    Returns:
        For example ``"Tensor of shape (2, 3, 8, 8) and dtype torch.float32"``,
        ``"list of length 3"``, ``"'abc'"`` (a short repr) or ``"dict"`` (a long one's type).
    """
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else type(value).__name__


def param_error(
    kind: type[Exception], param: str, func: str, expected: str, got: str, fix: str = ""
) -> Exception:
    """The house error: what the parameter must be, what came (``got``), what to do.

    Args:
        kind: The exception class (``TypeError``, ``ValueError``, ...).
        param: The parameter's name.
        func: The public function's name.
        expected: What the parameter must be ("an int in the range [1, inf)").
        got: What came, usually `describe` of the value.
        fix: An optional sentence saying what to do.

    Returns:
        ``kind("The 'param' parameter of func must be expected. Got got instead. fix")``.
    """
    hint = f" {fix}" if fix else ""
    return kind(f"The {param!r} parameter of {func} must be {expected}. Got {got} instead.{hint}")


_PARAMETER = re.compile(r"The '(\w+)' parameter(?: of [\w.]+(?:\(\))?)?")
_PASS = re.compile(r"""\b([Pp])ass (\w+)=('[^']*'|"[^"]*"|[^\s,;)]+?)(?=[\s,;:)]|\.?$|\.\s)""")
_QUOTED = re.compile(r"'(\w+)' (?:name|value)\b")


def cli_wording(text: str, options: Mapping[str, str]) -> str:
    """A library message as the command line says it: parameters named by their options.

    ``The 'overwrite' parameter of save_image ...`` becomes ``--overwrite ...``;
    ``pass overwrite=True`` becomes ``pass --overwrite``; ``Pass layers=...`` becomes
    ``pass --layer ...``; a quoted parameter (``'layers' name``) becomes its option.
    Parameters with no option in ``options`` are left as they are.

    Args:
        text: The library's message.
        options: Library parameter -> the command's option (``{"layers": "--layer"}``).

    Returns:
        The message on one line, with options instead of parameters.
    """
    text = " ".join(text.split())

    def parameter(m: re.Match[str]) -> str:
        return options.get(m[1], m[0])

    def passed(m: re.Match[str]) -> str:
        flag = options.get(m[2])
        if flag is None:
            return m[0]
        value = m[3].strip("'\"")
        return f"{m[1]}ass {flag}" if value == "True" else f"{m[1]}ass {flag} {value}"

    def quoted(m: re.Match[str]) -> str:
        return options.get(m[1], m[0])

    return _QUOTED.sub(quoted, _PASS.sub(passed, _PARAMETER.sub(parameter, text)))
