"""The reverse process: Algorithm 2 of Ho et al. (2020), and DDIM (Song et al., 2020).

``ddpm_step`` and ``ddim_step`` are single steps you can check by hand; ``sample`` runs the
whole chain as one compiled TensorFlow loop (``tf.while_loop`` under ``tf.function``): no Python
per step, no numpy round trips, and stateless random numbers, so a ``seed`` reproduces the
same images on every run. Index convention: see ``ddpm_lib.schedule`` (code t = paper t - 1).
"""
from __future__ import annotations

import hashlib
import logging
import weakref

import numpy as np
import tensorflow as tf

from .losses import reverse_variance

__all__ = ["ddpm_step", "ddim_step", "sampling_timesteps", "sample"]


def _as_float(x, name):
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise ValueError(f"{name} must be a float tensor or array; got dtype {x.dtype.name}.")
    return tf.cast(x, tf.float32)


def _scalar_t(schedule, t, name="t", allow_negative=False):
    """A scalar int32 time index; validated when its value is known."""
    if tf.is_symbolic_tensor(t):
        return tf.cast(t, tf.int32)
    arr = np.asarray(t)
    if arr.ndim != 0 or arr.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be a Python int or integer scalar shared by the batch; got {t!r}.")
    low = -1 if allow_negative else 0
    if not low <= int(arr) < schedule.timesteps:
        raise ValueError(
            f"{name}={int(arr)} is out of range; expected an integer in [{low}, {schedule.timesteps}).")
    return tf.constant(int(arr), tf.int32)


def _check_same_shape(ref, **others):
    for name, x in others.items():
        if x is not None and ref.shape.is_fully_defined() and x.shape.is_fully_defined() \
                and x.shape != ref.shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)} but x_t has {tuple(ref.shape)}.")


def ddpm_step(schedule, x_t, t, eps, noise, variance="posterior", clip_x0=False):
    """One step of Algorithm 2: x_{t-1} = mu_theta(x_t, t) + sigma_t z, with z = 0 at the last step.

    mu_theta = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps), eq. (11).
    sigma_t^2 is ``posterior_variance`` (beta_tilde_t, ``"posterior"``) or ``betas``
    (``"beta"``), the two choices of Sec. 3.2. ``t`` is a code index shared by the batch;
    at ``t == 0`` (paper t = 1) no noise is added and ``noise`` may be ``None``.

    ``clip_x0=True`` does what Ho et al.'s code does (``clip_denoised``): predict
    x0 = ``schedule.predict_x0(x_t, t, eps)``, clip it to [-1, 1], and take the posterior mean
    mu_tilde(x0, x_t) of eq. (7). Without clipping this is exactly eq. (11) (chapter 3 shows
    the algebra); with it, the x0 that the step moves towards stays in [-1, 1].
    """
    sigma2 = reverse_variance(schedule, variance)
    t = _scalar_t(schedule, t)
    x_t = _as_float(x_t, "x_t")
    eps = _as_float(eps, "eps")
    if clip_x0:
        x0_pred = tf.clip_by_value(schedule.predict_x0(x_t, t, eps), -1.0, 1.0)
        mean, _ = schedule.q_posterior(x0_pred, x_t, t)
    else:
        mean = schedule.p_mean(x_t, t, eps)
    if noise is None:
        if not tf.is_symbolic_tensor(t) and int(t) > 0:
            raise ValueError(f"noise is required at t={int(t)} > 0 (only t == 0 adds no noise).")
        return mean
    noise = _as_float(noise, "noise")
    _check_same_shape(x_t, eps=eps, noise=noise)
    sigma = tf.cast(tf.sqrt(tf.gather(tf.constant(sigma2, tf.float64), t)), tf.float32)
    sigma = tf.where(t > 0, sigma, tf.zeros_like(sigma))
    return mean + sigma * noise


