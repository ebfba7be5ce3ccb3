"""Input checks shared by every module, with one wording: "<name> must be <what>; got <value>."

Each check runs before any work starts and raises ``ValueError``. Inside ``tf.function`` the
values of tensors are unknown: the checks then test what they can (dtype, rank) and trust the rest.
Index convention for time indices: see ``ddpm_lib.schedule`` (code t = paper t - 1).
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

__all__ = ["positive_int", "non_negative_int", "finite_number", "positive_number", "fraction",
           "eta", "one_of", "time_index", "earlier_time", "class_labels",
           "float_tensor", "same_shape", "image_shape"]


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def positive_int(value, name):
    """``value`` as a Python int >= 1 (numpy integers accepted; bools and floats rejected)."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def non_negative_int(value, name):
    """``value`` as a Python int >= 0 (numpy integers accepted; bools and floats rejected)."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value!r}.")
    return int(value)


def finite_number(value, name, minimum=None):
    """``value`` as a finite Python float (>= ``minimum`` if given); bools are rejected."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite number; got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}; got {value!r}.")
    return value


def eta(value, name="eta"):
    """DDIM's eta as a finite Python float in [0, 1] (0: deterministic, 1: DDPM's posterior variance).

    Above 1, sigma_t of Song et al.'s eq. (16) can exceed sqrt(1 - alpha_bar_prev): the update
    would need the square root of a negative number and no longer has the marginals q(x_t | x_0).
    """
    value = finite_number(value, name, minimum=0)
    if value > 1:
        raise ValueError(f"{name} must be a finite number in [0, 1]; got {value!r} (above 1, sigma_t "
                         "of DDIM's eq. 16 can exceed sqrt(1 - alpha_bar_prev)).")
    return value


def positive_number(value, name):
    """``value`` as a finite Python float > 0 (a learning rate, a clipping norm); bools are rejected."""
    value = finite_number(value, name)
    if not value > 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
    return value


def fraction(value, name):
    """``value`` as a Python float in [0, 1) (a decay rate, a probability that must leave room
    for the other outcome); bools are rejected."""
    value = finite_number(value, name)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be a finite number in [0, 1); got {value!r}.")
    return value


def one_of(value, choices, name):
    """``value`` if it is one of ``choices`` (names such as methods or modes), else a ValueError
    listing them: 'method must be "ddpm", "ddim" or "dpm_solver"; got 'x'.'."""
    if value not in choices:
        quoted = [f'"{c}"' for c in choices]
        listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
        raise ValueError(f"{name} must be {listed}; got {value!r}.")
    return value


def time_index(t, timesteps, name="t", batch=None, scalar=False, allow_negative=False):
    """Time indices as an int32 tensor: a scalar, or shape ``(batch,)`` unless ``scalar``.

    Values must lie in ``[0, timesteps)`` (code t = paper t - 1); ``allow_negative`` also accepts
    any ``t < 0`` (DDIM's "step to x_0"). ``batch`` is the images' batch size, when known.
    """
    if tf.is_symbolic_tensor(t):        # inside tf.function: the values are unknown
        if not t.dtype.is_integer:
            raise ValueError(f"{name} must be an integer tensor of code times; got dtype {t.dtype.name}.")
        return tf.cast(t, tf.int32)
    arr = np.asarray(t)
    what = "an integer scalar shared by the batch" if scalar else "an integer scalar or array of shape (batch,)"
    if arr.dtype.kind not in "iu" or arr.ndim > (0 if scalar else 1):
        hint = " (cast it, e.g. t.astype('int32'))" if arr.dtype.kind == "f" else ""
        raise ValueError(f"{name} must be {what}{hint}; got {t!r} (dtype {arr.dtype}, shape {arr.shape}).")
    low = -np.inf if allow_negative else 0
    bad = arr[(arr < low) | (arr >= timesteps)]
    if bad.size:
        expected = f"< {timesteps}" if allow_negative else f"in [0, {timesteps})"
        raise ValueError(f"{name} must be code indices {expected} (code t = paper t - 1); "
                         f"got {bad.ravel()[:5].tolist()}.")
    if batch is not None and arr.ndim == 1 and arr.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},), the images' batch size; "
                         f"got shape {arr.shape}.")
    return tf.constant(arr, tf.int32)


