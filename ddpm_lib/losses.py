"""The training objective: the variational bound, its weights, and L_simple.

Ho et al. (2020) write the negative ELBO as L = L_T + sum_{t>1} L_{t-1} + L_0 (eq. 5), where each
L_{t-1} is a KL divergence between two Gaussians. With the eps-parameterization (eq. 11)
that KL is a weighted squared error on the noise (eq. 12),

    L_{t-1} = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) * ||eps - eps_theta(x_t, t)||^2 + C,

and the paper drops the weight to get L_simple (eq. 14). Index convention: see ``ddpm_lib.schedule``.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import validate
from .reverse import p_mean, p_variance
from .schedule import extract

__all__ = ["normal_kl", "loss_weights", "vlb_term", "prior_kl", "simple_loss"]


def normal_kl(mean1, var1, mean2, var2):
    """KL( N(mean1, var1) || N(mean2, var2) ), elementwise, for diagonal Gaussians.

    KL = 1/2 [ log(var2 / var1) + (var1 + (mean1 - mean2)^2) / var2 - 1 ].
    Works on numpy arrays and numbers (in float64) and on tensors (in float64 if any input is a
    float64 tensor, else float32). Concrete variances must be > 0.
    """
    args = (mean1, var1, mean2, var2)
    if all(isinstance(a, (int, float, np.ndarray, np.generic)) for a in args):
        m1, v1, m2, v2 = (np.asarray(a, np.float64) for a in args)
        log = np.log
    else:
        dtype = tf.float64 if any(tf.is_tensor(a) and a.dtype == tf.float64 for a in args) else tf.float32
        m1, v1, m2, v2 = (tf.cast(a, dtype) if tf.is_tensor(a) else tf.constant(a, dtype) for a in args)
        log = tf.math.log
    if not any(tf.is_symbolic_tensor(v) for v in (v1, v2)) and (np.any(np.asarray(v1) <= 0)
                                                                or np.any(np.asarray(v2) <= 0)):
        raise ValueError("variances must be > 0 in normal_kl.")
    return 0.5 * (log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0)


def loss_weights(schedule, variance="posterior"):
    """lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)), the weight L_simple drops (eq. 12).

    With sigma_t^2 = beta_tilde_t the weight at code t = 0 (paper t = 1) is undefined because
    beta_tilde_1 = 0; that term is the decoder L_0, not a KL, and the entry is ``nan``.
    With sigma_t^2 = beta_t the formula gives 1 / (2 alpha_1) there (1 - alpha_bar_1 = beta_1): the
    weight of L_0 when the discrete decoder is approximated by the Gaussian density times the bin
    width, ignoring sigma_1^2 and edge effects, as Ho et al. note under eq. 12.
    """
    sigma2 = p_variance(schedule, variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = schedule.betas ** 2 / (2.0 * sigma2 * schedule.alphas * (1.0 - schedule.alpha_bars))
    w = np.where(sigma2 > 0, w, np.nan)
    return w


def vlb_term(schedule, x0, x_t, t, eps_pred, variance="posterior"):
    """L_{t-1} = KL( q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t) ), summed over pixels, eq. (5).

    Both Gaussians have variance sigma_t^2 I when ``variance="posterior"``; for ``"beta"`` the
    KL also has a constant from the variance mismatch. Needs t >= 1 (code index).
    Returns a float32 tensor of shape (batch,).
    """
    sigma2 = p_variance(schedule, variance)
    t = validate.time_index(t, schedule.timesteps)
    if not tf.is_symbolic_tensor(t) and tf.size(t) > 0 and int(tf.reduce_min(t)) < 1:
        raise ValueError("t must be >= 1 in vlb_term (code t >= 1 is paper t >= 2); code t = 0 is "
                         "the decoder L_0, not a KL.")
    mean_q, var_q = schedule.q_posterior(x0, x_t, t)
    mean_p = p_mean(schedule, x_t, t, eps_pred)
    var_p = extract(sigma2, t, mean_q.shape.rank)
    kl = normal_kl(mean_q, var_q, mean_p, var_p)
    return tf.reduce_sum(kl, axis=list(range(1, kl.shape.rank)))


def prior_kl(schedule, x0):
    """L_T = KL( q(x_T | x_0) || N(0, I) ), summed over pixels; no learnable part (Sec. 3.1).

    Computed in float64: with alpha_bar_T ~ 4e-5 the terms of the KL nearly cancel.
    """
    x0 = tf.convert_to_tensor(x0)
    validate.float_tensor(x0, "x0")                  # integer images (e.g. uint8) are refused
    x0 = tf.cast(x0, tf.float64)
    a = float(schedule.alpha_bars[-1])
    kl = normal_kl(np.sqrt(a) * x0, 1.0 - a, 0.0, 1.0)
    return tf.cast(tf.reduce_sum(kl, axis=list(range(1, kl.shape.rank))), tf.float32)


def simple_loss(eps, eps_pred, per_example=False):
    """L_simple = E ||eps - eps_theta(x_t, t)||^2, as a mean over every element (eq. 14).

    ``per_example=True`` returns the mean over each example's pixels, shape (batch,), so that
    replicas of a ``tf.distribute`` strategy can average over the global batch.
    """
    eps = tf.convert_to_tensor(eps, tf.float32)
    eps_pred = tf.cast(tf.convert_to_tensor(eps_pred), tf.float32)
    validate.same_shape("eps", eps, eps_pred=eps_pred)
    sq = tf.square(eps - eps_pred)
    if per_example:
        return tf.reduce_mean(sq, axis=list(range(1, sq.shape.rank)))
    return tf.reduce_mean(sq)