def ddim_step(schedule, x_t, t, t_prev, eps, eta=0.0, noise=None, clip_x0=False):
    """One generalized DDIM step from code time ``t`` to ``t_prev < t`` (Song et al. 2020, eq. 12).

    x_prev = sqrt(a_prev) x0_pred + sqrt(1 - a_prev - sigma^2) eps + sigma z,
    x0_pred = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t),
    sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev),
    where a = alpha_bar. ``t_prev < 0`` means a_prev = 1 (the final step, to x_0).
    ``eta = 0`` is deterministic DDIM; ``eta = 1`` has the variance of DDPM's posterior.

    ``clip_x0=True`` clips x0_pred to [-1, 1] and recomputes eps from the clipped x0
    (``schedule.predict_eps``), so both terms of the update agree with each other.
    """
    t = _scalar_t(schedule, t)
    t_prev = _scalar_t(schedule, t_prev, name="t_prev", allow_negative=True)
    if not tf.is_symbolic_tensor(t) and not tf.is_symbolic_tensor(t_prev) and int(t_prev) >= int(t):
        raise ValueError(f"t_prev ({int(t_prev)}) must be smaller than t ({int(t)}).")
    if isinstance(eta, (int, float)) and eta < 0:
        raise ValueError(f"eta must be >= 0; got {eta}.")
    x_t = _as_float(x_t, "x_t")
    eps = _as_float(eps, "eps")
    _check_same_shape(x_t, eps=eps, noise=None if noise is None else tf.convert_to_tensor(noise))

    alpha_bars = tf.constant(schedule.alpha_bars, tf.float64)
    a_t = tf.gather(alpha_bars, t)
    a_prev = tf.where(t_prev >= 0, tf.gather(alpha_bars, tf.maximum(t_prev, 0)),
                      tf.constant(1.0, tf.float64))
    eta64 = tf.cast(eta, tf.float64)
    sigma = eta64 * tf.sqrt((1.0 - a_prev) / (1.0 - a_t)) * tf.sqrt(1.0 - a_t / a_prev)
    c_x0 = tf.cast(tf.sqrt(a_prev), tf.float32)
    c_eps = tf.cast(tf.sqrt(tf.maximum(1.0 - a_prev - sigma ** 2, 0.0)), tf.float32)

    x0_pred = schedule.predict_x0(x_t, t, eps)
    if clip_x0:
        x0_pred = tf.clip_by_value(x0_pred, -1.0, 1.0)
        eps = schedule.predict_eps(x_t, t, x0_pred)
    x_prev = c_x0 * x0_pred + c_eps * eps
    if noise is None:
        if isinstance(eta, (int, float)) and eta > 0:
            raise ValueError(f"noise is required when eta > 0 (got eta={eta}).")
        return x_prev
    return x_prev + tf.cast(sigma, tf.float32) * _as_float(noise, "noise")


def sampling_timesteps(timesteps, steps=None):
    """The code times a sampler visits, in decreasing order, and for each the time it steps to.

    ``steps=None`` (or ``timesteps``) visits every t = T-1, ..., 0. Fewer steps pick ``steps``
    evenly spaced integers from T-1 down to 0 (both ends included), as DDIM does.
    Returns ``(ts, ts_prev)``, int32 arrays; ``ts_prev[-1] == -1`` means "to x_0".
    """
    if steps is None:
        steps = timesteps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be an integer in [1, {timesteps}]; got {steps!r}.")
    if steps == 1:
        ts = np.array([timesteps - 1])
    else:
        ts = np.round(np.linspace(timesteps - 1, 0, steps)).astype(np.int64)
    ts = ts.astype(np.int32)
    ts_prev = np.append(ts[1:], -1).astype(np.int32)
    return ts, ts_prev


_CACHE = weakref.WeakKeyDictionary()


