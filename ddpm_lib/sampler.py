"""Sampling: Algorithm 2 of Ho et al. (2020), respaced DDPM (Nichol & Dhariwal, 2021), DDIM
(Song et al., 2020) and DPM-Solver++(2M) (Lu et al., 2022).

``ddpm_step``, ``ddim_step`` and ``dpm_solver_step`` are single steps you can check by hand; each
returns ``(x_prev, x0_pred)``, the next x and the x_0 it predicts. ``ddpm_loop``, ``ddim_loop`` and
``dpm_solver_loop`` are the whole chains as plain Python; ``sample`` runs the same loop functions
compiled (``tf.function``, one ``tf.while_loop``): no Python per step, no numpy round trips, and
stateless random numbers, so a ``seed`` reproduces the same images on every run. Index convention:
see ``ddpm_lib.schedule`` (code t = paper t - 1). The mean, the variance and DDIM's sigma(eta) come
from ``ddpm_lib.reverse``.

DPM-Solver++ notation (Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", arXiv:2211.01095), in terms of this library's alpha_bar (a code time t):

    alpha_t  = sqrt(alpha_bar_t)             the mean coefficient of q(x_t | x_0), eq. (4) of Ho et al.
                                             (``Schedule.sqrt_alpha_bars``)
    sigma_t  = sqrt(1 - alpha_bar_t)         its standard deviation (``Schedule.sqrt_one_minus_alpha_bars``)
    lambda_t = log(alpha_t / sigma_t)        half the log signal-to-noise ratio, decreasing in t
                                             (``Schedule.lambdas``)
    x_theta(x_t, t) = (x_t - sigma_t eps_theta(x_t, t)) / alpha_t     the data prediction
                                             (``Schedule.predict_x0``)
    t_0 > t_1 > ... > t_M                    the visited times (``dpm_solver_timesteps``); the paper's
                                             step i goes from t_{i-1} to t_i
    h_i = lambda_{t_i} - lambda_{t_{i-1}}    the step size in lambda (> 0)
    r_i = h_{i-1} / h_i                      the ratio of the last two step sizes
    D_i = (1 + 1/(2 r_i)) x_theta(t_{i-1}) - 1/(2 r_i) x_theta(t_{i-2})
                                             the second-order data term of Algorithm 2

The end point t_M is x_0 itself (alpha = 1, sigma = 0, lambda = +inf; the code time -1, as DDIM's
``t_prev = -1``).

Classifier-free guidance (Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022): a
class-conditional model (``HoUNet(num_classes=K)``) gives every loop the eps of ``guided_eps``,

    eps~(x_t, t, y) = (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, null)      (their eq. 6)

with guidance strength w >= 0: w = 0 is plain conditional sampling, larger w trades diversity
for images more typical of the class y.
"""
from __future__ import annotations

import collections
import functools
import warnings
import weakref

import numpy as np
import tensorflow as tf

from . import validate
from .checkpoint import schedule_hash
from .reverse import ddim_sigma, p_mean, p_variance
from .schedule import Schedule, extract, respace

__all__ = ["Step", "ddpm_step", "ddim_step", "dpm_solver_step", "sampling_timesteps",
           "dpm_solver_timesteps", "guided_eps", "check_guidance", "ddpm_loop", "ddim_loop",
           "dpm_solver_loop", "sample"]

Step = collections.namedtuple("Step", ["x_prev", "x0_pred"])
Step.__doc__ = """One reverse step's result: ``x_prev`` (the next x) and ``x0_pred``, the x_0 predicted from (x_t, eps)."""


