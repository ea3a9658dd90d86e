"""adjoint: backpropagation as the stationarity conditions of a Lagrangian.

Declare constraints ``z_i = f_i(z_alpha(i))``; the package builds the Lagrangian
``L = z_n - sum_i lambda_i (z_i - f_i)``, derives ``grad L = 0`` and solves it:
forward for ``z`` (Step 1), in reverse for ``lambda`` (Step 2), so that
``lambda_j = d z_n / d z_j`` and the inputs' multipliers are the gradient.

>>> import sympy as sp, adjoint
>>> g = adjoint.Graph()
>>> x = g.input("x")
>>> z = g.define("z", sp.sin(x) * x)
>>> g.stationarity().gradient
[lambda_x = lambda_z*(x*cos(x) + sin(x))]
"""

from . import functions
from .api import Graph
from .assignments import Assignment, assignment
from .core.errors import (
    AdjointError,
    BadValueError,
    CycleError,
    DuplicateNameError,
    ExpressionError,
    MissingValueError,
    ParseError,
    ShapeError,
    UnknownSymbolError,
    WriteError,
)
from .core.parsing import parse
from .core.symbols import Multiplier
from .coursework.checks import (
    GradientCheck,
    HvpCheck,
    NodeCheck,
    TaylorTest,
    VerifyReport,
    check_gradient,
    check_hvp,
    dot_product_test,
    taylor_test,
    verify,
)
from .coursework.grading import AdjointGrade, Grading, check_adjoints
from .operations.custom import elementary
from .operations.functions import (
    column_sums,
    cross_entropy,
    logdet,
    logsumexp,
    relu,
    repeat_columns,
    repeat_rows,
    row_sums,
    sigmoid,
    softmax,
    softplus,
)
from .operations.matrices import frobenius2, sum_entries
from .system.control import Minimum, minimize
from .system.graph import ConstraintGraph, Node, Recurrence
from .system.implicit import Block, ConvergenceError, ImplicitAdjoint, ImplicitForward
from .system.lagrangian import AdjointCondition, Contribution, ForwardCondition, Role, Stationarity
from .system.recurrences import Schedule, ScheduleCounts, schedule
from .system.second_order import (
    HVP,
    SecondAdjointCondition,
    SecondOrder,
    TangentCondition,
    TangentSolution,
)
from .system.solve import NodeMap, Solution, grad

__all__ = [
    "HVP",
    "AdjointCondition",
    "AdjointError",
    "AdjointGrade",
    "Assignment",
    "BadValueError",
    "Block",
    "ConstraintGraph",
    "Contribution",
    "ConvergenceError",
    "CycleError",
    "DuplicateNameError",
    "ExpressionError",
    "ForwardCondition",
    "GradientCheck",
    "Grading",
    "Graph",
    "HvpCheck",
    "ImplicitAdjoint",
    "ImplicitForward",
    "Minimum",
    "MissingValueError",
    "Multiplier",
    "Node",
    "NodeCheck",
    "NodeMap",
    "ParseError",
    "Recurrence",
    "Role",
    "Schedule",
    "ScheduleCounts",
    "SecondAdjointCondition",
    "SecondOrder",
    "ShapeError",
    "Solution",
    "Stationarity",
    "TangentCondition",
    "TangentSolution",
    "TaylorTest",
    "UnknownSymbolError",
    "VerifyReport",
    "WriteError",
    "assignment",
    "check_adjoints",
    "check_gradient",
    "check_hvp",
    "column_sums",
    "cross_entropy",
    "dot_product_test",
    "elementary",
    "frobenius2",
    "functions",
    "grad",
    "logdet",
    "logsumexp",
    "minimize",
    "parse",
    "relu",
    "repeat_columns",
    "repeat_rows",
    "row_sums",
    "schedule",
    "sigmoid",
    "softmax",
    "softplus",
    "sum_entries",
    "taylor_test",
    "verify",
]

__version__ = "0.1.0"
