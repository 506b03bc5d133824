"""Profiled REML for linear mixed models with crossed, vector-valued random effects (lme4's formulation).

The model is ``y = X β + Z b + e`` with ``e ~ N(0, σ² I)`` and, for each grouping factor f
(rater, stimulus, item, deployment), a vector of random effects per level,
``b_{f,l} ~ N(0, σ² T_f T_f')``: an intercept alone (``(1 | f)``, T_f a 1 x 1 scale) or an
intercept with slopes (``(1 + x | f)``, T_f lower triangular: correlated effects; a diagonal
T_f when the correlations are left out). As in lme4 (Bates et al. 2015, J. Stat. Softw.
67(1), §3), ``Λ = blockdiag(I_q ⊗ T_f)`` is the relative covariance factor, β and σ² are
profiled out, and the optimiser only sees θ, the free entries of the T_f. Each evaluation
needs log det and solves of ``M = Λ'Z'ZΛ + I``.

Why it is fast: the factor with most levels (the raters) has a block-diagonal ``Z_1'Z_1``,
one small p x p block per level, so its part of M is eliminated in closed form and only the
Schur complement S over the other levels (stimuli, items, deployments: a few hundred) is
factorised densely. A level's block depends only on its cross-product ``Z_l'Z_l``, which
takes one or a few values in a balanced design (every rater rates the same number of
steered and base texts), so the rater contributions are pre-summed once per such class
and an evaluation costs O(q_rest³), whatever the number of ratings. Unbalanced designs
(many classes) use sparse products per level; thousands of non-rater levels (designs ten
times the paper's) keep S sparse and factorise it by sparse LU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import nlopt
import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from analysis.notices import SingularHessianWarning

try:  # installed with scikit-learn (via sentence-transformers); only a speed-up, so optional
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - depends on the environment
    threadpool_limits = None


SPARSE_REST_LEVELS = 2000  # above this many non-rater columns, the Schur complement is kept sparse
CLASS_PRESUM_BYTES = 200e6  # memory allowed for the per-class pre-summed blocks
SINGULAR_TOL = 1e-4
MAX_EVALUATIONS = 100_000
_NLOPT_CONVERGED = {nlopt.SUCCESS, nlopt.FTOL_REACHED, nlopt.XTOL_REACHED, nlopt.STOPVAL_REACHED}
_NLOPT_MESSAGES = {
    nlopt.SUCCESS: "converged",
    nlopt.FTOL_REACHED: "converged (deviance changes below tolerance)",
    nlopt.XTOL_REACHED: "converged (parameters change below tolerance)",
    nlopt.MAXEVAL_REACHED: f"stopped after the maximum of {100_000} evaluations",
}  # lme4's isSingular: a diagonal entry of a T_f below this is on the boundary


@dataclass(frozen=True)
class RandomBlock:
    """The random effects of one grouping factor.

    ``codes`` gives each rating's level (0..q-1); ``columns`` (n x p) the term's model matrix
    (a column of ones for the intercept, then slopes); ``pattern`` (p x p, lower triangular)
    marks the free entries of the relative covariance factor T: all of the lower triangle
    for correlated effects, the diagonal alone when they are uncorrelated.
    """

    codes: np.ndarray
    columns: np.ndarray
    pattern: np.ndarray

    @classmethod
    def intercept(cls, codes: np.ndarray) -> RandomBlock:
        return cls(np.asarray(codes), np.ones((len(codes), 1)), np.ones((1, 1), bool))

    @property
    def levels(self) -> int:
        return int(self.codes.max()) + 1

    @property
    def width(self) -> int:
        return self.columns.shape[1]

    def theta_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of each free entry of T, column by column as lme4 orders θ."""
        cols, rows = np.nonzero(np.tril(self.pattern).T)
        return rows, cols


@dataclass
class RemlFit:
    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2: float
    theta: np.ndarray  # free entries of each block's T, blocks in the caller's order
    covariances: list[np.ndarray]  # σ² T_f T_f' per block, in the caller's order
    deviance: float
    converged: bool
    optimizer_message: str
    n_evaluations: int
    df: np.ndarray  # Satterthwaite degrees of freedom per fixed effect
    satterthwaite: Satterthwaite | None = None

    def contrast_df(self, L: np.ndarray) -> float:
        """Satterthwaite df of the contrast ``L β`` (infinite when unavailable)."""
        return self.satterthwaite.df(L) if self.satterthwaite is not None else float("inf")