def ddpm_step(schedule, x_t, t, eps, z, variance="posterior", clip_x0=False):
    """One step of Algorithm 2: x_{t-1} = mu_theta(x_t, t) + sigma_t z, with z = 0 at the last step.

    mu_theta = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps), eq. (11).
    sigma_t^2 is beta_tilde_t (``"posterior"``) or beta_t (``"beta"``), the two choices of
    Sec. 3.2 (``reverse.p_variance``). ``t`` is a code index shared by the batch; at ``t == 0``
    (paper t = 1) no noise is added and ``z`` may be ``None``.

    ``clip_x0=True`` does what Ho et al.'s code does (``clip_denoised``): clip the predicted x0
    to [-1, 1] and take the posterior mean mu_tilde(x0, x_t) of eq. (7). Without clipping this is
    exactly eq. (11) (chapter 3 shows the algebra).

    Returns ``Step(x_prev, x0_pred)``, with x0_pred = ``schedule.predict_x0(x_t, t, eps)``
    (clipped with ``clip_x0``).
    """
    sigma = np.sqrt(p_variance(schedule, variance))
    t = validate.time_index(t, schedule.timesteps, scalar=True)
    x_t = validate.float_tensor(x_t, "x_t")
    eps = validate.float_tensor(eps, "eps")
    x0_pred = schedule.predict_x0(x_t, t, eps)
    if clip_x0:
        x0_pred = tf.clip_by_value(x0_pred, -1.0, 1.0)
        mean, _ = schedule.q_posterior(x0_pred, x_t, t)
    else:
        mean = p_mean(schedule, x_t, t, eps)
    if z is None:
        if not tf.is_symbolic_tensor(t) and int(t) > 0:
            raise ValueError(f"z must be given at t={int(t)} > 0 (only t == 0 adds no noise); got None.")
        return Step(mean, x0_pred)
    z = validate.float_tensor(z, "z")
    validate.same_shape("x_t", x_t, eps=eps, z=z)
    sigma = tf.where(t > 0, extract(sigma, t), 0.0)
    return Step(mean + sigma * z, x0_pred)


def ddim_step(schedule, x_t, t, t_prev, eps, eta=0.0, z=None, clip_x0=False):
    """One generalized DDIM step from code time ``t`` to ``t_prev < t`` (Song et al. 2020, eq. 12).

    x_prev = sqrt(a_prev) x0_pred + sqrt(1 - a_prev - sigma^2) eps + sigma z,
    x0_pred = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t),   sigma = ``reverse.ddim_sigma(a_t, a_prev, eta)``,
    where a = alpha_bar. Any ``t_prev < 0`` means a_prev = 1 (the final step, to x_0).
    ``eta`` in [0, 1]: ``eta = 0`` is deterministic DDIM; ``eta = 1`` has the variance of DDPM's posterior.

    ``clip_x0=True`` clips x0_pred to [-1, 1] and recomputes eps from the clipped x0
    (``schedule.predict_eps``), so both terms of the update agree with each other.
    Returns ``Step(x_prev, x0_pred)``.
    """
    t = validate.time_index(t, schedule.timesteps, scalar=True)
    t_prev = validate.earlier_time(t_prev, t, schedule.timesteps)
    if not tf.is_symbolic_tensor(eta):           # a number, or a tensor with a value
        eta = validate.eta(eta.numpy().item() if tf.is_tensor(eta) else eta)
    x_t = validate.float_tensor(x_t, "x_t")
    eps = validate.float_tensor(eps, "eps")
    if z is not None:
        z = validate.float_tensor(z, "z")
    validate.same_shape("x_t", x_t, eps=eps, z=z)
    if z is None and not tf.is_tensor(eta) and eta > 0:
        raise ValueError(f"z must be given when eta > 0 (eta={eta}); got None.")

    a_t = extract(schedule.alpha_bars, t, dtype=tf.float64)
    a_prev = extract(schedule.alpha_bars, t_prev, dtype=tf.float64, at_x0=1.0)
    sigma = ddim_sigma(a_t, a_prev, eta)
    c_x0 = tf.cast(tf.sqrt(a_prev), tf.float32)
    c_eps = tf.cast(tf.sqrt(tf.maximum(1.0 - a_prev - sigma ** 2, 0.0)), tf.float32)

    x0_pred = schedule.predict_x0(x_t, t, eps)
    if clip_x0:
        x0_pred = tf.clip_by_value(x0_pred, -1.0, 1.0)
        eps = schedule.predict_eps(x_t, t, x0_pred)
    x_prev = c_x0 * x0_pred + c_eps * eps
    if z is None:
        return Step(x_prev, x0_pred)
    return Step(x_prev + tf.cast(sigma, tf.float32) * z, x0_pred)


