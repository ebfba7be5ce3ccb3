"""Noise schedules and the closed-form Gaussians of the forward process.

Index convention (the one place it is stated; every module and chapter uses it):

    code index ``t = 0, 1, ..., T-1``  is the paper's  ``t = 1, 2, ..., T``.

So ``betas[t]`` is the paper's beta_{t+1}, ``alpha_bars[t]`` is alpha_bar_{t+1}, and
``alpha_bars_prev[t]`` is alpha_bar_t of the paper, with ``alpha_bars_prev[0] = 1``
(the paper's alpha_bar_0 = 1: x_0 is the clean image). The last reverse step, code ``t = 0``,
is the paper's ``t = 1``, where Algorithm 2 adds no noise.

Every array of a :class:`Schedule` is float64 numpy, computed once, like
``GaussianDiffusion2`` in Ho et al.'s ``diffusion_utils_2.py``. The tensor methods read the
float64 coefficients at t with :func:`extract`, cast them to float32 and then combine them with
the (float32) images. :func:`respace` gives the schedule of a sampler that skips times.
The reverse process p_theta lives in ``ddpm_lib.reverse``.

Equation numbers refer to Ho, Jain & Abbeel (2020), arXiv:2006.11239.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from . import validate

__all__ = ["Schedule", "linear_schedule", "cosine_schedule", "extract", "respace"]


class Schedule:
    """The variance schedule beta_1..beta_T and every quantity derived from it.

    Args:
        betas: 1-D array of the T forward-process variances, each in (0, 1).

    Attributes (float64 arrays of shape ``(T,)``, index convention in the module docstring):
        betas: beta_t.
        alphas: alpha_t = 1 - beta_t.
        alpha_bars: alpha_bar_t = prod_{s<=t} alpha_s.
        alpha_bars_prev: alpha_bar_{t-1}, with alpha_bar_0 = 1 (so ``alpha_bars_prev[0] == 1``).
        sqrt_alpha_bars, sqrt_one_minus_alpha_bars: the mean and std coefficients of eq. (4)
            (alpha_t and sigma_t in the notation of DPM-Solver, Lu et al. 2022).
        lambdas: lambda_t = log(alpha_t / sigma_t) = log sqrt(alpha_bar_t) - log sqrt(1 - alpha_bar_t),
            half the log signal-to-noise ratio, decreasing in t: the time variable of DPM-Solver++
            (Lu et al. 2022, arXiv:2211.01095), read by ``ddpm_lib.sampler``.
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
        # lambda_t = log(alpha_t / sigma_t) of DPM-Solver (Lu et al. 2022)
        self.lambdas = np.log(self.sqrt_alpha_bars) - np.log(self.sqrt_one_minus_alpha_bars)
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

    # --------------------------------------------------------------- input checks
    def check_inputs(self, t, *arrays, names):
        """Check a time index and same-shaped float arrays with a batch axis; return them as tensors.

        ``arrays`` are converted to float32 tensors (named ``names`` in errors) that must share
        one shape with a leading batch axis; ``t`` must be a code index in [0, T) (a scalar or one
        per batch entry). Returns ``(t, *arrays)``. Every method of this class and every
        conversion of ``ddpm_lib.parameterization`` starts with it.
        """
        xs = [validate.float_tensor(a, n) for a, n in zip(arrays, names)]
        ref = xs[0]
        validate.same_shape(names[0], ref, **dict(zip(names[1:], xs[1:])))
        if ref.shape.rank is not None and ref.shape.rank < 1:
            raise ValueError(f"{names[0]} must have a leading batch axis; got a scalar.")
        batch = ref.shape[0] if ref.shape.rank else None
        t = validate.time_index(t, self.timesteps, batch=batch)
        return (t, *xs)

    # --------------------------------------------------------- forward process
    def q_mean_variance(self, x0, t):
        """Mean and variance of q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), eq. (4)."""
        t, x0 = self.check_inputs(t, x0, names=("x0",))
        nd = x0.shape.rank
        mean = extract(self.sqrt_alpha_bars, t, nd) * x0
        return mean, extract(self.one_minus_alpha_bars, t, nd)

    def q_sample(self, x0, t, eps):
        """Sample x_t ~ q(x_t | x_0): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, eq. (4).

        ``eps`` is the forward noise, eps ~ N(0, I), of x_0's shape (the per-step sampling noise of
        the reverse process is called ``z``, as in Algorithm 2).
        """
        t, x0, eps = self.check_inputs(t, x0, eps, names=("x0", "eps"))
        nd = x0.shape.rank
        return (extract(self.sqrt_alpha_bars, t, nd) * x0
                + extract(self.sqrt_one_minus_alpha_bars, t, nd) * eps)

    def predict_x0(self, x_t, t, eps):
        """x_0 from x_t and the noise: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t).

        The formula lives in ``ddpm_lib.parameterization.eps_to_x0``, with the other conversions.
        """
        from .parameterization import eps_to_x0
        return eps_to_x0(self, x_t, t, eps)

    def predict_eps(self, x_t, t, x0):
        """The noise from x_t and x_0, eq. (4) solved for eps: the inverse of ``predict_x0``.

        eps = (x_t / sqrt(alpha_bar_t) - x_0) / sqrt(1 / alpha_bar_t - 1)

        The formula lives in ``ddpm_lib.parameterization.x0_to_eps``, with the other conversions.
        """
        from .parameterization import x0_to_eps
        return x0_to_eps(self, x_t, t, x0)

    # ------------------------------------------------------------- posterior
    def q_posterior(self, x0, x_t, t):
        """Mean and variance of q(x_{t-1} | x_t, x_0), eqs. (6)-(7).

        mu_tilde = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                   + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t,
        beta_tilde = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t.
        The variance is returned with shape ``(batch, 1, ..., 1)``.
        """
        t, x0, x_t = self.check_inputs(t, x0, x_t, names=("x0", "x_t"))
        nd = x0.shape.rank
        mean = (extract(self.posterior_mean_coef1, t, nd) * x0
                + extract(self.posterior_mean_coef2, t, nd) * x_t)
        return mean, extract(self.posterior_variance, t, nd)


