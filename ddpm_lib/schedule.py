"""Noise schedules and the closed-form Gaussians of the forward process.

Index convention (the one place it is stated; every module and chapter uses it):

    code index ``t = 0, 1, ..., T-1``  is the paper's  ``t = 1, 2, ..., T``.

So ``betas[t]`` is the paper's beta_{t+1}, ``alpha_bars[t]`` is alpha_bar_{t+1}, and
``alpha_bars_prev[t]`` is alpha_bar_t of the paper, with ``alpha_bars_prev[0] = 1``
(the paper's alpha_bar_0 = 1: x_0 is the clean image). The last reverse step, code ``t = 0``,
is the paper's ``t = 1``, where Algorithm 2 adds no noise.

Every array of a :class:`Schedule` is float64 numpy, computed once, like
``GaussianDiffusion2`` in Ho et al.'s ``diffusion_utils_2.py``. The tensor methods gather the
float64 coefficients, cast them to float32 and then combine them with the (float32) images.

Equation numbers refer to Ho, Jain & Abbeel (2020), arXiv:2006.11239.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

__all__ = ["Schedule", "linear_schedule", "cosine_schedule"]


class Schedule:
    """The variance schedule beta_1..beta_T and every quantity derived from it.

    Args:
        betas: 1-D array of the T forward-process variances, each in (0, 1).

    Attributes (float64 arrays of shape ``(T,)``, index convention in the module docstring):
        betas: beta_t.
        alphas: alpha_t = 1 - beta_t.
        alpha_bars: alpha_bar_t = prod_{s<=t} alpha_s.
        alpha_bars_prev: alpha_bar_{t-1}, with alpha_bar_0 = 1 (so ``alpha_bars_prev[0] == 1``).
        sqrt_alpha_bars, sqrt_one_minus_alpha_bars: the mean and std coefficients of eq. (4).
        posterior_variance: beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t, eq. (7).
        posterior_mean_coef1, posterior_mean_coef2: the coefficients of x_0 and x_t in
            mu_tilde_t, eq. (7).
        timesteps: T.
    """

    def __init__(self, betas):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size < 1:
            raise ValueError(
                f"betas must be a non-empty 1-D array; got shape {betas.shape}.")
        if not np.all(np.isfinite(betas)) or np.any(betas <= 0) or np.any(betas >= 1):
            bad = betas[~((betas > 0) & (betas < 1))]
            raise ValueError(
                f"every beta must lie in the open interval (0, 1); got {bad[:5].tolist()}"
                f"{' ...' if bad.size > 5 else ''}.")
        self.betas = betas
        self.timesteps = int(betas.shape[0])

        self.alphas = 1.0 - betas
        self.alpha_bars = np.cumprod(self.alphas)
        self.alpha_bars_prev = np.append(1.0, self.alpha_bars[:-1])

        # q(x_t | x_0), eq. (4)
        self.one_minus_alpha_bars = 1.0 - self.alpha_bars
        self.sqrt_alpha_bars = np.sqrt(self.alpha_bars)
        self.sqrt_one_minus_alpha_bars = np.sqrt(self.one_minus_alpha_bars)
        # x_0 from (x_t, eps), eq. (4) solved for x_0
        self.sqrt_recip_alpha_bars = np.sqrt(1.0 / self.alpha_bars)
        self.sqrt_recipm1_alpha_bars = np.sqrt(1.0 / self.alpha_bars - 1.0)

        # q(x_{t-1} | x_t, x_0), eqs. (6)-(7)
        self.posterior_variance = (
            betas * (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars))
        self.posterior_mean_coef1 = (
            betas * np.sqrt(self.alpha_bars_prev) / (1.0 - self.alpha_bars))
        self.posterior_mean_coef2 = (
            (1.0 - self.alpha_bars_prev) * np.sqrt(self.alphas) / (1.0 - self.alpha_bars))

        # p_theta(x_{t-1} | x_t) in the eps-parameterization, eq. (11)
        self.sqrt_recip_alphas = 1.0 / np.sqrt(self.alphas)
        self.eps_coef = betas / self.sqrt_one_minus_alpha_bars

    def __repr__(self):
        return (f"Schedule(T={self.timesteps}, beta_1={self.betas[0]:.3g}, "
                f"beta_T={self.betas[-1]:.3g}, alpha_bar_T={self.alpha_bars[-1]:.3g})")

    # ------------------------------------------------------------------ helpers
    def check_t(self, t, batch=None, name="t"):
        """Validate time indices when their values are known (eager); return an int32 tensor."""
        if tf.is_symbolic_tensor(t):   # inside tf.function: values unknown, trust the caller
            return tf.cast(t, tf.int32)
        arr = np.asarray(t)
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and arr.size and np.all(arr == np.round(arr)):
                raise ValueError(
                    f"{name} must be an integer array (code index 0..{self.timesteps - 1}); "
                    f"got dtype {arr.dtype}. Cast it, e.g. t.astype('int32').")
            raise ValueError(
                f"{name} must be an integer array of shape (batch,); got dtype {arr.dtype}.")
        if arr.ndim > 1:
            raise ValueError(f"{name} must have shape (batch,) or be a scalar; got shape {arr.shape}.")
        if arr.size and (arr.min() < 0 or arr.max() >= self.timesteps):
            bad = arr[(arr < 0) | (arr >= self.timesteps)]
            raise ValueError(
                f"{name} out of range: got {bad[:5].tolist()}; expected code indices in "
                f"[0, {self.timesteps}) (code t = paper t - 1).")
        if batch is not None and arr.ndim == 1 and arr.shape[0] != batch:
            raise ValueError(
                f"{name} has {arr.shape[0]} entries but the images have batch size {batch}; "
                f"expected t of shape ({batch},).")
        return tf.constant(arr, tf.int32)

    def gather(self, name, t, ndim=4):
        """``getattr(self, name)[t]`` as a float32 tensor shaped to broadcast over rank-``ndim`` images."""
        coef = tf.gather(tf.constant(getattr(self, name), tf.float64), tf.cast(t, tf.int32))
        coef = tf.cast(coef, tf.float32)
        if coef.shape.rank == 0:
            return coef
        return tf.reshape(coef, [-1] + [1] * (ndim - 1))

    def _prepare(self, t, *arrays, names):
        xs = [tf.convert_to_tensor(a, tf.float32) for a in arrays]
        ref = xs[0]
        for n, x in zip(names[1:], xs[1:]):
            if x.shape.is_fully_defined() and ref.shape.is_fully_defined() and x.shape != ref.shape:
                raise ValueError(
                    f"{n} has shape {tuple(x.shape)} but {names[0]} has shape "
                    f"{tuple(ref.shape)}; they must match.")
        if ref.shape.rank is not None and ref.shape.rank < 1:
            raise ValueError(f"{names[0]} must have a leading batch axis; got a scalar.")
        batch = ref.shape[0] if ref.shape.rank else None
        t = self.check_t(t, batch=batch)
        return (t, *xs)

    # --------------------------------------------------------- forward process
    def q_mean_variance(self, x0, t):
        """Mean and variance of q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), eq. (4)."""
        t, x0 = self._prepare(t, x0, names=("x0",))
        nd = x0.shape.rank
        mean = self.gather("sqrt_alpha_bars", t, nd) * x0
        return mean, self.gather("one_minus_alpha_bars", t, nd)

    def q_sample(self, x0, t, noise):
        """Sample x_t ~ q(x_t | x_0): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, eq. (4)."""
        t, x0, noise = self._prepare(t, x0, noise, names=("x0", "noise"))
        nd = x0.shape.rank
        return (self.gather("sqrt_alpha_bars", t, nd) * x0
                + self.gather("sqrt_one_minus_alpha_bars", t, nd) * noise)

    def predict_x0(self, x_t, t, eps):
        """x_0 from x_t and the noise: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        t, x_t, eps = self._prepare(t, x_t, eps, names=("x_t", "eps"))
        nd = x_t.shape.rank
        return (self.gather("sqrt_recip_alpha_bars", t, nd) * x_t
                - self.gather("sqrt_recipm1_alpha_bars", t, nd) * eps)

    def predict_eps(self, x_t, t, x0):
        """The noise from x_t and x_0, eq. (4) solved for eps: the inverse of ``predict_x0``.

        eps = (x_t / sqrt(alpha_bar_t) - x_0) / sqrt(1 / alpha_bar_t - 1)
        """
        t, x_t, x0 = self._prepare(t, x_t, x0, names=("x_t", "x0"))
        nd = x_t.shape.rank
        return ((self.gather("sqrt_recip_alpha_bars", t, nd) * x_t - x0)
                / self.gather("sqrt_recipm1_alpha_bars", t, nd))

    # ------------------------------------------------------------- posterior
    def q_posterior(self, x0, x_t, t):
        """Mean and variance of q(x_{t-1} | x_t, x_0), eqs. (6)-(7).

        mu_tilde = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                   + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t,
        beta_tilde = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t.
        The variance is returned with shape ``(batch, 1, ..., 1)``.
        """
        t, x0, x_t = self._prepare(t, x0, x_t, names=("x0", "x_t"))
        nd = x0.shape.rank
        mean = (self.gather("posterior_mean_coef1", t, nd) * x0
                + self.gather("posterior_mean_coef2", t, nd) * x_t)
        return mean, self.gather("posterior_variance", t, nd)

    # -------------------------------------------------------- reverse process
    def p_mean(self, x_t, t, eps):
        """Mean of p_theta(x_{t-1} | x_t) in the eps form, eq. (11).

        mu_theta = 1 / sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps_theta)
        """
        t, x_t, eps = self._prepare(t, x_t, eps, names=("x_t", "eps"))
        nd = x_t.shape.rank
        return self.gather("sqrt_recip_alphas", t, nd) * (x_t - self.gather("eps_coef", t, nd) * eps)