def dpm_solver_step(schedule, x_t, t, t_prev, eps, x0_last=None, t_last=None, clip_x0=False):
    """One step of DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) from code time ``t`` to ``t_prev < t``.

    With x_theta = ``schedule.predict_x0(x_t, t, eps)`` and h = lambda_{t_prev} - lambda_t (notation:
    module docstring), the step is

        x_prev = sigma_{t_prev} / sigma_t * x_t - alpha_{t_prev} (e^{-h} - 1) D,

    first order with D = x_theta (DPM-Solver++(1), the same update as DDIM with eta = 0), or,
    given the data prediction ``x0_last`` of the previous model call at code time ``t_last > t``,
    second order with r = (lambda_t - lambda_{t_last}) / h and
    D = (1 + 1/(2r)) x_theta - 1/(2r) x0_last.
    Any ``t_prev < 0`` means x_0 (alpha = 1, sigma = 0, lambda = +inf): the step is then first order
    whatever ``x0_last`` (r = 0 there, where the second-order D is undefined) and returns x_theta.
    The coefficients are computed in float64 and cast to float32.

    ``clip_x0=True`` clips x_theta to [-1, 1] (static thresholding, which a data-prediction
    solver can apply directly); ``x0_last`` is then the previous clipped prediction.
    Returns ``Step(x_prev, x0_pred)``, with x0_pred = x_theta (the ``x0_last`` of the next step).
    """
    t = validate.time_index(t, schedule.timesteps, scalar=True)
    t_prev = validate.earlier_time(t_prev, t, schedule.timesteps)
    if (x0_last is None) != (t_last is None):
        raise ValueError("x0_last and t_last must be given together (second order) or both left "
                         f"out (first order); got x0_last={'None' if x0_last is None else 'a tensor'} "
                         f"and t_last={t_last!r}.")
    x_t = validate.float_tensor(x_t, "x_t")
    eps = validate.float_tensor(eps, "eps")
    if x0_last is not None:
        t_last = validate.time_index(t_last, schedule.timesteps, name="t_last", scalar=True)
        if not tf.is_symbolic_tensor(t) and not tf.is_symbolic_tensor(t_last) and int(t_last) <= int(t):
            raise ValueError(f"t_last must be larger than t={int(t)} (the previous model call "
                             f"came before this one); got {int(t_last)}.")
        x0_last = validate.float_tensor(x0_last, "x0_last")
    validate.same_shape("x_t", x_t, eps=eps, x0_last=x0_last)

    sigma_t = extract(schedule.sqrt_one_minus_alpha_bars, t, dtype=tf.float64)
    lambda_t = extract(schedule.lambdas, t, dtype=tf.float64)
    # at t_prev < 0, x_0 itself: alpha = 1, sigma = 0, lambda = +inf
    alpha_prev = extract(schedule.sqrt_alpha_bars, t_prev, dtype=tf.float64, at_x0=1.0)
    sigma_prev = extract(schedule.sqrt_one_minus_alpha_bars, t_prev, dtype=tf.float64, at_x0=0.0)
    lambda_prev = extract(schedule.lambdas, t_prev, dtype=tf.float64, at_x0=np.inf)
    h = lambda_prev - lambda_t                                   # h_i
    c_x = tf.cast(sigma_prev / sigma_t, tf.float32)              # sigma_{t_i} / sigma_{t_{i-1}}
    c_d = tf.cast(-alpha_prev * tf.math.expm1(-h), tf.float32)   # -alpha_{t_i} (e^{-h_i} - 1)

    x0_pred = schedule.predict_x0(x_t, t, eps)                   # x_theta(x_{t_{i-1}}, t_{i-1})
    if clip_x0:
        x0_pred = tf.clip_by_value(x0_pred, -1.0, 1.0)
    d = x0_pred                                                  # first order: D = x_theta
    if x0_last is not None:
        lambda_last = extract(schedule.lambdas, t_last, dtype=tf.float64)
        r = (lambda_t - lambda_last) / h                         # r_i = h_{i-1} / h_i
        half_r = tf.where(t_prev >= 0, 1.0 / (2.0 * r), tf.constant(0.0, tf.float64))
        half_r = tf.cast(half_r, tf.float32)                     # 1 / (2 r_i); 0 at the step to x_0
        d = (1.0 + half_r) * x0_pred - half_r * x0_last          # D_i
    return Step(c_x * x_t + c_d * d, x0_pred)


