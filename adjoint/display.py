"""How expressions read as text: sympy's printer, with element-wise functions
written the way people write them, ``tanh.(H)`` rather than ``Lambda(_d, tanh(_d)).(H)``.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.str import StrPrinter

__all__ = ["text"]


class TextPrinter(StrPrinter):
    def _print_ElementwiseApplyFunction(self, expr):
        var, body = expr.function.variables[0], expr.function.expr
        arg = self._print(expr.expr)
        if isinstance(body, sp.Function) and body.args == (var,):
            return f"{body.func}.({arg})"  # tanh.(H), as in Julia's broadcasting
        return f"({self._print(var)} -> {self._print(body)}).({arg})"

    def _print_HadamardProduct(self, expr):
        return " .* ".join(self.parenthesize(a, 50) for a in expr.args)

    def _print_Dummy(self, expr):
        return expr.name


_PRINTER = TextPrinter()


def text(expr) -> str:
    """``expr`` as one line of text."""
    return _PRINTER.doprint(expr)