def linear_schedule(timesteps=1000, beta_start=1e-4, beta_end=0.02):
    """Ho et al.'s schedule: betas rising linearly from ``beta_start`` to ``beta_end`` (Sec. 4)."""
    timesteps = _check_timesteps(timesteps)
    if not (0 < beta_start < 1 and 0 < beta_end < 1):
        raise ValueError(
            f"beta_start and beta_end must lie in (0, 1); got {beta_start} and {beta_end}.")
    if beta_start > beta_end:
        raise ValueError(
            f"beta_start ({beta_start}) must not exceed beta_end ({beta_end}).")
    return Schedule(np.linspace(beta_start, beta_end, timesteps, dtype=np.float64))


def cosine_schedule(timesteps=1000, s=0.008, max_beta=0.999):
    """Nichol & Dhariwal (2021), eq. (17): alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2).

    beta_t = min(1 - alpha_bar(t) / alpha_bar(t - 1), max_beta), clipped as in their paper.
    """
    timesteps = _check_timesteps(timesteps)
    if not s >= 0:
        raise ValueError(f"s must be >= 0; got {s}.")
    if not 0 < max_beta < 1:
        raise ValueError(f"max_beta must lie in (0, 1); got {max_beta}.")

    def f(u):
        return math.cos((u / timesteps + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1.0 - f(i + 1) / f(i), max_beta) for i in range(timesteps)]
    return Schedule(np.array(betas, dtype=np.float64))


def _check_timesteps(timesteps):
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)):
        raise ValueError(f"timesteps must be an integer >= 1; got {timesteps!r}.")
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1; got {timesteps}.")
    return int(timesteps)
