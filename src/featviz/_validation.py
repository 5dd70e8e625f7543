"""Shared argument checks: one wording for every featviz error about a parameter.

A private module every featviz module may import. The wording follows scikit-learn:
"The 'n' parameter of f must be an int in the range [1, inf). Got 0 instead."
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np

from featviz._ops import user_stacklevel

__all__ = ["check_choice", "check_int", "renamed"]

F = TypeVar("F", bound=Callable[..., Any])


def check_int(value: Any, name: str, func: str, low: int, high: int | None = None) -> int:
    """``value`` as an int if it is one (not a bool) in ``[low, high]``.

    Args:
        value: What the caller passed.
        name: The parameter's name.
        func: The public function's name.
        low: Smallest allowed value.
        high: Largest allowed value; None for no upper bound.

    Returns:
        ``int(value)``.

    Raises:
        ValueError: Not an int, a bool, or out of range; the message names ``name``,
            ``func``, the range and ``value``.
    """
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        top = "inf)" if high is None else f"{high}]"
        raise ValueError(
            f"The {name!r} parameter of {func} must be an int in the range [{low}, {top}. "
            f"Got {value!r} instead."
        )
    return int(value)


def check_choice(
    value: Any, name: str, func: str, choices: Sequence[str], *, ignore_case: bool = False
) -> str:
    """``value`` if it is one of ``choices`` (lower-cased first with ``ignore_case``).

    Args:
        value: What the caller passed.
        name: The parameter's name.
        func: The public function's name.
        choices: The allowed strings (lower case when ``ignore_case``).
        ignore_case: Accept any letter case.

    Returns:
        The matching choice.

    Raises:
        ValueError: ``value`` is not one of ``choices``; the message lists them.
    """
    key = value.lower() if ignore_case and isinstance(value, str) else value
    if not isinstance(key, str) or key not in choices:
        raise ValueError(
            f"The {name!r} parameter of {func} must be one of {list(choices)}. "
            f"Got {value!r} instead."
        )
    return key


def renamed(**old_to_new: str) -> Callable[[F], F]:
    """Accept a parameter's old keyword name for one release, with a `FutureWarning`.

    Example:
        >>> @renamed(layer="layers")
        ... def grad_cam(model, images, layers=None): ...

    The wrapped function keeps its signature (``inspect.signature`` follows
    ``__wrapped__``); passing both the old and the new name is a `TypeError`.

    Args:
        **old_to_new: Old keyword name -> new keyword name.

    Returns:
        A decorator.
    """

    def decorate(fn: F) -> F:
        name = fn.__qualname__.replace(".__init__", "")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(
                        f"{name}() got both {old!r} (its old name) and {new!r}; pass {new!r}."
                    )
                warnings.warn(
                    f"The {old!r} parameter of {name} is renamed {new!r}; the old name will "
                    "be removed in the next release.",
                    FutureWarning,
                    stacklevel=user_stacklevel(),
                )
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