def earlier_time(t_prev, t, timesteps, name="t_prev"):
    """``t_prev`` as a scalar int32 tensor: the code time a step goes to from the scalar time ``t``.

    It must be smaller than ``t``; any ``t_prev < 0`` is x_0 (a sampler's last step). ``t`` is an
    already validated time. Inside ``tf.function`` the order cannot be checked.
    """
    t_prev = time_index(t_prev, timesteps, name=name, scalar=True, allow_negative=True)
    if not tf.is_symbolic_tensor(t) and not tf.is_symbolic_tensor(t_prev) and int(t_prev) >= int(t):
        raise ValueError(f"{name} must be smaller than t={int(t)}; got {int(t_prev)}.")
    return t_prev


def class_labels(y, num_classes, name="labels", batch=None, allow_null=False):
    """Class labels as an int32 tensor of shape (batch,), values in [0, num_classes).

    ``allow_null`` also accepts ``num_classes`` itself, the "null" class (no label) of a
    class-conditional model (Ho & Salimans, 2022). ``batch`` is the images' batch size, when known.
    """
    top = num_classes + 1 if allow_null else num_classes
    what = (f"integers in [0, {num_classes}] ({num_classes} = the null class)" if allow_null
            else f"integers in [0, {num_classes})")
    if tf.is_symbolic_tensor(y):        # inside tf.function: the values are unknown
        if not y.dtype.is_integer or y.shape.rank != 1:
            raise ValueError(f"{name} must be {what} of shape (batch,); got dtype {y.dtype.name}, "
                             f"shape {tuple(y.shape)}.")
        if batch is not None and y.shape[0] is not None and y.shape[0] != batch:
            raise ValueError(f"{name} must have shape ({batch},), the images' batch size; "
                             f"got shape {tuple(y.shape)}.")
        return tf.cast(y, tf.int32)
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        hint = " (cast it, e.g. labels.astype('int32'))" if arr.dtype.kind == "f" else ""
        raise ValueError(f"{name} must be {what} of shape (batch,){hint}; got dtype {arr.dtype}, "
                         f"shape {arr.shape}.")
    bad = arr[(arr < 0) | (arr >= top)]
    if bad.size:
        raise ValueError(f"{name} must be {what}; got {bad.ravel()[:5].tolist()}.")
    if batch is not None and arr.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},), the images' batch size; "
                         f"got shape {arr.shape}.")
    return tf.constant(arr, tf.int32)


def float_tensor(x, name):
    """``x`` as a float32 tensor; integer or boolean input is rejected (it is almost always a bug)."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise ValueError(f"{name} must be a float tensor or array; got dtype {x.dtype.name}.")
    return tf.cast(x, tf.float32)


def same_shape(ref_name, ref, **others):
    """Raise unless every tensor in ``others`` (``None`` skipped) has the shape of ``ref``."""
    for name, x in others.items():
        if x is None:
            continue
        if ref.shape.is_fully_defined() and x.shape.is_fully_defined() and x.shape != ref.shape:
            raise ValueError(f"{name} must have the shape of {ref_name}, {tuple(ref.shape)}; "
                             f"got {tuple(x.shape)}.")


def image_shape(shape, channels=None, name="shape"):
    """``shape`` as a tuple ``(batch, height, width, channels)`` of positive ints."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or len(dims) != 4 or not all(_is_int(d) and d >= 1 for d in dims):
        raise ValueError(f"{name} must be (batch, height, width, channels) of positive integers; "
                         f"got {shape!r}.")
    dims = tuple(int(d) for d in dims)
    if channels is not None and dims[-1] != channels:
        raise ValueError(f"{name} must end with the model's {channels} channels, "
                         f"(batch, height, width, {channels}); got {dims}.")
    return dims
