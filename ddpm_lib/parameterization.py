"""What the network predicts: the noise eps, the clean image x_0, the velocity v, or the score.

Given x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (eq. (4) of Ho et al.), knowing x_t and
any one of these four determines the other three, and the conversions below are the one place the
library does it (``Schedule.predict_x0`` and ``Schedule.predict_eps`` call the first two):

    x_0   = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)          eq. (4) solved for x_0
    v     = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0               Salimans & Ho (2022)
          = (eps - sqrt(1 - alpha_bar) x_t) / sqrt(alpha_bar)
    score = -eps / sqrt(1 - alpha_bar)                                  Song et al. (2021), Sec. 3.3

For a network, "the score" is its estimate of grad_x log q(x_t): a network trained with L_simple
estimates E[eps | x_t], and Tweedie's formula gives grad log q(x_t) = -E[eps | x_t] / sqrt(1 - alpha_bar).

Every function takes ``(schedule, x_t, t, value)`` like the :class:`~ddpm_lib.schedule.Schedule`
methods: float32 tensors of any rank with a leading batch axis (points ``(batch, d)`` or images
``(batch, H, W, C)``), ``t`` a code index (scalar or ``(batch,)``; code t = paper t - 1), and the
float64 coefficients of the schedule read with ``extract``. Each conversion is one line of
float32 arithmetic: ``a * x_t + b * value``, ``-value / b`` (``eps_to_score``, ``b = sqrt(1 - alpha_bar)``),
or (``x0_to_eps``) ``(a * x_t - value) / b``.
"""
from __future__ import annotations

from . import validate
from .schedule import extract

__all__ = ["PARAMETERIZATIONS", "eps_to_x0", "x0_to_eps", "eps_to_v", "v_to_eps", "v_to_x0",
           "eps_to_score", "score_to_eps", "to_eps", "from_eps", "convert"]

PARAMETERIZATIONS = ("eps", "x0", "v", "score")


def eps_to_x0(schedule, x_t, t, eps):
    """x_0 from x_t and the noise: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    t, x_t, eps = schedule.check_inputs(t, x_t, eps, names=("x_t", "eps"))
    nd = x_t.shape.rank
    return (extract(schedule.sqrt_recip_alpha_bars, t, nd) * x_t
            - extract(schedule.sqrt_recipm1_alpha_bars, t, nd) * eps)


def x0_to_eps(schedule, x_t, t, x0):
    """The noise from x_t and x_0, eq. (4) solved for eps: the inverse of ``eps_to_x0``.

    eps = (x_t / sqrt(alpha_bar_t) - x_0) / sqrt(1 / alpha_bar_t - 1)
    """
    t, x_t, x0 = schedule.check_inputs(t, x_t, x0, names=("x_t", "x0"))
    nd = x_t.shape.rank
    return ((extract(schedule.sqrt_recip_alpha_bars, t, nd) * x_t - x0)
            / extract(schedule.sqrt_recipm1_alpha_bars, t, nd))


def eps_to_v(schedule, x_t, t, eps):
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 with x_0 from eq. (4):
    v = eps / sqrt(alpha_bar) - sqrt(1 / alpha_bar - 1) x_t."""
    t, x_t, eps = schedule.check_inputs(t, x_t, eps, names=("x_t", "eps"))
    nd = x_t.shape.rank
    return (extract(schedule.sqrt_recip_alpha_bars, t, nd) * eps
            - extract(schedule.sqrt_recipm1_alpha_bars, t, nd) * x_t)


def v_to_eps(schedule, x_t, t, v):
    """The inverse of ``eps_to_v``: eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v."""
    t, x_t, v = schedule.check_inputs(t, x_t, v, names=("x_t", "v"))
    nd = x_t.shape.rank
    return (extract(schedule.sqrt_one_minus_alpha_bars, t, nd) * x_t
            + extract(schedule.sqrt_alpha_bars, t, nd) * v)


def v_to_x0(schedule, x_t, t, v):
    """x_0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v (Salimans & Ho 2022): (x_0, eps)
    is (x_t, v) turned by the angle phi with cos(phi) = sqrt(alpha_bar), so no coefficient exceeds 1."""
    t, x_t, v = schedule.check_inputs(t, x_t, v, names=("x_t", "v"))
    nd = x_t.shape.rank
    return (extract(schedule.sqrt_alpha_bars, t, nd) * x_t
            - extract(schedule.sqrt_one_minus_alpha_bars, t, nd) * v)


def eps_to_score(schedule, x_t, t, eps):
    """score = -eps / sqrt(1 - alpha_bar_t): grad_x log q(x_t) when eps = E[eps | x_t] (Tweedie)."""
    t, x_t, eps = schedule.check_inputs(t, x_t, eps, names=("x_t", "eps"))
    return -eps / extract(schedule.sqrt_one_minus_alpha_bars, t, x_t.shape.rank)


def score_to_eps(schedule, x_t, t, score):
    """eps = -sqrt(1 - alpha_bar_t) score, the inverse of ``eps_to_score``."""
    t, x_t, score = schedule.check_inputs(t, x_t, score, names=("x_t", "score"))
    return -extract(schedule.sqrt_one_minus_alpha_bars, t, x_t.shape.rank) * score


_TO_EPS = {"x0": x0_to_eps, "v": v_to_eps, "score": score_to_eps}
_FROM_EPS = {"x0": eps_to_x0, "v": eps_to_v, "score": eps_to_score}


def to_eps(schedule, x_t, t, value, source):
    """eps from the prediction ``value`` of kind ``source`` ("eps", "x0", "v" or "score")."""
    validate.one_of(source, PARAMETERIZATIONS, "source")
    if source == "eps":
        return schedule.check_inputs(t, x_t, value, names=("x_t", "value"))[2]
    return _TO_EPS[source](schedule, x_t, t, value)


def from_eps(schedule, x_t, t, eps, target):
    """The prediction of kind ``target`` ("eps", "x0", "v" or "score") from eps."""
    validate.one_of(target, PARAMETERIZATIONS, "target")
    if target == "eps":
        return schedule.check_inputs(t, x_t, eps, names=("x_t", "eps"))[2]
    return _FROM_EPS[target](schedule, x_t, t, eps)


def convert(schedule, x_t, t, value, source, target):
    """Convert a prediction from kind ``source`` to kind ``target``, through eps.

    v to x_0 uses ``v_to_x0`` directly (Salimans & Ho's formula); every other pair is
    ``from_eps(to_eps(...))``, two of the single-step formulas above.
    """
    validate.one_of(source, PARAMETERIZATIONS, "source")
    validate.one_of(target, PARAMETERIZATIONS, "target")
    if (source, target) == ("v", "x0"):
        return v_to_x0(schedule, x_t, t, value)
    return from_eps(schedule, x_t, t, to_eps(schedule, x_t, t, value, source), target)