def _timesteps_and_steps(timesteps, steps):
    """``(T, S)`` as ints, S = ``steps`` (``None`` means T); the one check of ``steps`` for every sampler."""
    timesteps = validate.positive_int(timesteps, "timesteps")
    if steps is None:
        steps = timesteps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be an integer in [1, {timesteps}]; got {steps!r}.")
    return timesteps, int(steps)


def sampling_timesteps(timesteps, steps=None):
    """The code times a sampler visits, in decreasing order, and for each the time it steps to.

    With S = ``steps`` (``None`` means S = T = ``timesteps``) the visited times are
    ``ts[i] = round((T - 1) * (S - 1 - i) / (S - 1))`` for i = 0, ..., S - 1, rounding halves to
    even (``np.round``): S evenly spaced integers from T - 1 down to 0, both ends included, all
    distinct; S = T gives every t = T - 1, ..., 0 and S = 1 gives the single time T - 1.
    ``ts_prev[i] = ts[i + 1]``, and ``ts_prev[-1] = -1`` means "to x_0".
    DDIM and respaced DDPM both visit these times. Returns ``(ts, ts_prev)``, int32 arrays.
    """
    timesteps, steps = _timesteps_and_steps(timesteps, steps)
    if steps == 1:
        ts = np.array([timesteps - 1])
    else:
        ts = np.round(np.linspace(timesteps - 1, 0, steps)).astype(np.int64)
    ts = ts.astype(np.int32)
    ts_prev = np.append(ts[1:], -1).astype(np.int32)
    return ts, ts_prev


def dpm_solver_timesteps(schedule, steps):
    """The code times DPM-Solver++ visits, uniform in lambda, and for each the time it steps to.

    With S = ``steps`` (``None`` means S = T, the schedule's) and lambda_t = log(alpha_t / sigma_t)
    (``schedule.lambdas``), the targets are S values evenly spaced in lambda from lambda_{T-1} to
    lambda_0, both ends included (S = 1: lambda_{T-1} alone). Our models take integer t, so each target goes to the code time whose lambda is nearest
    (the smaller t on a tie), and the times are then made distinct: ``ts[0] = T - 1`` and
    ``ts[i] = clip(nearest_i, S - 1 - i, ts[i - 1] - 1)``, which keeps them strictly decreasing,
    leaves room for the rest, and ends at ``ts[-1] = 0``; S = T gives every t = T - 1, ..., 0.
    As in ``sampling_timesteps``, ``ts_prev[i] = ts[i + 1]`` and ``ts_prev[-1] = -1``, x_0 itself
    (alpha_bar = 1, lambda = +inf), reached by a first-order step from code time 0 that returns
    x0_pred. The S model calls are made at ``ts``.

    Why uniform in lambda: the solver integrates in lambda (h_i are lambda steps), and Lu et al.'s
    code recommends this spacing ("logSNR") for low-resolution images and uniform time for
    high-resolution (and guided) sampling; this library's models are 28-32 pixel, unconditional,
    pixel-space ones (Fashion-MNIST, MNIST, CIFAR-10). lambda_{T-1} and lambda_0 are the authors'
    end points for a discrete-time model (their continuous t = 1 and t = 1/N).
    Returns ``(ts, ts_prev)``, int32 arrays.
    """
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule (e.g. linear_schedule(1000)); got type "
                         f"{type(schedule).__name__}.")
    timesteps, steps = _timesteps_and_steps(schedule.timesteps, steps)
    lam = schedule.lambdas                                                      # lambda_t
    targets = np.linspace(lam[-1], lam[0], steps) if steps > 1 else lam[-1:]
    ts = [timesteps - 1]
    for i in range(1, steps):
        nearest = int(np.argmin(np.abs(lam - targets[i])))
        ts.append(int(np.clip(nearest, steps - 1 - i, ts[-1] - 1)))
    ts = np.array(ts, np.int32)
    ts_prev = np.append(ts[1:], -1).astype(np.int32)
    return ts, ts_prev


