"""The reverse process p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I): its mean, its
variance, and DDIM's sigma(eta).

Every sampler (``ddpm_lib.sampler``) and the variational bound (``ddpm_lib.losses``) take these
from here. Equation numbers: Ho, Jain & Abbeel (2020) unless said otherwise; Song, Meng & Ermon
(2020), "Denoising Diffusion Implicit Models", for DDIM. Index convention: see ``ddpm_lib.schedule``.
"""
from __future__ import annotations

import tensorflow as tf

from . import validate
from .schedule import extract

__all__ = ["p_mean", "p_variance", "ddim_sigma"]


def p_mean(schedule, x_t, t, eps):
    """mu_theta(x_t, t) in the eps form, eq. (11).

    mu_theta = 1 / sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps_theta(x_t, t))
    """
    t, x_t, eps = schedule.check_inputs(t, x_t, eps, names=("x_t", "eps"))
    nd = x_t.shape.rank
    return extract(schedule.sqrt_recip_alphas, t, nd) * (x_t - extract(schedule.eps_coef, t, nd) * eps)


def p_variance(schedule, variance="posterior"):
    """sigma_t^2 for every t, float64 of shape (T,): the two choices of Sec. 3.2.

    ``"posterior"``: beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t (optimal for
    x_0 fixed to one point; 0 at code t = 0); ``"beta"``: beta_t (optimal for x_0 ~ N(0, I)).
    """
    validate.one_of(variance, ("posterior", "beta"), "variance")
    return schedule.posterior_variance if variance == "posterior" else schedule.betas


def ddim_sigma(alpha_bar, alpha_bar_prev, eta):
    """DDIM's noise scale, Song et al. eq. (16), computed in float64:

    sigma(eta) = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * sqrt(1 - alpha_bar / alpha_bar_prev).

    ``eta`` in [0, 1]: ``eta = 1`` gives sqrt(beta_tilde) of DDPM's posterior (for a step
    t -> t - 1); ``eta = 0`` is deterministic DDIM.
    """
    if not tf.is_symbolic_tensor(eta):           # a number, or a tensor with a value
        eta = validate.eta(eta.numpy().item() if tf.is_tensor(eta) else eta)
    a_t, a_prev, eta = (tf.cast(v, tf.float64) if tf.is_tensor(v) else tf.constant(v, tf.float64)
                        for v in (alpha_bar, alpha_bar_prev, eta))    # a Python eta stays float64
    return eta * tf.sqrt((1.0 - a_prev) / (1.0 - a_t)) * tf.sqrt(1.0 - a_t / a_prev)
