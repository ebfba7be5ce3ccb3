"""Many samples in seeded batches, with an optional on-disk cache so long runs can resume.

Evaluating a sampler needs hundreds or thousands of images: on a 2-core CPU a DDPM-1000 row of
the evaluation chapter takes hours. ``generate_images`` makes them in batches of ``batch_size``,
batch ``b`` with ``seed = seed0 + b`` and every batch full size, so the first k images are the
same whatever ``n``. Given ``cache_dir``, it writes each finished batch atomically to disk and
reuses it the next time the same request is made. The cache key covers everything that determines the images: the
model's class, config and weights, the schedule, every keyword of ``sampler.sample`` (defaults
filled in, so leaving out ``eta=0.0`` is the same request), the batch size and the seeds. A
cached batch therefore holds exactly what a fresh run of the same code on
the same machine computes; the seconds it took are stored with it.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import numbers
import os
import time

import numpy as np

from . import sampler
from .checkpoint import atomic_savez, read_npz, schedule_hash

__all__ = ["generate_images", "model_fingerprint", "sampler_settings", "cache_key"]


def model_fingerprint(model):
    """A short hash of a model's class, config, dtype policy and weights."""
    h = hashlib.sha256()
    h.update(type(model).__name__.encode())
    config = {k: v for k, v in model.get_config().items() if k != "name"}
    h.update(json.dumps(config, sort_keys=True).encode())
    h.update(str(model.dtype_policy.name).encode())
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


FIXED = ("model", "schedule", "shape", "seed")      # set by generate_images itself
SAMPLE_PARAMETERS = inspect.signature(sampler.sample).parameters


def _plain(value):
    """A setting as JSON: bools and strings as they are, numbers as floats, arrays (e.g.
    ``labels``) in full as lists, so that equal settings give equal text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "numpy"):                      # a tf.Tensor
        value = value.numpy()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def sampler_settings(sample_kwargs):
    """Every keyword of ``sampler.sample`` but ``seed`` and ``shape``, defaults filled in.

    Two requests that make the same images have the same settings: ``steps=50`` and
    ``steps=50, eta=0.0`` (the default), or ``eta=0`` and ``eta=0.0``. An unknown keyword is a
    ``ValueError`` naming the known ones.
    """
    params = SAMPLE_PARAMETERS
    unknown = sorted(set(sample_kwargs) - set(params))
    if unknown:
        raise ValueError(f"sampler.sample has no setting {', '.join(map(repr, unknown))}; "
                         f"expected some of {', '.join(k for k in params if k not in FIXED)}.")
    settings = {k: p.default for k, p in params.items()
                if p.default is not inspect.Parameter.empty and k not in FIXED}
    settings.update(sample_kwargs)
    return {k: _plain(v) for k, v in settings.items()}


def cache_key(model, schedule, sample_kwargs, batch_size, seed0, image_size):
    """The JSON text that names a request in the cache (see the module docstring)."""
    return json.dumps({"model": model_fingerprint(model), "schedule": schedule_hash(schedule),
                       "sampler": sampler_settings(sample_kwargs), "batch_size": int(batch_size),
                       "seed0": int(seed0), "image_size": int(image_size)}, sort_keys=True)


def _check_writable(folder, cache_dir):
    """A ValueError now, before any sampling, if ``folder`` could not be created or written."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing) or "."
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cache_dir {os.fspath(cache_dir)!r} cannot be used: {existing!r} is "
                         f"{'not a directory' if not os.path.isdir(existing) else 'not writable'}.")


def generate_images(model, schedule, n, batch_size=250, seed0=1000, image_size=32, cache_dir=None,
                    verbose=False, **sample_kwargs):
    """``n`` samples of ``sampler.sample(model, schedule, ...)`` in seeded batches.

    Returns ``(images, seconds)``: float32 images of shape (n, image_size, image_size, C) as the
    sampler returns them (not clipped), and for each batch the seconds its sampling took (when it
    was made, if it came from the cache) and how many images it holds, as an (batches, 2) array.
    ``sample_kwargs`` go to ``sampler.sample`` (``method``, ``steps``, ``eta``, ...). For a
    class-conditional model, ``labels`` holds ``batch_size`` labels, used for every batch (the
    last, partial batch keeps its first ones), e.g. ``np.arange(batch_size) % 10``.
    """
    from .validate import positive_int
    n = positive_int(n, "n")
    batch_size = positive_int(batch_size, "batch_size")
    if "seed" in sample_kwargs or "shape" in sample_kwargs:
        raise ValueError("generate_images sets seed and shape itself; pass seed0 and n instead.")
    sampler_settings(sample_kwargs)                  # an unknown keyword fails before any work
    channels = int(getattr(model, "image_channels", 1))
    folder = None
    if cache_dir is not None:
        key = cache_key(model, schedule, sample_kwargs, batch_size, seed0, image_size)
        folder = os.path.join(os.fspath(cache_dir), hashlib.sha256(key.encode()).hexdigest()[:20])
        _check_writable(folder, cache_dir)
    images, seconds = [], []
    for b, start in enumerate(range(0, n, batch_size)):
        size = min(batch_size, n - start)
        path = None if folder is None else os.path.join(folder, f"batch-{b:05d}.npz")
        if path is not None and os.path.exists(path):
            data = read_npz(path)
            if data["images"].shape[0] >= size:
                images.append(data["images"][:size])
                seconds.append((float(data["meta"]["seconds"]) * size / data["images"].shape[0], size))
                continue
        t0 = time.perf_counter()
        # always a full batch, so that the images do not depend on n or on the cache
        x = sampler.sample(model, schedule, (batch_size, image_size, image_size, channels),
                   seed=seed0 + b, **sample_kwargs).numpy()
        dt = time.perf_counter() - t0
        if path is not None:         # written once a batch exists: a bad setting leaves no folder
            os.makedirs(folder, exist_ok=True)
            if not os.path.exists(os.path.join(folder, "request.npz")):
                atomic_savez(os.path.join(folder, "request.npz"), {"meta": np.array(key)})
            atomic_savez(path, {"images": x, "meta": np.array(json.dumps({"seconds": dt}))})
        images.append(x[:size])
        seconds.append((dt * size / x.shape[0], size))
        if verbose:
            print(f"batch {b}: {x.shape[0]} images in {dt:.1f} s", flush=True)
    return np.concatenate(images), np.asarray(seconds)