def guided_eps(model, x_t, t, labels=None, guidance=0.0):
    """The eps every sampling loop uses: eps_theta(x_t, t), or with ``labels`` y the guided

        eps~ = (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, null)    (Ho & Salimans 2022, eq. 6)

    with w = ``guidance`` (a finite number >= 0) and null the model's null class
    (``model.num_classes``). For w > 0 both terms come from *one* model call on the batch of
    2 x batch images [x_t, x_t] with labels [y, null]; w = 0 is plain conditional sampling, one
    call on (x_t, t, y). ``t``: int32 code times of shape (batch,). Returns float32 eps.
    """
    labels, guidance = check_guidance(model, labels, guidance, x_t.shape[0])
    if labels is None:                                           # unconditional
        return tf.cast(model(x_t, t, training=False), tf.float32)
    if guidance == 0:                                            # conditional
        return tf.cast(model(x_t, t, y=labels, training=False), tf.float32)
    b, null = tf.shape(x_t)[0], model.num_classes
    eps = tf.cast(model(tf.concat([x_t, x_t], 0), tf.concat([t, t], 0),
                        y=tf.concat([labels, tf.fill([b], null)], 0), training=False), tf.float32)
    eps_y, eps_null = eps[:b], eps[b:]                           # eps(x_t, t, y), eps(x_t, t, null)
    return (1.0 + guidance) * eps_y - guidance * eps_null       # eq. 6


def check_guidance(model, labels, guidance, batch):
    """``(labels, guidance)`` checked for ``guided_eps`` and ``sample``: ``guidance`` a finite w >= 0,
    ``labels`` None (unconditional, then w must be 0) or ``batch`` class indices of the model's classes."""
    guidance = validate.finite_number(guidance, "guidance", minimum=0)
    if labels is None:
        if guidance != 0:
            raise ValueError(f"guidance={guidance} needs labels (classifier-free guidance steers "
                             "towards a class); got labels=None.")
        return None, guidance
    num_classes = getattr(model, "num_classes", None)
    if num_classes is None:
        raise ValueError(f"labels were given but the model is unconditional ({type(model).__name__} "
                         "without num_classes); class labels need a class-conditional model, "
                         "e.g. HoUNet(num_classes=10).")
    return validate.class_labels(labels, num_classes, batch=batch), guidance