@dataclass
class Satterthwaite:
    """What lmerTest's Satterthwaite df need: A = 2 H⁻¹ (H the Hessian of the REML deviance in
    the free variance parameters) and the Jacobian of Cov(β̂) in the same parameters."""

    A: np.ndarray  # m x m
    jacobian: np.ndarray  # m x p x p
    cov_beta: np.ndarray  # p x p

    def df(self, L: np.ndarray) -> float:
        v = float(L @ self.cov_beta @ L)
        g = np.einsum("i,aij,j->a", L, self.jacobian, L)
        denom = float(g @ self.A @ g)
        return 2 * v**2 / denom if denom > 0 and np.isfinite(denom) else float("nan")


class _Problem:
    """The sufficient statistics of one fit and the profiled REML deviance as a function of θ."""

    def __init__(self, y: np.ndarray, X: np.ndarray, blocks: list[RandomBlock]):
        self.n, self.p = X.shape
        self.blocks = blocks
        self._theta_layout()
        W = np.column_stack([y, X])
        self.XtX, self.Xty, self.yty = X.T @ X, X.T @ y, float(y @ y)
        self.y_var = float(np.var(y))
        self.n_eval = 0
        self.last_logdets = np.inf
        self._memo: dict[bytes, tuple[float, np.ndarray, float]] = {}
        if not blocks:
            return
        # The block with most levels goes first: its part of M is block diagonal.
        self.order = sorted(range(len(blocks)), key=lambda j: -blocks[j].levels)
        first, rest = blocks[self.order[0]], [blocks[j] for j in self.order[1:]]
        z1 = _z_matrix(first)
        zr = sp.hstack([_z_matrix(b) for b in rest], format="csr") if rest else sp.csr_matrix((self.n, 0))
        self.p1, self.q1, self.qr = first.width, first.levels, zr.shape[1]
        self.sparse_rest = self.qr > SPARSE_REST_LEVELS
        self.B = (z1.T @ zr).tocsr()  # q1·p1 x qr
        C = (zr.T @ zr).tocsr()
        self.C = C if self.sparse_rest else C.toarray()
        self.Z1W, self.ZrW = np.asarray(z1.T @ W), np.asarray(zr.T @ W)
        self._first_level_grams(first)
        self._rest_factor_template(rest)

    # --------------------------------------------------------------------------- set-up

    def _theta_layout(self) -> None:
        """Where each θ entry sits: block, row and column of its T; lower bounds (diagonals ≥ 0)."""
        self.theta_block, self.theta_row, self.theta_col = [], [], []
        for j, b in enumerate(self.blocks):
            rows, cols = b.theta_positions()
            self.theta_block += [j] * len(rows)
            self.theta_row += rows.tolist()
            self.theta_col += cols.tolist()
        self.n_theta = len(self.theta_block)
        self.on_diagonal = np.array([r == c for r, c in zip(self.theta_row, self.theta_col, strict=True)], bool)

    def theta_start(self) -> np.ndarray:
        """lme4's start: identity T (unit relative SDs, no correlation)."""
        return self.on_diagonal.astype(float)

    def factor(self, theta: np.ndarray, j: int) -> np.ndarray:
        """T of block j at θ."""
        T = np.zeros((self.blocks[j].width, self.blocks[j].width))
        for t in np.flatnonzero(np.asarray(self.theta_block) == j):
            T[self.theta_row[t], self.theta_col[t]] = theta[t]
        return T

    def _first_level_grams(self, first: RandomBlock) -> None:
        """Z_l'Z_l of each level of the first block, and its classes of equal cross-products."""
        p1 = self.p1
        grams = np.zeros((self.q1, p1, p1))
        np.add.at(grams, first.codes, first.columns[:, :, None] * first.columns[:, None, :])
        self.grams = grams
        classes, inverse = np.unique(grams.reshape(self.q1, -1), axis=0, return_inverse=True)
        inverse = inverse.ravel()
        self.class_grams = classes.reshape(-1, p1, p1)
        self.n_per_class = np.bincount(inverse).astype(float)
        n_classes = len(classes)
        bytes_needed = n_classes * p1 * p1 * self.qr * self.qr * 8
        self.by_class = (self.sparse_rest and n_classes <= 32) or bytes_needed <= CLASS_PRESUM_BYTES
        if not self.by_class:
            return
        # G[c,a,b] = Σ_{l in c} B_la' B_lb (and the same with Z1'W for the right-hand sides): the
        # rater part of the Schur complement is Σ_c Σ_ab P_c[a,b] G[c,a,b] at every θ.
        rows = np.arange(self.q1) * p1
        G, H, K = [], [], []
        for c in range(n_classes):
            members = rows[inverse == c]
            for a in range(p1):
                for b in range(p1):
                    Ba, Bb = self.B[members + a], self.B[members + b]
                    G.append((Ba.T @ Bb).tocsr() if self.sparse_rest else (Ba.T @ Bb).toarray().ravel())
                    H.append(np.asarray(Ba.T @ self.Z1W[members + b]))
                    K.append(self.Z1W[members + a].T @ self.Z1W[members + b])
        self.G = G if self.sparse_rest else np.array(G)
        self.H, self.K = np.array(H), np.array(K)

    def _rest_factor_template(self, rest: list[RandomBlock]) -> None:
        """Where each other block's columns sit in the rest of M, and (for the sparse path) Λr as a
        sparse pattern whose values are picked from θ by index."""
        block_of = {id(b): j for j, b in enumerate(self.blocks)}
        self.rest_slices, offset = [], 0
        for b in rest:
            self.rest_slices.append((block_of[id(b)], offset, b.levels, b.width))
            offset += b.levels * b.width
        if not (rest and self.sparse_rest):
            return
        rows, cols, index = [], [], []
        theta_block = np.asarray(self.theta_block)
        for j, start, levels, width in self.rest_slices:
            for t in np.flatnonzero(theta_block == j):
                level_offsets = start + np.arange(levels) * width
                rows.append(level_offsets + self.theta_row[t])
                cols.append(level_offsets + self.theta_col[t])
                index.append(np.full(levels, t))
        r, c, idx = np.concatenate(rows), np.concatenate(cols), np.concatenate(index)
        # Built once with data = position, so each evaluation only refills the data array.
        template = sp.csr_matrix((np.arange(len(r), dtype=float) + 1, (r, c)), shape=(self.qr, self.qr))
        self.lambda_template = template
        self.lambda_index = idx[template.data.astype(int) - 1]

    def _sparse_rest_lambda(self, theta: np.ndarray) -> sp.csr_matrix:
        lam = self.lambda_template.copy()
        lam.data = theta[self.lambda_index]
        return lam

    def _lambda_t_left(self, theta: np.ndarray, M: np.ndarray) -> np.ndarray:
        """Λr' M for a dense M, level block by level block (in place)."""
        for j, start, levels, width in self.rest_slices:
            part = M[start : start + levels * width]
            if width == 1:
                part *= theta[self.theta_block.index(j)]
            else:
                T = self.factor(theta, j)
                shaped = np.einsum("ba,lbk->lak", T, part.reshape(levels, width, -1))
                M[start : start + levels * width] = shaped.reshape(levels * width, -1)
        return M

    def _lambda_right(self, theta: np.ndarray, M: np.ndarray) -> np.ndarray:
        """M Λr for a dense M, level block by level block (in place)."""
        for j, start, levels, width in self.rest_slices:
            part = M[:, start : start + levels * width]
            if width == 1:
                part *= theta[self.theta_block.index(j)]
            else:
                T = self.factor(theta, j)
                shaped = part.reshape(M.shape[0], levels, width) @ T
                M[:, start : start + levels * width] = shaped.reshape(M.shape[0], -1)
        return M

    # --------------------------------------------------------------------------- evaluation

    def solve(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
        """Return (REML deviance, β, R_X'R_X, r²) at θ."""
        self.n_eval += 1
        if not self.blocks:
            return self._profile(0.0, np.zeros((self.p + 1, self.p + 1)))
        T1 = self.factor(theta, self.order[0])
        reduced = self._reduce(theta, T1)
        if reduced is None:
            return np.inf, np.full(self.p, np.nan), np.eye(self.p), np.nan
        return self._profile(*reduced)

    def _first_block_inverse(self, T1: np.ndarray, grams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each cross-product G: log det(T1'G T1 + I) and P = T1 (T1'G T1 + I)⁻¹ T1'."""
        A = np.einsum("ji,njk,kl->nil", T1, grams, T1) + np.eye(self.p1)
        chol = np.linalg.cholesky(A)
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        inv_t = np.linalg.solve(chol, np.broadcast_to(T1.T, A.shape))  # L⁻¹ T1'
        return logdet, np.einsum("nki,nkj->nij", inv_t, inv_t)

    def _reduce(self, theta: np.ndarray, T1: np.ndarray) -> tuple[float, np.ndarray] | None:
        """log det M and ``quad = [W'y W'X]' Λ'Z' M⁻¹ ZΛ [y X]``, eliminating the first block."""
        if self.by_class:
            logdets, P = self._first_block_inverse(T1, self.class_grams)
            logdet = float(self.n_per_class @ logdets)
            weights = P.reshape(-1)
            BDr = np.tensordot(weights, self.H, axes=1)
            rDr = np.tensordot(weights, self.K, axes=1)
            if self.sparse_rest:
                BDB = sum((g * w for g, w in zip(self.G, weights, strict=True)), sp.csr_matrix((self.qr, self.qr)))
            else:
                BDB = (weights @ self.G).reshape(self.qr, self.qr)
        else:
            logdets, P = self._first_block_inverse(T1, self.grams)
            logdet = float(logdets.sum())
            Pmat = sp.block_diag(list(P), format="csr")
            PB = Pmat @ self.B
            BDB = self.B.T @ PB
            if not self.sparse_rest:
                BDB = BDB.toarray()
            PW = Pmat @ self.Z1W
            BDr = np.asarray(self.B.T @ PW)
            rDr = self.Z1W.T @ PW
        if not self.qr:
            return logdet, rDr
        if self.sparse_rest:
            lam = self._sparse_rest_lambda(theta)
            resid = np.asarray(lam.T @ (self.ZrW - BDr))
            S = (lam.T @ (self.C - BDB) @ lam).tocsc() + sp.identity(self.qr, format="csc")
            factorised = self._sparse_solve(S, resid)
        else:
            resid = self._lambda_t_left(theta, self.ZrW - BDr)
            S = self._lambda_right(theta, self._lambda_t_left(theta, self.C - BDB))
            S[np.diag_indices_from(S)] += 1.0
            factorised = self._dense_solve(S, resid)
        if factorised is None:
            return None
        logdet_s, quad_s = factorised
        return logdet + logdet_s, rDr + quad_s

    # Each *_solve factorises S and returns (log det S, resid' S⁻¹ resid); None if S is not PD.

    @staticmethod
    def _dense_solve(S: np.ndarray, resid: np.ndarray) -> tuple[float, np.ndarray] | None:
        try:
            cf = sla.cho_factor(S, lower=True, check_finite=False, overwrite_a=True)
        except np.linalg.LinAlgError:
            return None
        half = sla.solve_triangular(cf[0], resid, lower=True, check_finite=False)
        return 2.0 * float(np.log(np.diag(cf[0])).sum()), half.T @ half

    @staticmethod
    def _sparse_solve(S: sp.csc_matrix, resid: np.ndarray) -> tuple[float, np.ndarray] | None:
        try:
            # S is symmetric positive definite: symmetric ordering, no pivoting, so the
            # diagonal of U holds the pivots and log det S = sum log U_ii.
            lu = spla.splu(S, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        except RuntimeError:
            return None
        udiag = lu.U.diagonal()
        if not (udiag > 0).all():
            return None
        return float(np.log(udiag).sum()), resid.T @ lu.solve(resid)

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

    # Variance parameters as lmerTest takes them, varpar = (θ, σ): the Satterthwaite
    # approximation needs derivatives with σ not profiled out.

    def _at_theta(self, theta: np.ndarray) -> tuple[float, np.ndarray, float]:
        """(log dets, R_X'R_X, r²) at θ, remembered: the finite differences in σ repeat each θ."""
        key = theta.tobytes()
        if key not in self._memo:
            _, _, RxRx, r2sum = self.solve(theta)
            if len(self._memo) > 64:
                self._memo.clear()
            self._memo[key] = (self.last_logdets, RxRx, r2sum)
        return self._memo[key]

    def deviance_varpar(self, varpar: np.ndarray) -> float:
        """REML deviance (-2 log restricted likelihood) at (θ, σ)."""
        sigma = varpar[-1]
        if not sigma > 0:
            return np.inf
        logdets, _, r2sum = self._at_theta(varpar[:-1])
        df = self.n - self.p
        return float(logdets + df * np.log(2.0 * np.pi * sigma**2) + r2sum / sigma**2)

    def cov_beta_varpar(self, varpar: np.ndarray) -> np.ndarray:
        _, RxRx, _ = self._at_theta(varpar[:-1])
        return varpar[-1] ** 2 * np.linalg.inv(RxRx)


def _z_matrix(block: RandomBlock) -> sp.csr_matrix:
    """The block's columns of Z: level-major (for level l, its p columns side by side)."""
    n, p = block.columns.shape
    rows = np.repeat(np.arange(n), p)
    cols = (block.codes[:, None] * p + np.arange(p)[None, :]).ravel()
    z = sp.csr_matrix((block.columns.ravel(), (rows, cols)), shape=(n, block.levels * p))
    z.eliminate_zeros()
    return z


def satterthwaite(prob: _Problem, theta: np.ndarray, sigma: float) -> Satterthwaite | None:
    """The pieces of lmerTest's Satterthwaite df at the optimum (θ, σ).

    df(L) = 2 V² / (g' A g), with V = L' Cov(β̂) L, g its gradient in the variance
    parameters and A their asymptotic covariance (twice the inverse Hessian of the REML
    deviance). Both derivatives are central finite differences. Parameters on the
    boundary (a diagonal entry of T at zero) are held fixed, as they carry no sampling
    variance here. ``None`` (with a warning) when the Hessian is singular.
    """
    varpar = np.append(theta, sigma)
    free = np.flatnonzero(np.append(~prob.on_diagonal | (theta > SINGULAR_TOL), True))
    step = 1e-3 * np.maximum(np.abs(varpar[free]), 1e-2)

    def at(delta: dict[int, float]) -> np.ndarray:
        q = varpar.copy()
        for i, d in delta.items():
            q[free[i]] += d
        return q

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
        return None
    jacobian = np.stack(
        [
            (prob.cov_beta_varpar(at({a: step[a]})) - prob.cov_beta_varpar(at({a: -step[a]}))) / (2 * step[a])
            for a in range(len(free))
        ]
    )
    return Satterthwaite(A=A, jacobian=jacobian, cov_beta=prob.cov_beta_varpar(varpar))


def _deviance_hessian(prob: _Problem, at: Callable[[dict[int, float]], np.ndarray], step: np.ndarray) -> np.ndarray:
    """Central finite-difference Hessian of the REML deviance in the free variance parameters.

    ``at(delta)`` is the parameter vector with ``delta[i]`` added to free parameter ``i``.
    """
    m = len(step)
    f0 = prob.deviance_varpar(at({}))
    H = np.empty((m, m))
    for a in range(m):
        ha = step[a]
        H[a, a] = (prob.deviance_varpar(at({a: ha})) - 2 * f0 + prob.deviance_varpar(at({a: -ha}))) / ha**2
        for b in range(a):
            hb = step[b]
            H[a, b] = H[b, a] = (
                prob.deviance_varpar(at({a: ha, b: hb}))
                - prob.deviance_varpar(at({a: ha, b: -hb}))
                - prob.deviance_varpar(at({a: -ha, b: hb}))
                + prob.deviance_varpar(at({a: -ha, b: -hb}))
            ) / (4 * ha * hb)
    return H


def _df_per_coefficient(sat: Satterthwaite | None, p: int) -> np.ndarray:
    if sat is None:
        return np.full(p, np.inf)
    df = np.array([sat.df(np.eye(p)[j]) for j in range(p)])
    bad = ~(np.isfinite(df) & (df > 0))
    if bad.any():
        warnings.warn(
            SingularHessianWarning(
                f"Satterthwaite df undefined for {int(bad.sum())} fixed effect(s) (non-positive or non-finite): "
                "their CIs and p-values use the normal (Wald z) instead of t"
            ),
            stacklevel=3,
        )
    return np.where(bad, np.inf, df)


def fit_reml(
    y: np.ndarray,
    X: np.ndarray,
    blocks: list[RandomBlock],
    *,
    start: np.ndarray | None = None,
    optimise: bool = True,
    inference: bool = True,
) -> RemlFit:
    """Fit by REML: ``blocks`` are the random effects, one :class:`RandomBlock` per grouping factor.

    ``start``: θ to start from (default lme4's: unit relative SDs, no correlation); with
    ``optimise=False`` it is taken as the optimum found before (to add inference to a fit).
    ``inference``: compute the Satterthwaite df (a fit only used to choose a model needs none).
    """
    prob = _Problem(np.asarray(y, float), np.asarray(X, float), blocks)
    # Each evaluation factorises a matrix of a few hundred rows: BLAS threads cost far more
    # in start-up than they save (40x slower on a busy 2-core machine), so use one.
    if threadpool_limits is None:
        return _optimise(prob, start, optimise, inference)
    with threadpool_limits(limits=1, user_api="blas"):
        return _optimise(prob, start, optimise, inference)


def _minimise(prob: _Problem, start: np.ndarray) -> tuple[np.ndarray, bool, str]:
    """Minimise the profiled deviance over θ, diagonals of each T bounded below by zero.

    BOBYQA from NLopt, lme4's default optimiser: derivative-free, bounds kept exactly (a
    variance on the boundary, a singular fit, is found at zero), and a few hundred
    evaluations for a maximal model where a simplex needs thousands. The tolerances are
    tighter than lme4's defaults, so that variance parameters are found to ~1e-6.
    Returns (θ, converged, the optimiser's message).
    """
    best_deviance, best_theta = [np.inf], [start]

    def objective(theta: np.ndarray, _gradient: np.ndarray) -> float:
        deviance = prob.solve(theta)[0]
        if deviance < best_deviance[0]:
            best_deviance[0], best_theta[0] = deviance, theta.copy()
        return deviance

    opt = nlopt.opt(nlopt.LN_BOBYQA, prob.n_theta)
    opt.set_min_objective(objective)
    opt.set_lower_bounds(np.where(prob.on_diagonal, 0.0, -np.inf))
    opt.set_initial_step(np.full(prob.n_theta, 0.75))  # lme4's rhobeg for a unit start
    opt.set_ftol_abs(1e-12)
    opt.set_xtol_abs(1e-10)
    opt.set_maxeval(MAX_EVALUATIONS)
    try:
        opt.optimize(start)
    except nlopt.RoundoffLimited:
        # Rounding noise stopped the search: the best point found is kept, as lme4 keeps it.
        return best_theta[0], False, "stopped by rounding errors (NLopt roundoff-limited)"
    code = opt.last_optimize_result()
    message = _NLOPT_MESSAGES.get(code, f"NLopt stopped with result code {code}")
    return best_theta[0], code in _NLOPT_CONVERGED, message


def _optimise(prob: _Problem, start: np.ndarray | None, optimise: bool, inference: bool) -> RemlFit:
    if not optimise and start is not None:
        theta, converged, message = np.asarray(start, float), True, "converged"
    elif prob.n_theta:
        theta, converged, message = _minimise(prob, prob.theta_start() if start is None else start)
    else:
        theta, converged, message = np.zeros(0), True, "no variance parameters"
    dev, beta, RxRx, r2sum = prob.solve(theta)
    sigma2 = r2sum / (prob.n - prob.p)
    # The deviance falls without bound towards an exact fit, so the optimiser stops at a
    # residual variance that is rounding noise rather than at an error: catch both.
    if not np.isfinite(dev) or sigma2 <= 1e-8 * prob.y_var:
        raise ValueError(
            "the model fits these ratings exactly (no residual variance): too few ratings, "
            "all scores equal, or copies of one rater"
        )
    cov_beta = sigma2 * np.linalg.inv(RxRx)
    sat = satterthwaite(prob, theta, float(np.sqrt(sigma2))) if inference else None
    covariances = []
    for j in range(len(prob.blocks)):
        T = prob.factor(theta, j)
        covariances.append(sigma2 * T @ T.T)
    return RemlFit(
        beta=beta,
        cov_beta=cov_beta,
        sigma2=float(sigma2),
        theta=theta,
        covariances=covariances,
        deviance=dev,
        converged=converged,
        optimizer_message=message,
        n_evaluations=prob.n_eval,
        df=_df_per_coefficient(sat, prob.p),
        satterthwaite=sat,
    )
