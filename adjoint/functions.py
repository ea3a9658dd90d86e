"""The matrix calculus students write after the lecture, each with its rule, its
named derivative, its LaTeX and one NumPy call: explicit broadcasting
(``repeat_rows``, ``repeat_columns``), row and column sums and means, ``sigmoid``,
``relu``, ``softplus``, log-sum-exp and softmax along rows or columns,
``cross_entropy``, ``det``, ``logdet``, ``inverse``, element-wise ``divide`` and
``power``, and ``entry``/``scalar`` for a 1 x 1 matrix in a scalar formula.

The operations are declared in :mod:`adjoint.operations.functions`; this is their
public face.

>>> import sympy as sp
>>> from adjoint.functions import row_sums
>>> row_sums(sp.MatrixSymbol("E", 3, 2)).shape
(3, 1)
"""

from .operations import functions as declared
from .operations.functions import *  # noqa: F403
from .operations.functions import relu_prime, sigmoid_prime

__all__ = [*declared.__all__, "relu_prime", "sigmoid_prime"]
del declared