def ddpm_loop(model, schedule, x_T, seed, steps=None, variance="posterior", clip_x0=False,
              trajectory=False, labels=None, guidance=0.0):
    """Algorithm 2 of Ho et al. (2020), numbered by the paper's lines (code t = paper t - 1).

    ``steps=None`` visits every t (Algorithm 2 as printed); fewer steps run DDPM on the times of
    ``sampling_timesteps`` with the respaced betas of ``schedule.respace`` (Nichol & Dhariwal,
    2021), the model still called with the original time index. The z of the i-th step is drawn
    from the stateless seed ``(seed, i + 1)``. Runs eagerly as written, or compiled: ``sample``
    wraps this very function in ``tf.function``. ``labels`` and ``guidance``: see ``guided_eps``
    (every loop takes its eps from there).

    Returns x_0, or with ``trajectory`` ``(x_0, xs, x0s)``: every x from x_T on (S + 1 of them)
    and the x_0 predicted at each of the S steps.
    """
    ts, _ = sampling_timesteps(schedule.timesteps, steps)   # T-1, ..., 0: all of them unless respaced
    spaced = respace(schedule, ts)                          # the same betas when every t is visited
    seed, n = tf.cast(seed, tf.int64), len(ts)
    x = x_T                                                 # 1: x_T ~ N(0, I) (drawn by the caller)
    xs = tf.TensorArray(tf.float32, size=n + 1 if trajectory else 0)   # x_T, ..., x_0 (if trajectory)
    x0s = tf.TensorArray(tf.float32, size=n if trajectory else 0)      # each step's x0_pred
    if trajectory:
        xs = xs.write(0, x)
    for i in tf.range(n):                                   # 2: for t = T, ..., 1 do
        t = tf.gather(ts, i)
        z = tf.random.stateless_normal(x.shape, seed=tf.stack([seed, tf.cast(i, tf.int64) + 1]),
                                       alg="philox")       # 3: z ~ N(0, I) (ddpm_step: z = 0 at t = 1)
        eps = guided_eps(model, x, tf.fill([x.shape[0]], t), labels, guidance)
        x, x0 = ddpm_step(spaced, x, n - 1 - i, eps, z, variance=variance,
                          clip_x0=clip_x0)                  # 4: x_{t-1} = mu_theta(x_t, t) + sigma_t z
        if trajectory:
            xs, x0s = xs.write(i + 1, x), x0s.write(i, x0)
    # 5: end for
    return (x, xs.stack(), x0s.stack()) if trajectory else x   # 6: return x_0


def ddim_loop(model, schedule, x_T, seed, steps=None, eta=0.0, clip_x0=False, trajectory=False,
              labels=None, guidance=0.0):
    """DDIM (Song et al. 2020): ``ddim_step`` from each time of ``sampling_timesteps`` to the next.

    Laid out like ``ddpm_loop`` (same z for the i-th step, same returns); ``sample`` compiles it.
    """
    ts, ts_prev = sampling_timesteps(schedule.timesteps, steps)
    seed, n = tf.cast(seed, tf.int64), len(ts)
    x = x_T
    xs = tf.TensorArray(tf.float32, size=n + 1 if trajectory else 0)   # x_T, ..., x_0 (if trajectory)
    x0s = tf.TensorArray(tf.float32, size=n if trajectory else 0)      # each step's x0_pred
    if trajectory:
        xs = xs.write(0, x)
    for i in tf.range(n):
        t, t_prev = tf.gather(ts, i), tf.gather(ts_prev, i)
        z = tf.random.stateless_normal(x.shape, seed=tf.stack([seed, tf.cast(i, tf.int64) + 1]),
                                       alg="philox")
        eps = guided_eps(model, x, tf.fill([x.shape[0]], t), labels, guidance)
        x, x0 = ddim_step(schedule, x, t, t_prev, eps, eta=eta, z=z, clip_x0=clip_x0)
        if trajectory:
            xs, x0s = xs.write(i + 1, x), x0s.write(i, x0)
    return (x, xs.stack(), x0s.stack()) if trajectory else x


