"""Diffusion in continuous time: the VP SDE, its reverse SDE, the probability-flow ODE, Langevin dynamics.

Song et al. (2021, "Score-based generative modeling through stochastic differential equations",
Sec. 3.4) let the number of steps of DDPM's chain x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z go
to infinity with N beta_i -> beta(s), s = i / N in [0, 1]. The limit is the variance-preserving SDE

    dx = f(x, s) ds + g(s) dw,    f(x, s) = -1/2 beta(s) x,    g(s) = sqrt(beta(s)),

with beta(s) = beta_min + s (beta_max - beta_min); the linear schedule of Ho et al. is
beta_min = T beta_1 = 0.1, beta_max = T beta_T = 20. Its marginals are those of eq. (4) with

    alpha_bar(s) = exp(-int_0^s beta(u) du) = exp(-beta_min s - (beta_max - beta_min) s^2 / 2).

Run backwards in time, the same marginals come from the reverse SDE (Anderson 1982; Song et al.,
Sec. 3.2) and from the probability-flow ODE (Song et al., Sec. 4.3), whose drifts need only the
score grad_x log q_s(x):

    reverse SDE:  dx = [f(x, s) - g(s)^2 score(x, s)] ds + g(s) dw_bar    (s decreasing)
    PF-ODE:       dx = [f(x, s) - 1/2 g(s)^2 score(x, s)] ds.

Time convention: continuous s in [0, 1]; code time t (paper t + 1) sits at s = (t + 1) / T.
Everything here is float64 numpy; ``score_fn(x, s)`` maps points ``(n, d)`` and a float s to the
score ``(n, d)``: the exact score of ``ddpm_lib.mixture`` or a network's, through
``ddpm_lib.parameterization.eps_to_score``.
"""
from __future__ import annotations

import numpy as np

from . import validate

__all__ = ["VPSDE", "euler_maruyama", "probability_flow", "langevin"]


class VPSDE:
    """The variance-preserving SDE with a linear beta(s) on s in [0, 1] (Song et al. 2021, Sec. 3.4)."""

    def __init__(self, beta_min=0.1, beta_max=20.0):
        self.beta_min = validate.finite_number(beta_min, "beta_min", minimum=0.0)
        self.beta_max = validate.finite_number(beta_max, "beta_max", minimum=self.beta_min)
        if self.beta_max == 0:
            raise ValueError("beta_max must be a finite number > 0; got 0.0.")

    @classmethod
    def from_schedule(cls, schedule):
        """The VP SDE whose limit is a linear schedule: beta_min = T beta_1, beta_max = T beta_T."""
        b, T = schedule.betas, schedule.timesteps
        if T < 2 or not np.allclose(np.diff(b), (b[-1] - b[0]) / (T - 1), rtol=1e-6, atol=1e-12):
            raise ValueError(f"schedule must be a linear schedule with T >= 2; got {schedule!r}.")
        return cls(T * b[0], T * b[-1])

    def __repr__(self):
        return f"VPSDE(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"

    def beta(self, s):
        """beta(s) = beta_min + s (beta_max - beta_min)."""
        return self.beta_min + np.asarray(s, np.float64) * (self.beta_max - self.beta_min)

    def alpha_bar(self, s):
        """alpha_bar(s) = exp(-int_0^s beta) = exp(-beta_min s - (beta_max - beta_min) s^2 / 2)."""
        s = np.asarray(s, np.float64)
        return np.exp(-self.beta_min * s - 0.5 * (self.beta_max - self.beta_min) * s ** 2)

    def time_of(self, alpha_bar):
        """The s in [0, inf) with alpha_bar(s) = ``alpha_bar``: the root of
        (beta_max - beta_min) s^2 / 2 + beta_min s + log(alpha_bar) = 0."""
        a = np.asarray(alpha_bar, np.float64)
        if np.any(~(a > 0) | ~(a <= 1)):
            raise ValueError(f"alpha_bar must lie in (0, 1]; got {alpha_bar!r}.")
        c, b = 0.5 * (self.beta_max - self.beta_min), self.beta_min
        if c == 0:
            return -np.log(a) / b
        return (-b + np.sqrt(b * b - 4 * c * np.log(a))) / (2 * c)

    def drift(self, x, s):
        """f(x, s) = -1/2 beta(s) x."""
        return -0.5 * self.beta(s) * x

    def diffusion(self, s):
        """g(s) = sqrt(beta(s))."""
        return np.sqrt(self.beta(s))

    def reverse_drift(self, x, s, score):
        """f(x, s) - g(s)^2 score: the drift of the reverse-time SDE (Anderson 1982)."""
        return self.drift(x, s) - self.diffusion(s) ** 2 * score

    def ode_drift(self, x, s, score):
        """f(x, s) - 1/2 g(s)^2 score: the probability-flow ODE (Song et al. 2021, Sec. 4.3)."""
        return self.drift(x, s) - 0.5 * self.diffusion(s) ** 2 * score


