"""Profiled REML for linear mixed models with crossed random intercepts (lme4's formulation).

The model is ``y = X b + Z_1 u_1 + ... + Z_k u_k + e`` with ``u_j ~ N(0, s² θ_j² I)`` and
``e ~ N(0, s² I)``. As in lme4 (Bates et al. 2015, J. Stat. Softw. 67(1), §3), the
fixed effects and the residual variance are profiled out, so the optimiser only sees
the k relative standard deviations θ. Each evaluation needs the Cholesky factor of
``M = Λ Z'Z Λ + I``. Random intercepts make ``Z_1'Z_1`` diagonal, so the block of the
largest factor (the raters) is eliminated in closed form and only the Schur complement
over the remaining levels (stimuli, items, deployments: a few hundred) is factorised
densely. Sufficient statistics (Z'Z, Z'X, Z'y, X'X, X'y, y'y) are computed once, and the
rater block's contribution is pre-summed by rater count (balanced designs have one or a
few counts), so an evaluation costs O(q_rest³) whatever the number of ratings, and the
rater–stimulus graph may be nested in deployments or fully crossed: the cost is the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.optimize as so
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from analysis.notices import SingularHessianWarning

try:  # installed with scikit-learn (via sentence-transformers); only a speed-up, so optional
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - depends on the environment
    threadpool_limits = None


SPARSE_REST_LEVELS = 2000  # above this many non-rater levels, the Schur complement is kept sparse


@dataclass
class RemlFit:
    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2: float
    theta: np.ndarray
    variances: np.ndarray  # random-effect variances, one per factor
    deviance: float
    converged: bool
    n_evaluations: int
    df: np.ndarray  # Satterthwaite degrees of freedom per fixed effect


class _Problem:
    def __init__(self, y: np.ndarray, X: np.ndarray, codes: list[np.ndarray]):
        n = len(y)
        self.n, self.p = X.shape
        self.k = len(codes)
        sizes = [int(c.max()) + 1 for c in codes]
        # The factor with most levels goes first: its block of M is diagonal.
        order = np.argsort(sizes)[::-1]
        self.order = order
        zs = [sp.csr_matrix((np.ones(n), (np.arange(n), codes[j])), shape=(n, sizes[j])) for j in order]
        self.sizes = [sizes[j] for j in order]
        z1 = zs[0]
        zr = sp.hstack(zs[1:], format="csr") if self.k > 1 else sp.csr_matrix((n, 0))
        self.d1 = np.asarray(z1.sum(axis=0)).ravel()  # counts per level of the largest factor
        self.B = (z1.T @ zr).tocsr()  # q1 x qr, sparse
        qr = zr.shape[1]
        # Thousands of stimuli (designs ten times the paper's): a dense qr x qr Schur complement
        # would take gigabytes and seconds per evaluation, but nested stimuli make it sparse
        # (block-diagonal by deployment), so it is factorised by sparse LU instead.
        self.sparse_rest = self.k > 1 and qr > SPARSE_REST_LEVELS
        C = (zr.T @ zr).tocsr()
        self.C = C if self.sparse_rest else C.toarray()
        self.Z1X, self.ZrX = z1.T @ X, zr.T @ X
        self.Z1y, self.Zry = z1.T @ y, zr.T @ y
        self.XtX, self.Xty, self.yty = X.T @ X, X.T @ y, float(y @ y)
        self.y_var = float(np.var(y))
        # Which factor each column of the "rest" block belongs to (for Λ).
        self.rest_factor = np.repeat(np.arange(1, self.k), self.sizes[1:])
        self.n_eval = 0
        # D = θ1² d1 + 1 only depends on a level's count, so B'D⁻¹B = Σ_c G_c / D_c over the
        # distinct counts c, with G_c fixed. Balanced designs have one or a few counts: then
        # each evaluation is a handful of small dense operations. Many distinct counts on
        # many levels would make the G_c too big: fall back to sparse products.
        counts, inverse = np.unique(self.d1, return_inverse=True)
        self.by_count = self.k > 1 and not self.sparse_rest and len(counts) * qr * qr * 8 <= 200e6
        # The same pre-summing serves the sparse path, with sparse G_c.
        self.sparse_by_count = self.sparse_rest and len(counts) <= 32
        if self.by_count or self.sparse_by_count:
            W1 = np.column_stack([self.Z1y, self.Z1X])
            self.counts = counts.astype(float)
            self.n_per_count = np.bincount(inverse).astype(float)
            self.G, self.H, self.K = [], [], []
            for c in range(len(counts)):
                Bc = self.B[inverse == c]
                Wc = W1[inverse == c]
                G = (Bc.T @ Bc).tocsr()
                self.G.append(G if self.sparse_by_count else G.toarray())
                self.H.append(np.asarray(Bc.T @ Wc))
                self.K.append(Wc.T @ Wc)

    def solve(self, theta_sorted: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
        """Return (REML deviance, beta, (R_X'R_X), r²) at θ (in the sorted factor order)."""
        self.n_eval += 1
        t1 = theta_sorted[0]
        tr = theta_sorted[self.rest_factor] if self.k > 1 else np.zeros(0)
        D = t1 * t1 * self.d1 + 1.0
        # Right-hand sides Λ Z'[y X], split into the diagonal block and the rest.
        r1 = t1 * np.column_stack([self.Z1y, self.Z1X])
        r2 = tr[:, None] * np.column_stack([self.Zry, self.ZrX])
        if self.by_count:
            logdet, quad = self._reduce_by_count(t1, tr, r2)
        elif self.sparse_rest:
            reduced = self._reduce_sparse(t1, tr, D, r1, r2)
            if reduced is None:
                return np.inf, np.full(self.p, np.nan), np.eye(self.p), np.nan
            logdet, quad = reduced
        elif self.k > 1:
            logdet, quad = self._reduce_dense(t1, tr, D, r1, r2)
        else:
            logdet, quad = float(np.log(D).sum()), r1.T @ (r1 / D[:, None])
        return self._profile(logdet, quad)

    # Each _reduce_* returns log det M and quad = [W'y W'X]' M⁻¹ [W'y W'X], eliminating the
    # diagonal block of the largest factor and factorising the Schur complement S of the rest.

    def _reduce_by_count(self, t1: float, tr: np.ndarray, r2: np.ndarray) -> tuple[float, np.ndarray]:
        """Dense S from the blocks pre-summed by rater count."""
        Dc = t1 * t1 * self.counts + 1.0
        logdet = float((self.n_per_count * np.log(Dc)).sum())
        t1sq = t1 * t1
        BDB = t1sq * sum(g / d for g, d in zip(self.G, Dc, strict=True))
        BDr = t1sq * sum(h / d for h, d in zip(self.H, Dc, strict=True))
        rDr = t1sq * sum(k / d for k, d in zip(self.K, Dc, strict=True))
        S = tr[:, None] * (self.C - BDB) * tr[None, :] + np.eye(len(tr))
        cf = sla.cho_factor(S, lower=True, check_finite=False)
        logdet += 2.0 * float(np.log(np.diag(cf[0])).sum())
        resid = r2 - tr[:, None] * BDr
        return logdet, rDr + resid.T @ sla.cho_solve(cf, resid, check_finite=False)

    def _reduce_sparse(
        self, t1: float, tr: np.ndarray, D: np.ndarray, r1: np.ndarray, r2: np.ndarray
    ) -> tuple[float, np.ndarray] | None:
        """Sparse S (thousands of non-rater levels), factorised by sparse LU; ``None`` if not positive definite."""
        Tr = sp.diags(tr)
        if self.sparse_by_count:
            Dc = t1 * t1 * self.counts + 1.0
            t1sq = t1 * t1
            BDB = sum((g * (t1sq / d) for g, d in zip(self.G, Dc, strict=True)), sp.csr_matrix(self.C.shape))
            BDr = t1sq * sum(h / d for h, d in zip(self.H, Dc, strict=True))
            rDr = t1sq * sum(k / d for k, d in zip(self.K, Dc, strict=True))
            S = (Tr @ (self.C - BDB) @ Tr + sp.identity(len(tr))).tocsc()
        else:
            Bs = self.B.multiply(t1).multiply(tr[None, :]).tocsc()
            BtDinv = Bs.T.multiply(1.0 / D[None, :]).tocsr()
            S = (Tr @ self.C @ Tr + sp.identity(len(tr)) - BtDinv @ Bs).tocsc()
        try:
            # S is symmetric positive definite: symmetric ordering, no pivoting, so the
            # diagonal of U holds the pivots and log det S = sum log U_ii.
            lu = spla.splu(S, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        except RuntimeError:
            return None
        udiag = lu.U.diagonal()
        if not (udiag > 0).all():
            return None
        if self.sparse_by_count:
            logdet = float((self.n_per_count * np.log(Dc)).sum()) + float(np.log(udiag).sum())
            resid = r2 - tr[:, None] * BDr
            return logdet, rDr + resid.T @ lu.solve(resid)
        logdet = float(np.log(D).sum())
        logdet += float(np.log(udiag).sum())
        x2 = lu.solve(np.asarray(r2 - BtDinv @ r1))
        x1 = (r1 - Bs @ x2) / D[:, None]
        return logdet, r1.T @ x1 + r2.T @ x2

    def _reduce_dense(
        self, t1: float, tr: np.ndarray, D: np.ndarray, r1: np.ndarray, r2: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """Dense S from sparse products (many distinct rater counts)."""
        Bs = self.B.multiply(t1).multiply(tr[None, :]).tocsc()  # Λ1 Z1'Zr Λr
        S = tr[:, None] * self.C * tr[None, :] + np.eye(len(tr))
        BtDinv = Bs.T.multiply(1.0 / D[None, :]).tocsr()
        S -= (BtDinv @ Bs).toarray()
        cf = sla.cho_factor(S, lower=True, check_finite=False)
        logdet = float(np.log(D).sum())
        logdet += 2.0 * float(np.log(np.diag(cf[0])).sum())
        x2 = sla.cho_solve(cf, r2 - BtDinv @ r1, check_finite=False)
        x1 = (r1 - Bs @ x2) / D[:, None]
        return logdet, r1.T @ x1 + r2.T @ x2

    def _profile(self, logdet: float, quad: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
        """Profile out β and σ² given log det M and the reduced normal equations ``quad``."""
        cu_cu, RzxCu, RzxRzx = quad[0, 0], quad[1:, 0], quad[1:, 1:]
        RxRx = self.XtX - RzxRzx
        rhs = self.Xty - RzxCu
        try:
            cx = sla.cho_factor(RxRx, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return np.inf, np.full(self.p, np.nan), RxRx, np.nan
        beta = sla.cho_solve(cx, rhs, check_finite=False)
        r2sum = self.yty - cu_cu - float(rhs @ beta)
        df = self.n - self.p
        if not r2sum > 1e-12 * self.yty:
            # A (near-)exact fit: tiny or degenerate data (e.g. a bootstrap resample with one
            # rater drawn many times) and very large θ. Not a REML optimum: rule it out.
            self.last_logdets = np.inf
            return np.inf, beta, RxRx, float(r2sum)
        logdet_x = 2.0 * float(np.log(np.diag(cx[0])).sum())
        self.last_logdets = logdet + logdet_x
        dev = logdet + logdet_x + df * (1.0 + np.log(2.0 * np.pi * r2sum / df))
        return float(dev), beta, RxRx, float(r2sum)

    # Variance parameters ψ = (σ²_1 … σ²_k in sorted factor order, σ²_residual), for
    # the Satterthwaite approximation, which needs derivatives in ψ, not in θ.
    def _theta_of(self, psi: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(psi[:-1], 0.0) / psi[-1])

    def deviance_psi(self, psi: np.ndarray) -> float:
        """REML deviance (-2 log restricted likelihood) at ψ, σ² not profiled out."""
        if not psi[-1] > 0:
            return np.inf
        _, _, _, r2sum = self.solve(self._theta_of(psi))
        df = self.n - self.p
        return float(self.last_logdets + df * np.log(2.0 * np.pi * psi[-1]) + r2sum / psi[-1])

    def cov_beta_psi(self, psi: np.ndarray) -> np.ndarray:
        _, _, RxRx, _ = self.solve(self._theta_of(psi))
        return psi[-1] * np.linalg.inv(RxRx)


def satterthwaite_df(prob: _Problem, psi: np.ndarray) -> np.ndarray:
    """Satterthwaite degrees of freedom of each fixed effect, as lmerTest computes them.

    df_j = 2 V_j² / (g_j' A g_j), with V_j = Var(β̂_j)(ψ), g_j its gradient in ψ and A the
    asymptotic covariance of ψ̂ (twice the inverse Hessian of the REML deviance). Both
    derivatives are central finite differences. Variance parameters estimated at zero
    sit on the boundary and are held fixed, as they carry no sampling variance here.
    """
    free = np.flatnonzero(psi > 1e-8 * psi[-1])  # σ² (last) is always > 0, hence free
    step = 1e-4 * psi[free]

    def at(delta: dict[int, float]) -> np.ndarray:
        q = psi.copy()
        for i, d in delta.items():
            q[free[i]] += d
        return q

    m = len(free)
    try:
        A = 2.0 * np.linalg.inv(_deviance_hessian(prob, at, step))
    except np.linalg.LinAlgError:
        warnings.warn(
            SingularHessianWarning(
                "the Hessian of the REML deviance is singular: no Satterthwaite df, "
                "CIs and p-values use the normal (Wald z) instead of t"
            ),
            stacklevel=2,
        )
        return np.full(prob.p, np.inf)
    grads = np.stack(
        [
            (np.diag(prob.cov_beta_psi(at({a: step[a]}))) - np.diag(prob.cov_beta_psi(at({a: -step[a]}))))
            / (2 * step[a])
            for a in range(m)
        ],
        axis=1,
    )  # p x m
    v = np.diag(prob.cov_beta_psi(psi))
    denom = np.einsum("ia,ab,ib->i", grads, A, grads)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 2 * v**2 / denom
    bad = ~(np.isfinite(df) & (df > 0))
    if bad.any():
        warnings.warn(
            SingularHessianWarning(
                f"Satterthwaite df undefined for {int(bad.sum())} fixed effect(s) (non-positive or non-finite): "
                "their CIs and p-values use the normal (Wald z) instead of t"
            ),
            stacklevel=2,
        )
    return np.where(bad, np.inf, df)


def _deviance_hessian(prob: _Problem, at: Callable[[dict[int, float]], np.ndarray], step: np.ndarray) -> np.ndarray:
    """Central finite-difference Hessian of the REML deviance in the free variance parameters.

    ``at(delta)`` is ψ with ``delta[i]`` added to free parameter ``i``; ``step`` holds each one's step.
    """
    m = len(step)
    f0 = prob.deviance_psi(at({}))
    H = np.empty((m, m))
    for a in range(m):
        ha = step[a]
        H[a, a] = (prob.deviance_psi(at({a: ha})) - 2 * f0 + prob.deviance_psi(at({a: -ha}))) / ha**2
        for b in range(a):
            hb = step[b]
            H[a, b] = H[b, a] = (
                prob.deviance_psi(at({a: ha, b: hb}))
                - prob.deviance_psi(at({a: ha, b: -hb}))
                - prob.deviance_psi(at({a: -ha, b: hb}))
                + prob.deviance_psi(at({a: -ha, b: -hb}))
            ) / (4 * ha * hb)
    return H


def fit_reml(y: np.ndarray, X: np.ndarray, codes: list[np.ndarray]) -> RemlFit:
    """Fit by REML. ``codes[j]`` holds integer level codes 0..q_j-1 of random factor j."""
    prob = _Problem(np.asarray(y, float), np.asarray(X, float), [np.asarray(c) for c in codes])
    # Each evaluation factorises a matrix of a few hundred rows: BLAS threads cost far more
    # in start-up than they save (40x slower on a busy 2-core machine), so use one.
    if threadpool_limits is None:
        return _optimise(prob)
    with threadpool_limits(limits=1, user_api="blas"):
        return _optimise(prob)


def _optimise(prob: _Problem) -> RemlFit:
    def objective(theta: np.ndarray) -> float:
        return prob.solve(np.abs(theta))[0]

    x0 = np.ones(prob.k)
    # Derivative-free with bounds at zero, like lme4's default (bobyqa / Nelder–Mead):
    # the deviance has cheap evaluations and may sit on the boundary θ = 0. These
    # tolerances give variance components to ~1e-5 relative in ~100 evaluations.
    options = {"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000, "maxfev": 8000, "adaptive": prob.k > 2}
    best = so.minimize(objective, x0, method="Nelder-Mead", bounds=[(0.0, None)] * prob.k, options=options)
    if not best.success:
        # A restart from where the simplex stalled usually finishes the job.
        again = so.minimize(objective, best.x, method="Nelder-Mead", bounds=[(0.0, None)] * prob.k, options=options)
        if again.fun <= best.fun:
            best = again
    theta_sorted = np.abs(best.x)
    dev, beta, RxRx, r2sum = prob.solve(theta_sorted)
    sigma2 = r2sum / (prob.n - prob.p)
    # The deviance falls without bound towards an exact fit, so the optimiser stops at a
    # residual variance that is rounding noise rather than at an error: catch both.
    if not np.isfinite(dev) or sigma2 <= 1e-8 * prob.y_var:
        raise ValueError(
            "the model fits these ratings exactly (no residual variance): too few ratings, "
            "all scores equal, or copies of one rater"
        )
    cov_beta = sigma2 * np.linalg.inv(RxRx)
    psi = np.append(theta_sorted**2 * sigma2, sigma2)
    df = satterthwaite_df(prob, psi)
    theta = np.empty(prob.k)
    theta[prob.order] = theta_sorted
    return RemlFit(
        beta=beta,
        cov_beta=cov_beta,
        sigma2=float(sigma2),
        theta=theta,
        variances=theta**2 * sigma2,
        deviance=dev,
        converged=bool(best.success),
        n_evaluations=prob.n_eval,
        df=df,
    )