def dpm_solver_loop(model, schedule, x_T, seed, steps, clip_x0=False, trajectory=False,
                    labels=None, guidance=0.0):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) with S = ``steps`` model calls.

    The calls are made at the code times ``ts`` of ``dpm_solver_timesteps``; step i goes from
    ``ts[i]`` to ``ts_prev[i]``. As in Algorithm 2 the first step is first order (there is no
    earlier x_theta yet) and every later one is second order, from the x_theta of this call and of
    the previous one, except the last: it steps from code time 0 to x_0, where lambda = +inf and
    the second-order formula is undefined, so it is first order and returns x_theta (the authors'
    ``denoise_to_zero``). Lu et al.'s code also takes its last step at first order when
    ``lower_order_final`` is on ("steps < 15" in its docstring, ``steps < 10`` in the code), a
    trick against instability at few steps; here that last step is the one to x_0 at every S,
    while the step into code time 0 is second order. S = 1 and S = 2 are therefore first-order
    throughout: DDIM with eta = 0 on these times.

    The solver is deterministic: ``seed`` is not used (it is there so that ``sample`` calls every
    loop alike). Laid out like ``ddim_loop`` (same returns); ``sample`` compiles it.
    """
    ts, ts_prev = dpm_solver_timesteps(schedule, steps)
    n = len(ts)
    x = x_T                                                 # x_{t_0} = x_T
    xs = tf.TensorArray(tf.float32, size=n + 1 if trajectory else 0)   # x_T, ..., x_0 (if trajectory)
    x0s = tf.TensorArray(tf.float32, size=n if trajectory else 0)      # each step's x_theta
    if trajectory:
        xs = xs.write(0, x)
    eps = guided_eps(model, x, tf.fill([x.shape[0]], ts[0]), labels, guidance)
    x, x0_last = dpm_solver_step(schedule, x, ts[0], ts_prev[0], eps,
                                 clip_x0=clip_x0)           # first step: first order, D_1 = x_theta
    if trajectory:
        xs, x0s = xs.write(1, x), x0s.write(0, x0_last)
    for i in tf.range(1, n):                                # the paper's i = 2, ..., M
        t_last, t, t_prev = tf.gather(ts, i - 1), tf.gather(ts, i), tf.gather(ts_prev, i)
        eps = guided_eps(model, x, tf.fill([x.shape[0]], t), labels, guidance)
        x, x0_last = dpm_solver_step(schedule, x, t, t_prev, eps, x0_last=x0_last, t_last=t_last,
                                     clip_x0=clip_x0)       # r_i, D_i, x_{t_i}; first order to x_0
        if trajectory:
            xs, x0s = xs.write(i + 1, x), x0s.write(i, x0_last)
    return (x, xs.stack(), x0s.stack()) if trajectory else x


_CACHE = weakref.WeakKeyDictionary()


def sample(model, schedule, shape, method="ddpm", steps=None, eta=0.0, seed=None,
           return_trajectory=False, variance="posterior", jit_compile=False, clip_x0=False,
           x_T=None, return_x0_trajectory=False, labels=None, guidance=0.0):
    """Generate images by running the reverse process from x_T ~ N(0, I).

    Args:
        model: called as ``model(x_t, t)`` with ``t`` int32 of shape (batch,); returns eps. A
            class-conditional model (``HoUNet(num_classes=K)``) is also called with ``y=``.
        schedule: the :class:`~ddpm_lib.schedule.Schedule` the model was trained with.
        shape: ``(batch, height, width, channels)``; may be ``None`` when ``x_T`` is given.
        method: ``"ddpm"`` (``ddpm_loop``: Algorithm 2, respaced when ``steps < T``),
            ``"ddim"`` (``ddim_loop``) or ``"dpm_solver"`` (``dpm_solver_loop``:
            DPM-Solver++(2M), deterministic, for few steps, e.g. 10-20).
        steps: number of model calls, an integer in [1, T]; ``None`` means all T. The visited
            times are those of ``sampling_timesteps`` (DDPM, DDIM) or of ``dpm_solver_timesteps``
            (uniform in lambda = log(alpha / sigma)).
        eta: DDIM's stochasticity, a number in [0, 1] (0 = deterministic, 1 = DDPM's posterior
            variance); ignored by DDPM and
            DPM-Solver++.
        seed: integer for reproducible samples; ``None`` draws a fresh one.
        return_trajectory: also return every intermediate x_t, shape (steps + 1, *shape),
            starting with x_T.
        variance: DDPM's sigma_t^2, ``"posterior"`` (beta_tilde) or ``"beta"``; ignored by the
            other methods.
        jit_compile: compile the loop with XLA. XLA's random-number kernels derive another
            stream from the same seed for the per-step noise, so stochastic XLA samples are
            reproducible among themselves but differ from non-XLA samples of the same seed.
        clip_x0: clip the predicted x_0 to [-1, 1] in every step (see ``ddpm_step``,
            ``ddim_step`` and ``dpm_solver_step``); ``False`` is the plain formula of the papers.
        x_T: start from this tensor instead of drawing x_T from ``seed`` (DDIM with eta = 0
            is then a deterministic map x_T -> x_0, used for interpolation in chapter 8).
            The seed still drives the per-step noise (DPM-Solver++ has none).
        return_x0_trajectory: also return the x_0 predicted at every step, shape (steps, *shape).
        labels: the class of each image, integers in [0, K) of shape (batch,), for a
            class-conditional model; ``None`` samples it unconditionally (its null class).
        guidance: classifier-free guidance strength w, a finite number >= 0 (needs ``labels``):
            eps~ = (1 + w) eps(x_t, t, y) - w eps(x_t, t, null), ``guided_eps``; 0 (default) is
            plain conditional sampling, w > 0 costs a model call on twice the batch per step.

    Returns:
        x_0 as a float32 tensor in (about) [-1, 1]; with ``return_trajectory`` and/or
        ``return_x0_trajectory``, a tuple ``(x_0, trajectory, x0_trajectory)`` holding the ones asked for.
    """
    if x_T is not None:
        x_T = validate.float_tensor(x_T, "x_T")
        if shape is None:
            shape = tuple(x_T.shape)
        elif tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape is {tuple(shape)}; "
                             "they must match (or pass shape=None).")
    shape = validate.image_shape(shape, getattr(model, "image_channels", None))
    validate.one_of(method, ("ddpm", "ddim", "dpm_solver"), "method")
    p_variance(schedule, variance)       # validates the name
    eta = validate.eta(eta)
    _timesteps_and_steps(schedule.timesteps, steps)    # validates steps
    trained_T = getattr(model, "trained_timesteps", None)     # set by checkpoint.load_weights
    if trained_T is not None and trained_T != schedule.timesteps:
        warnings.warn(f"the model was trained with T = {trained_T} but the schedule has "
                      f"T = {schedule.timesteps}; sample with the schedule it was trained with "
                      "(load_weights returns it).", UserWarning, stacklevel=2)
    if steps is not None:
        steps = int(steps)
    if seed is None:
        seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer or None; got {seed!r}.")
    labels, guidance = check_guidance(model, labels, guidance, shape[0])

    trajectory = bool(return_trajectory or return_x0_trajectory)
    common = dict(steps=steps, clip_x0=bool(clip_x0), trajectory=trajectory, guidance=guidance)
    if method == "ddpm":
        loop = functools.partial(ddpm_loop, variance=variance, **common)
    elif method == "ddim":
        loop = functools.partial(ddim_loop, eta=eta, **common)
    else:
        loop = functools.partial(dpm_solver_loop, **common)
    # One compiled loop per setting the method uses (its partial's keywords): DDPM's variance,
    # DDIM's eta, neither for DPM-Solver++. The labels are a tensor input of the compiled loop:
    # new labels are no new trace.
    key = (schedule_hash(schedule), shape, method, tuple(sorted(loop.keywords.items())),
           bool(jit_compile), labels is not None)
    try:
        per_model = _CACHE.setdefault(model, {})
    except TypeError:            # a model that cannot be weak-referenced: no cache
        per_model = {}
    if key not in per_model:
        # One tf.function per key, each traced once. A partial (not a closure) keeps TensorFlow's
        # retracing counter per function, so many keys raise no "retracing" warning.
        per_model[key] = tf.function(functools.partial(loop, model, schedule),
                                     jit_compile=bool(jit_compile))
    seed = tf.constant(int(seed), tf.int64)
    if x_T is None:
        x_T = tf.random.stateless_normal(shape, seed=tf.stack([seed, tf.constant(0, tf.int64)]),
                                         alg="philox")
    out = per_model[key](x_T, seed, labels=labels)
    if not trajectory:
        return out
    x0, xs, x0s = out
    return (x0,) + ((xs,) if return_trajectory else ()) + ((x0s,) if return_x0_trajectory else ())