def _grid(s_grid):
    s = np.asarray(s_grid, np.float64)
    if s.ndim != 1 or s.size < 2 or not np.all(np.isfinite(s)):
        raise ValueError(f"s_grid must be a 1-D array of at least 2 finite times; got {s_grid!r}.")
    return s


def euler_maruyama(sde, score_fn, x, s_grid, seed=0, trajectory=False):
    """Integrate the reverse SDE from s_grid[0] down to s_grid[-1] (decreasing times).

    Each step, with h = s_i - s_{i+1} > 0 and z ~ N(0, I):
        x <- x - reverse_drift(x, s_i) h + g(s_i) sqrt(h) z.
    Returns the final x, or with ``trajectory`` ``(x, xs)``, xs of shape (len(s_grid), n, d).
    """
    s = _grid(s_grid)
    if np.any(np.diff(s) >= 0):
        raise ValueError(f"s_grid must decrease strictly (the reverse SDE runs backwards); got {s_grid!r}.")
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    xs = [x]
    for s_i, s_next in zip(s[:-1], s[1:]):
        h = s_i - s_next
        score = score_fn(x, s_i)
        x = x - sde.reverse_drift(x, s_i, score) * h + sde.diffusion(s_i) * np.sqrt(h) * rng.standard_normal(x.shape)
        xs.append(x)
    return (x, np.stack(xs)) if trajectory else x


def probability_flow(sde, score_fn, x, s_grid, method="euler", trajectory=False):
    """Integrate the probability-flow ODE from s_grid[0] to s_grid[-1], in either direction.

    ``method="euler"``: x <- x + ode_drift(x, s_i) (s_{i+1} - s_i); ``"heun"``: the trapezoidal
    corrector on top (second order). Decreasing times generate (noise to data); increasing times
    encode (data to noise). Returns x, or with ``trajectory`` ``(x, xs)`` as ``euler_maruyama``.
    """
    s = _grid(s_grid)
    validate.one_of(method, ("euler", "heun"), "method")
    x = np.asarray(x, np.float64)
    xs = [x]
    for s_i, s_next in zip(s[:-1], s[1:]):
        h = s_next - s_i
        d = sde.ode_drift(x, s_i, score_fn(x, s_i))
        x_euler = x + d * h
        if method == "heun":
            d_next = sde.ode_drift(x_euler, s_next, score_fn(x_euler, s_next))
            x = x + 0.5 * (d + d_next) * h
        else:
            x = x_euler
        xs.append(x)
    return (x, np.stack(xs)) if trajectory else x


def langevin(score_fn, x, step_size, n_steps, seed=0, trajectory=False):
    """Langevin dynamics (Song & Ermon 2019, Sec. 2.2): x <- x + step_size / 2 * score(x) + sqrt(step_size) z.

    For a small ``step_size`` and many steps, x is distributed close to the density whose score
    ``score_fn(x)`` is (it takes the points only). Returns x, or ``(x, xs)`` with ``trajectory``.
    """
    step_size = validate.finite_number(step_size, "step_size", minimum=0.0)
    if step_size == 0:
        raise ValueError("step_size must be a finite number > 0; got 0.0.")
    n_steps = validate.positive_int(n_steps, "n_steps")
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    xs = [x]
    for _ in range(n_steps):
        x = x + 0.5 * step_size * score_fn(x) + np.sqrt(step_size) * rng.standard_normal(x.shape)
        xs.append(x)
    return (x, np.stack(xs)) if trajectory else x
