"""What generated programs call to solve implicit blocks: Newton's method and the
transposed solve, with NumPy and SciPy only.

A block of scalar unknowns is solved entry by entry over arrays of points (the
program's scalar inputs broadcast); a point where Newton's method does not converge,
or where ``dr/dz`` is singular, gets ``nan``, never a number from an unconverged
iterate. A matrix node is one system: its Jacobian is assembled from pullbacks, and
factorised once for the forward check and the backward solve with the transpose.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import LinAlgWarning, lu_factor, lu_solve

__all__ = [
    "factor",
    "linear_solve",
    "newton",
    "newton_matrix",
    "solve_matrix_transposed",
    "solve_transposed",
]


def _stack(rows, shape, m: int) -> np.ndarray:
    """The Jacobian ``((J11, J12, ...), ...)`` of arrays as one array (..., m, m)."""
    J = np.empty((*shape, m, m))
    for i in range(m):
        for k in range(m):
            J[..., i, k] = rows[i][k]
    return J


def _steps(J, r) -> np.ndarray:
    """``J^{-1} r`` point by point; ``nan`` where ``J`` is singular or not finite."""
    if J.shape[-1] == 1:
        with np.errstate(all="ignore"):
            return r / J[..., 0]
    ok = np.all(np.isfinite(J), axis=(-2, -1))
    ok &= np.abs(np.linalg.det(np.where(ok[..., None, None], J, 1.0))) > 0
    safe = np.where(ok[..., None, None], J, np.eye(J.shape[-1]))
    step = np.linalg.solve(safe, r[..., None])[..., 0]
    return np.where(ok[..., None], step, np.nan)


def newton(residual, jacobian, guess, tolerance: float, iterations: int):
    """The unknowns of a block with ``residual(*z) = 0``, and ``dr/dz`` there.

    ``residual(*z)`` gives the m residuals, ``jacobian(*z)`` the m x m partials, each
    an array over the points (or a number). Steps are halved where the residual would
    grow (Armijo); a point stops when its step is below ``tolerance`` relative to the
    solution. Returns the unknowns, then the Jacobian at the solution, shape (..., m, m).
    """
    z = [np.asarray(g, dtype=float) for g in guess]
    m = len(z)

    def evaluate(values):
        with np.errstate(all="ignore"):
            r = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in residual(*values)])
        return np.stack(r, axis=-1)

    r = evaluate(z)
    z = [np.broadcast_to(v, r.shape[:-1]).astype(float) for v in z]
    done = np.zeros(r.shape[:-1], dtype=bool)
    failed = ~np.all(np.isfinite(r), axis=-1)
    for _ in range(iterations):
        active = ~(done | failed)
        if not active.any():
            break
        with np.errstate(all="ignore"):
            J = _stack(jacobian(*z), r.shape[:-1], m)
        step = _steps(J, r)
        failed |= active & ~np.all(np.isfinite(step), axis=-1)
        x = np.stack(z, axis=-1)
        small = np.max(np.abs(step), axis=-1) <= tolerance * (1 + np.max(np.abs(x), axis=-1))
        size = np.max(np.abs(r), axis=-1)
        t = np.where(active & ~failed, 1.0, 0.0)
        for _ in range(14):  # halve where the residual would not decrease
            trial = x - t[..., None] * np.nan_to_num(step)
            r_trial = evaluate([trial[..., k] for k in range(m)])
            worse = ~np.all(np.isfinite(r_trial), axis=-1) | (
                np.max(np.abs(r_trial), axis=-1) > (1 - 1e-4 * t) * size
            )
            retry = worse & ~small & (t > 0)
            if not retry.any():
                break
            t = np.where(retry, t / 2, t)
        x = x - t[..., None] * np.nan_to_num(step)
        z = [x[..., k] for k in range(m)]
        r = evaluate(z)
        done |= active & small
    with np.errstate(all="ignore"):
        J = _stack(jacobian(*z), r.shape[:-1], m)
    bad = (
        failed
        | ~done
        | ~np.all(np.isfinite(r), axis=-1)
        | ~np.all(np.isfinite(_steps(J, np.ones_like(r))), axis=-1)
    )
    z = [np.where(bad, np.nan, v) for v in z]
    return (*z, np.where(bad[..., None, None], np.nan, J))


def solve_transposed(J, rhs):
    """The multipliers of a block: ``J^T lambda = rhs`` point by point (``rhs``: one
    array per unknown)."""
    m = J.shape[-1]
    b = np.stack(np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in rhs]), axis=-1)
    b = np.broadcast_to(b, (*J.shape[:-2], m)) if J.ndim > 2 or b.ndim < 2 else b
    lam = _steps(np.swapaxes(J, -1, -2), b)
    return tuple(lam[..., k] for k in range(m))


def factor(J):
    """The LU factors of ``J`` (scipy's ``lu_factor``), or ``None`` where ``J`` is
    singular: a pivot at most ``n eps`` times the largest, or one not finite."""
    with warnings.catch_warnings():  # a singular J is said by the caller, by name
        warnings.simplefilter("ignore", LinAlgWarning)
        lu, piv = lu_factor(J, check_finite=False)
    diagonal = np.abs(np.diag(lu))
    if not np.all(np.isfinite(lu)) or diagonal.min() <= len(diagonal) * np.finfo(float).eps * max(
        diagonal.max(), 1e-300
    ):
        return None
    return lu, piv


def newton_matrix(residual, pullback, guess, tolerance: float, iterations: int):
    """A matrix unknown ``Z`` with ``residual(Z) = 0``; ``pullback(Z, L)`` is
    ``(dR/dZ)^T L``. Returns ``Z`` and the factorised Jacobian at it (``nan`` and
    ``None`` when Newton's method does not converge or ``dR/dZ`` is singular)."""
    Z = np.array(guess, dtype=float)

    def jacobian(Z):
        J = np.empty((Z.size, Z.size))
        unit = np.zeros(Z.shape)
        for k in range(Z.size):  # row k of J: the pullback of the k-th unit matrix
            unit.flat[k] = 1.0
            J[k] = np.asarray(pullback(Z, unit), dtype=float).ravel()
            unit.flat[k] = 0.0
        return J

    with np.errstate(all="ignore"):
        r = np.asarray(residual(Z), dtype=float)
        for _ in range(iterations):
            factors = factor(jacobian(Z)) if np.all(np.isfinite(r)) else None
            if factors is None:
                break
            step = lu_solve(factors, r.ravel(), check_finite=False).reshape(Z.shape)
            if np.max(np.abs(step)) <= tolerance * (1 + np.max(np.abs(Z))):
                Z = Z - step
                factors = factor(jacobian(Z))
                if factors is None or not np.all(np.isfinite(residual(Z))):
                    break
                return Z, factors
            t, size = 1.0, np.max(np.abs(r))
            while t > 1e-4:
                r_trial = np.asarray(residual(Z - t * step), dtype=float)
                if (
                    np.all(np.isfinite(r_trial))
                    and np.max(np.abs(r_trial)) <= (1 - 1e-4 * t) * size
                ):
                    break
                t /= 2
            Z = Z - t * step
            r = np.asarray(residual(Z), dtype=float)
    return np.full(Z.shape, np.nan), None


def linear_solve(M, C):
    """``S`` with ``M S + C = 0``, and the factorisation of ``M`` for the backward solve."""
    factors = factor(np.asarray(M, dtype=float))
    if factors is None:
        return np.full(np.shape(C), np.nan), None
    return lu_solve(factors, -np.asarray(C, dtype=float), check_finite=False), factors


def solve_matrix_transposed(factors, rhs, shape, columns: bool):
    """``J^T Lambda = rhs`` with a factorisation from :func:`newton_matrix` (the Jacobian
    over the entries) or, with ``columns``, from :func:`linear_solve` (``M``, acting on
    the columns)."""
    rhs = np.broadcast_to(np.asarray(rhs, dtype=float), shape)
    if factors is None:
        return np.full(shape, np.nan)
    if columns:
        return lu_solve(factors, rhs, trans=1, check_finite=False)
    return lu_solve(factors, rhs.ravel(), trans=1, check_finite=False).reshape(shape)


# -- the same for JAX: lax control flow, traced once, jitted with the program ------------


def newton_jax(residual, jacobian, guess, tolerance: float, iterations: int):
    """:func:`newton` in ``jax.numpy``: a ``lax.while_loop`` of Newton steps over arrays
    of points, each point stopping when its step is below ``tolerance`` relative to
    the solution; ``nan`` where it did not. Undamped: give a guess= near the root."""
    import jax
    import jax.numpy as jnp

    m = len(guess)

    def evaluate(z):
        return jnp.stack(jnp.broadcast_arrays(*[jnp.asarray(v, float) for v in residual(*z)]), -1)

    r0 = evaluate([jnp.asarray(g, float) for g in guess])
    shape = r0.shape[:-1]
    z0 = jnp.stack([jnp.broadcast_to(jnp.asarray(g, float), shape) for g in guess], -1)

    def jacobian_at(x):
        rows = jacobian(*[x[..., k] for k in range(m)])
        return jnp.stack(
            [
                jnp.stack([jnp.broadcast_to(jnp.asarray(e, float), shape) for e in row], -1)
                for row in rows
            ],
            -2,
        )

    def step(x):
        J = jacobian_at(x)
        return jnp.linalg.solve(J, evaluate([x[..., k] for k in range(m)])[..., None])[..., 0]

    def body(state):
        x, done, k = state
        dx = step(x)
        small = jnp.max(jnp.abs(dx), -1) <= tolerance * (1 + jnp.max(jnp.abs(x), -1))
        x = jnp.where(done[..., None], x, x - dx)
        return x, done | small | ~jnp.all(jnp.isfinite(dx), -1), k + 1

    def going(state):
        _, done, k = state
        return (k < iterations) & ~jnp.all(done)

    x, done, _ = jax.lax.while_loop(going, body, (z0, jnp.zeros(shape, bool), 0))
    J = jacobian_at(x)
    ok = done & jnp.all(jnp.isfinite(evaluate([x[..., k] for k in range(m)])), -1)
    ok &= jnp.all(jnp.isfinite(step(x)), -1)
    x = jnp.where(ok[..., None], x, jnp.nan)
    return (*[x[..., k] for k in range(m)], jnp.where(ok[..., None, None], J, jnp.nan))


def solve_transposed_jax(J, rhs):
    """:func:`solve_transposed` in ``jax.numpy``."""
    import jax.numpy as jnp

    m = J.shape[-1]
    b = jnp.stack(jnp.broadcast_arrays(*[jnp.asarray(v, float) for v in rhs]), -1)
    b = jnp.broadcast_to(b, (*J.shape[:-2], m))
    lam = jnp.linalg.solve(jnp.swapaxes(J, -1, -2), b[..., None])[..., 0]
    return tuple(lam[..., k] for k in range(m))


def newton_matrix_jax(residual, tangent, guess, tolerance: float, iterations: int):
    """:func:`newton_matrix` in JAX, with ``tangent(Z, E) = dR/dZ [E]`` (the tangent
    rules): the Jacobian's columns are the tangents along the unit matrices, all at
    once by ``vmap`` (twice as fast in XLA as rows from pullbacks); the factorisation is
    returned for the backward solve."""
    import jax
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl

    Z0 = jnp.asarray(guess, float)
    size = Z0.size
    units = jnp.eye(size).reshape((size, *Z0.shape))

    def jacobian(Z):
        return jax.vmap(lambda E: jnp.ravel(tangent(Z, E)), out_axes=1)(units)

    def body(state):
        Z, _, k = state
        step = jnp.linalg.solve(jacobian(Z), jnp.ravel(residual(Z))).reshape(Z.shape)
        small = jnp.max(jnp.abs(step)) <= tolerance * (1 + jnp.max(jnp.abs(Z)))
        return Z - step, small | ~jnp.all(jnp.isfinite(step)), k + 1

    def going(state):
        _, done, k = state
        return (k < iterations) & ~done

    Z, done, _ = jax.lax.while_loop(going, body, (Z0, jnp.asarray(False), 0))
    factors = jsl.lu_factor(jacobian(Z))
    ok = done & jnp.all(jnp.isfinite(residual(Z))) & jnp.all(jnp.isfinite(factors[0]))
    return jnp.where(ok, Z, jnp.nan), factors


def linear_solve_jax(M, C):
    """:func:`linear_solve` in JAX."""
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl

    factors = jsl.lu_factor(jnp.asarray(M, float))
    return jsl.lu_solve(factors, -jnp.asarray(C, float)), factors


def solve_matrix_transposed_jax(factors, rhs, shape, columns: bool):
    """:func:`solve_matrix_transposed` in JAX."""
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl

    rhs = jnp.broadcast_to(jnp.asarray(rhs, float), shape)
    if columns:
        return jsl.lu_solve(factors, rhs, trans=1)
    return jsl.lu_solve(factors, jnp.ravel(rhs), trans=1).reshape(shape)