class _NoRetracingWarning(logging.Filter):
    """Each (model, shape, method, steps) gets its own compiled loop, on purpose: TensorFlow's
    "triggered tf.function retracing" warning would be noise here."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetracingWarning())


def _schedule_key(schedule):
    return hashlib.sha1(schedule.betas.tobytes()).hexdigest()


def sample(model, schedule, shape, method="ddpm", steps=None, eta=0.0, seed=None,
           return_trajectory=False, variance="posterior", jit_compile=False, clip_x0=False,
           x_T=None):
    """Generate images by running the reverse process from x_T ~ N(0, I).

    Args:
        model: called as ``model(x_t, t)`` with ``t`` int32 of shape (batch,); returns eps.
        schedule: the :class:`~ddpm_lib.schedule.Schedule` the model was trained with.
        shape: ``(batch, height, width, channels)``; may be ``None`` when ``x_T`` is given.
        method: ``"ddpm"`` (Algorithm 2, every step) or ``"ddim"``.
        steps: number of model calls; ``None`` means all T. DDPM always uses all T.
        eta: DDIM's stochasticity (0 = deterministic); ignored by DDPM.
        seed: integer for reproducible samples; ``None`` draws a fresh one.
        return_trajectory: also return every intermediate x_t, shape (steps + 1, *shape),
            starting with x_T.
        variance: DDPM's sigma_t^2, ``"posterior"`` (beta_tilde) or ``"beta"``.
        jit_compile: compile the loop with XLA. XLA's random-number kernels derive another
            stream from the same seed for the per-step noise, so stochastic XLA samples are
            reproducible among themselves but differ from non-XLA samples of the same seed.
        clip_x0: clip the predicted x_0 to [-1, 1] in every step (see ``ddpm_step`` and
            ``ddim_step``); ``False`` is the plain formula of the papers.
        x_T: start from this tensor instead of drawing x_T from ``seed`` (DDIM with eta = 0
            is then a deterministic map x_T -> x_0, used for interpolation in chapter 8).
            The seed still drives the per-step noise.

    Returns:
        x_0 as a float32 tensor in (about) [-1, 1]; with ``return_trajectory``, ``(x_0, trajectory)``.
    """
    if x_T is not None:
        x_T = _as_float(x_T, "x_T")
        if shape is None:
            shape = tuple(x_T.shape)
        elif tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape is {tuple(shape)}; "
                             "they must match (or pass shape=None).")
    shape = _check_shape(shape, model)
    if method not in ("ddpm", "ddim"):
        raise ValueError(f'method must be "ddpm" or "ddim"; got {method!r}.')
    if method == "ddpm" and steps not in (None, schedule.timesteps):
        raise ValueError(
            f"DDPM runs all {schedule.timesteps} steps (got steps={steps}); use method='ddim' "
            "for fewer steps.")
    reverse_variance(schedule, variance)       # validates the name
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta < 0:
        raise ValueError(f"eta must be a number >= 0; got {eta!r}.")
    ts, ts_prev = sampling_timesteps(schedule.timesteps, steps)
    if seed is None:
        seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer or None; got {seed!r}.")

    key = (_schedule_key(schedule), shape, method, ts.tobytes(), float(eta), variance,
           bool(return_trajectory), bool(jit_compile), bool(clip_x0))
    try:
        per_model = _CACHE.setdefault(model, {})
    except TypeError:            # a model that cannot be weak-referenced: no cache
        per_model = {}
    if key not in per_model:
        per_model[key] = _build_loop(model, schedule, shape, method, ts, ts_prev, float(eta),
                                     variance, bool(return_trajectory), bool(jit_compile),
                                     bool(clip_x0))
    seed = tf.constant(int(seed), tf.int64)
    if x_T is None:
        x_T = tf.random.stateless_normal(shape, seed=tf.stack([seed, tf.constant(0, tf.int64)]),
                                         alg="philox")
    x0, traj = per_model[key](seed, x_T)
    return (x0, traj) if return_trajectory else x0


def _check_shape(shape, model):
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (batch, height, width, channels); got {shape!r}.") from None
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"shape must be (batch, height, width, channels) of positive ints; got {shape}.")
    channels = getattr(model, "image_channels", None)
    if channels is not None and shape[-1] != channels:
        raise ValueError(
            f"the model makes {channels}-channel images but shape asks for {shape[-1]} channels; "
            f"expected shape (batch, height, width, {channels}).")
    return shape


def _build_loop(model, schedule, shape, method, ts, ts_prev, eta, variance, trajectory, jit,
                clip_x0):
    n = len(ts)
    batch = shape[0]

    def run(seed, x):
        ts_c = tf.constant(ts)
        ts_prev_c = tf.constant(ts_prev)
        traj = tf.TensorArray(tf.float32, size=n + 1 if trajectory else 1)
        traj = traj.write(0, x)
        for i in tf.range(n):
            t = ts_c[i]
            eps = tf.cast(model(x, tf.fill([batch], t), training=False), tf.float32)
            noise = tf.random.stateless_normal(
                shape, seed=tf.stack([seed, tf.cast(i, tf.int64) + 1]), alg="philox")
            if method == "ddpm":
                x = ddpm_step(schedule, x, t, eps, noise, variance=variance, clip_x0=clip_x0)
            else:
                x = ddim_step(schedule, x, t, ts_prev_c[i], eps, eta=eta, noise=noise,
                              clip_x0=clip_x0)
            if trajectory:
                traj = traj.write(i + 1, x)
        return x, traj.stack()

    return tf.function(run, jit_compile=jit, autograph=True)