def linear_schedule(timesteps=1000, beta_start=1e-4, beta_end=0.02):
    """Ho et al.'s schedule: betas rising linearly from ``beta_start`` to ``beta_end`` (Sec. 4)."""
    timesteps = validate.positive_int(timesteps, "timesteps")
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
    timesteps = validate.positive_int(timesteps, "timesteps")
    if not s >= 0:
        raise ValueError(f"s must be >= 0; got {s}.")
    if not 0 < max_beta < 1:
        raise ValueError(f"max_beta must lie in (0, 1); got {max_beta}.")

    def f(u):
        return math.cos((u / timesteps + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1.0 - f(i + 1) / f(i), max_beta) for i in range(timesteps)]
    return Schedule(np.array(betas, dtype=np.float64))


def extract(a, t, ndim=4, dtype=tf.float32, at_x0=None):
    """``a[t]``, read in float64 and cast to ``dtype``, shaped to broadcast over rank-``ndim`` images.

    ``a`` is one of a schedule's float64 arrays (e.g. ``schedule.alpha_bars``); ``t`` a scalar
    code time or a ``(batch,)`` vector, giving a scalar or a ``(batch, 1, ..., 1)`` tensor.
    Ho et al.'s ``_extract``; how the samplers and losses read a coefficient at code time t.

    ``at_x0``: the value of the quantity at x_0 itself, read for any ``t < 0`` (the target of a
    sampler's last step: alpha_bar = 1, sigma = 0, lambda = +inf there). Without it, ``t`` must
    be a valid index. Concrete times are checked (a clear ``ValueError``, not a gather error on CPU
    or a silent zero on GPU); inside ``tf.function`` the caller has checked them.
    """
    t = validate.time_index(t, len(a), allow_negative=at_x0 is not None)
    if at_x0 is None:
        coef = tf.cast(tf.gather(tf.constant(a, tf.float64), t), dtype)
    else:
        coef = tf.where(t >= 0, tf.gather(tf.constant(a, tf.float64), tf.maximum(t, 0)),
                        tf.constant(at_x0, tf.float64))
        coef = tf.cast(coef, dtype)
    if coef.shape.rank == 0:
        return coef
    return tf.reshape(coef, [-1] + [1] * (ndim - 1))


def respace(schedule, ts):
    """The schedule of a sampler that visits only the code times ``ts`` (Nichol & Dhariwal 2021, Sec. 4).

    With ``ts`` sorted increasingly as t_1 < ... < t_S, the new schedule has S steps with
    beta'_i = 1 - alpha_bar_{t_i} / alpha_bar_{t_{i-1}} (alpha_bar before t_1 is 1), so that its
    alpha_bar'_i equals alpha_bar_{t_i}: step i of the new schedule is step t_i of the old one.
    Where t_{i-1} = t_i - 1 this is beta_{t_i} itself, taken as is, so visiting every time gives
    back the same betas, bit for bit. ``ts`` may be in any order; each time at most once.
    """
    ts = np.asarray(ts)
    if ts.ndim != 1 or ts.size < 1 or ts.dtype.kind not in "iu":
        raise ValueError(f"ts must be a non-empty 1-D array of integer code times; got {ts!r}.")
    ts = np.sort(ts.astype(np.int64))
    if ts[0] < 0 or ts[-1] >= schedule.timesteps or np.any(np.diff(ts) == 0):
        raise ValueError(f"ts must be distinct code times in [0, {schedule.timesteps}); got {ts.tolist()}.")
    prev = np.append(-1, ts[:-1])
    abar_prev = np.where(prev >= 0, schedule.alpha_bars[np.maximum(prev, 0)], 1.0)
    betas = np.where(ts - prev == 1, schedule.betas[ts], 1.0 - schedule.alpha_bars[ts] / abar_prev)
    return Schedule(betas)
