"""NumPy's elementwise float64 semantics on plain Python floats, for per-object loops over a frame's few boxes.

A NumPy call costs about a microsecond whatever its length, so for the ~14 boxes of a frame a loop over Python
floats is several times cheaper than a chain of array operations. ``+ - * /``, comparisons, ``abs`` and
``math.sqrt`` are the same IEEE operations in both; what differs is spelled out here: a division by zero (NumPy
gives inf or NaN, Python raises), ``np.maximum`` / ``np.minimum`` (NaN and tie rules) and ``np.nan_to_num``.
(``math.hypot`` is *not* ``np.hypot`` bit for bit; :func:`hypot` is: both call libm's ``hypot``.)
"""

from __future__ import annotations

import math
import sys

import numpy as np
import numpy.typing as npt

__all__ = ["columns", "divide", "hypot", "maximum", "minimum", "nan_to_num"]

_MAX = sys.float_info.max


def divide(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` as NumPy divides (errors ignored): by zero, a signed inf, or NaN for 0 / 0."""
    if denominator:  # NaN too
        return numerator / denominator
    if numerator != numerator:
        return numerator
    if numerator == 0:
        return math.inf - math.inf  # the hardware's default NaN, as 0.0 / 0.0 in NumPy
    return math.copysign(math.inf, numerator) * math.copysign(1.0, denominator)


def hypot(x: float, y: float) -> float:
    """``np.hypot(x, y)``: libm's ``hypot``, which NumPy's float64 loop and CPython's ``abs`` of a complex both call
    (``math.hypot`` computes its own, which differs in the last bit for ~0.1 % of values); an overflow gives inf."""
    try:
        h = abs(complex(x, y))
    except OverflowError:  # CPython raises where libm returned inf (with ERANGE)
        return math.inf
    return h if h == h else x + y  # a NaN operand's own NaN (its sign), as libm passes it on; CPython's is positive


def maximum(a: float, b: float) -> float:
    """``np.maximum(a, b)``: a NaN wins (the first of two), a tie gives ``b`` (as NumPy's SIMD loops: -0.0 vs 0.0)."""
    return a if (a > b or a != a) else b


def minimum(a: float, b: float) -> float:
    """``np.minimum(a, b)``: a NaN wins (the first of two), a tie gives ``b``."""
    return a if (a < b or a != a) else b


def nan_to_num(value: float) -> float:
    """``np.nan_to_num(value)``: NaN -> 0.0, +-inf -> +-the largest float."""
    if value != value:
        return 0.0
    return value if abs(value) != math.inf else math.copysign(_MAX, value)


def columns(*values: npt.ArrayLike) -> list[list[float]]:
    """Each of ``values`` flattened to a float64 list, broadcast against each other as NumPy would (only when their
    lengths differ: ``np.broadcast_arrays`` costs more than the loops it feeds)."""
    arrays = [np.asarray(v, np.float64).reshape(-1) for v in values]
    if len({len(a) for a in arrays}) > 1:
        arrays = np.broadcast_arrays(*arrays)
    return [a.tolist() for a in arrays]
