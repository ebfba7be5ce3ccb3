"""A Gaussian mixture in R^d: toy data whose every noised marginal q(x_t) is known in closed form.

With data x_0 ~ sum_k w_k N(mu_k, Sigma_k) and the forward process of eq. (4),
x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps, the marginal is again a mixture with the
same weights (a linear map of a Gaussian plus independent Gaussian noise):

    q(x_t) = sum_k w_k N(x_t; sqrt(alpha_bar) mu_k, alpha_bar Sigma_k + (1 - alpha_bar) I).

So its density, its score grad_x log q(x_t) and, through Tweedie's formula
(``ddpm_lib.parameterization.score_to_eps``), the best possible noise prediction
eps*(x_t, t) = E[eps | x_t] are exact: a reference to check networks and samplers against.
Everything here is float64 numpy, except ``optimal_eps``: float32, like a network's output.

With the components taken as classes, ``MixtureEps`` is the exact class-conditional noise
predictor eps*(x_t, t, y), called like a class-conditional network: classifier-free guidance
(``sampler.guided_eps``) with exact scores.
"""
from __future__ import annotations

import numpy as np

from . import validate
from .parameterization import score_to_eps

__all__ = ["GaussianMixture", "MixtureEps"]


class GaussianMixture:
    """sum_k w_k N(mu_k, Sigma_k) in R^d.

    Args:
        weights: (K,) positive, normalized to sum to 1.
        means: (K, d).
        covs: (K, d, d) symmetric positive definite, or (K,) / a scalar for isotropic s^2 I.
    """

    def __init__(self, weights, means, covs):
        means = np.asarray(means, np.float64)
        if means.ndim != 2 or means.shape[0] < 1:
            raise ValueError(f"means must have shape (K, d); got shape {means.shape}.")
        k, d = means.shape
        weights = np.asarray(weights, np.float64)
        if weights.shape != (k,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"weights must be {k} positive numbers, one per mean; got {weights!r}.")
        covs = np.asarray(covs, np.float64)
        if covs.ndim <= 1:
            covs = np.broadcast_to(covs, (k,))[:, None, None] * np.eye(d)
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape ({k}, {d}, {d}), ({k},) or be a scalar; "
                             f"got shape {covs.shape}.")
        if not np.allclose(covs, np.swapaxes(covs, 1, 2)) or np.any(np.linalg.eigvalsh(covs) <= 0):
            raise ValueError("covs must be symmetric positive definite; got a matrix that is not.")
        self.weights = weights / weights.sum()
        self.means = means
        self.covs = np.array(covs)
        self.dim = d
        self._precisions = np.linalg.inv(self.covs)
        self._logdets = np.linalg.slogdet(self.covs)[1]

    def __repr__(self):
        return f"GaussianMixture(K={len(self.weights)}, d={self.dim})"

    def component(self, k):
        """The k-th component alone, N(mu_k, Sigma_k), as a one-component mixture: q(x | y = k)."""
        k = validate.non_negative_int(k, "k")
        if k >= len(self.weights):
            raise ValueError(f"k must be a component index in [0, {len(self.weights) - 1}]; got {k}.")
        return GaussianMixture([1.0], self.means[k:k + 1], self.covs[k:k + 1])

    def mean(self):
        """E[x] = sum_k w_k mu_k."""
        return self.weights @ self.means

    def cov(self):
        """Cov[x] = sum_k w_k (Sigma_k + mu_k mu_k^T) - E[x] E[x]^T."""
        m = self.mean()
        second = np.einsum("k,kij->ij", self.weights, self.covs + np.einsum("ki,kj->kij", self.means, self.means))
        return second - np.outer(m, m)

    def sample(self, n, seed=0):
        """n points, float64 (n, d); the components drawn by their weights. ``seed``: a numpy seed."""
        n = validate.positive_int(n, "n")
        rng = np.random.default_rng(seed)
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        chol = np.linalg.cholesky(self.covs)
        return self.means[k] + np.einsum("nij,nj->ni", chol[k], z)

    def diffuse(self, alpha_bar):
        """q(x_t) for x_0 from this mixture: N(sqrt(a) mu_k, a Sigma_k + (1 - a) I), a = ``alpha_bar``."""
        a = validate.finite_number(alpha_bar, "alpha_bar", minimum=0.0)
        if a > 1:
            raise ValueError(f"alpha_bar must lie in [0, 1]; got {a!r}.")
        return GaussianMixture(self.weights, np.sqrt(a) * self.means,
                               a * self.covs + (1.0 - a) * np.eye(self.dim))

    def _check_points(self, x):
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}); got shape {x.shape}.")
        return x

    def component_log_probs(self, x):
        """log w_k + log N(x; mu_k, Sigma_k), shape (n, K)."""
        x = self._check_points(x)
        r = x[:, None, :] - self.means[None, :, :]
        maha = np.einsum("nki,kij,nkj->nk", r, self._precisions, r)
        return np.log(self.weights)[None, :] - 0.5 * (
            self.dim * np.log(2 * np.pi) + self._logdets[None, :] + maha)

    def log_prob(self, x):
        """log q(x), shape (n,), by log-sum-exp over the components."""
        lp = self.component_log_probs(x)
        m = lp.max(axis=1, keepdims=True)
        return (m + np.log(np.exp(lp - m).sum(axis=1, keepdims=True)))[:, 0]

    def responsibilities(self, x):
        """p(k | x) = w_k N(x; mu_k, Sigma_k) / q(x), shape (n, K)."""
        lp = self.component_log_probs(x)
        p = np.exp(lp - lp.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def score(self, x):
        """grad_x log q(x) = -sum_k p(k | x) Sigma_k^{-1} (x - mu_k), shape (n, d)."""
        x = self._check_points(x)
        r = x[:, None, :] - self.means[None, :, :]
        return -np.einsum("nk,kij,nkj->ni", self.responsibilities(x), self._precisions, r)

    def optimal_eps(self, schedule, x_t, t):
        """eps*(x_t, t) = E[eps | x_t], the minimizer of L_simple at the code time ``t`` (a scalar).

        Tweedie's formula: E[eps | x_t] = -sqrt(1 - alpha_bar_t) grad log q(x_t)
        (``parameterization.score_to_eps``), with the exact score of ``diffuse(alpha_bar_t)``.
        float32, shape (n, d), like a network's output.
        """
        t = validate.time_index(t, schedule.timesteps, scalar=True)
        score = self.diffuse(schedule.alpha_bars[int(t)]).score(x_t)
        return score_to_eps(schedule, np.asarray(x_t, np.float32), t, score.astype(np.float32)).numpy()


class MixtureEps:
    """The exact noise predictor of a mixture whose components are the classes, as a model.

    Called like a class-conditional network, ``model(x_t, t, y=None)``: the label y = k < K gives
    E[eps | x_t, y = k], the eps* of component k alone (``component(k).optimal_eps``); the null
    label K, or ``y=None``, gives E[eps | x_t], the eps* of the whole mixture. ``num_classes`` = K,
    so ``sampler.guided_eps`` and the sampling loops (run eagerly: ``ddim_loop``, ...) take it
    unchanged. ``t``: the code times of the batch, all equal (as the loops call it). float32 out.
    """

    def __init__(self, mixture, schedule):
        if not isinstance(mixture, GaussianMixture):
            raise ValueError(f"mixture must be a GaussianMixture; got {type(mixture).__name__}.")
        self.mixture, self.schedule = mixture, schedule
        self.num_classes = len(mixture.weights)
        self._conditionals = [mixture.component(k) for k in range(self.num_classes)] + [mixture]

    def __call__(self, x_t, t, y=None, training=False):
        x_t = self.mixture._check_points(x_t)
        times = np.unique(validate.time_index(t, self.schedule.timesteps, batch=len(x_t)).numpy())
        if times.size != 1:
            raise ValueError(f"MixtureEps takes one time per call, shared by the batch; got {times}.")
        null = self.num_classes
        y = (np.full(len(x_t), null) if y is None else
             validate.class_labels(y, null, name="y", batch=len(x_t), allow_null=True).numpy())
        eps = np.empty(x_t.shape, np.float32)
        for k in np.unique(y):
            rows = y == k
            eps[rows] = self._conditionals[int(k)].optimal_eps(self.schedule, x_t[rows], int(times[0]))
        return eps
