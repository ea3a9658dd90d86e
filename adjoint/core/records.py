"""Results as plain data: every result's ``to_dict()`` holds only numbers, strings,
lists, dicts, booleans and ``None``, which ``json.dumps(..., allow_nan=False)`` writes.

A number that is not finite becomes the string ``"nan"``, ``"inf"`` or ``"-inf"`` (JSON
has no such numbers), an array nested lists, a sympy expression its text, and a key
its name.

    >>> import numpy as np
    >>> plain({"x": np.array([[1.0, np.nan]]), "n": 3})
    {'x': [[1.0, 'nan']], 'n': 3}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import sympy as sp

__all__ = ["plain"]


def plain(value):
    """``value`` as plain data (see the module)."""
    if value is None or isinstance(value, (bool, str, np.bool_)):
        return bool(value) if isinstance(value, np.bool_) else value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {_key(k): plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, sp.Basic) and not value.is_number:
        return str(value)
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return str(value)
    if array.ndim == 0:
        return _number(float(array))
    return _numbers(array.tolist())


def _key(k) -> str:
    return k if isinstance(k, str) else str(k)


def _number(v: float):
    return v if math.isfinite(v) else str(v)


def _numbers(nested):
    if isinstance(nested, list):
        return [_numbers(v) for v in nested]
    return _number(nested)
