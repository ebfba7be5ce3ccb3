"""Saving and loading, written so that nothing a user made is lost.

Every file is written to ``<name>.tmp`` first, flushed to disk and then renamed over the final
name (``os.replace`` is atomic on POSIX and Windows): a crash or a full disk leaves the previous
file intact, never half a file.

Two formats, both plain ``.npz`` with a JSON ``meta`` entry:

* training checkpoints ``ckpt-00001000.npz``: model weights, EMA weights, optimizer variables,
  the step and the training history; everything ``Trainer.restore`` needs to resume exactly;
* exported weights: just the EMA weights (optionally float16) and the model + schedule config;
  this is what ``ddpm_lib.load_reference`` reads.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile

import numpy as np

__all__ = ["atomic_savez", "latest_checkpoint", "list_checkpoints", "read_npz",
           "export_weights", "load_weights", "schedule_from_meta"]

_CKPT_RE = re.compile(r"^ckpt-(\d+)\.npz$")


def atomic_savez(path, arrays):
    """Write ``arrays`` (a dict name -> array) to ``path`` as .npz, atomically."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_npz(path):
    """Load every array of an .npz into a dict; a clear error for missing or corrupt files."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path!r} is not a readable .npz file (corrupt or truncated?): {e}") from None
    if "meta" not in data:
        raise ValueError(f"{path!r} has no 'meta' entry; it was not written by ddpm_lib.")
    try:
        data["meta"] = json.loads(str(data["meta"]))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r} has a corrupt 'meta' entry: {e}") from None
    return data


def list_checkpoints(directory):
    """``[(step, path), ...]`` of the complete checkpoints in ``directory``, oldest first."""
    if not directory or not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        m = _CKPT_RE.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return sorted(found)


def latest_checkpoint(directory):
    """Path of the newest complete checkpoint in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def schedule_hash(schedule):
    return hashlib.sha256(np.asarray(schedule.betas, np.float64).tobytes()).hexdigest()[:16]


def schedule_from_meta(meta):
    from .schedule import Schedule
    return Schedule(np.asarray(meta["betas"], np.float64))


def export_weights(model, schedule, path, dtype="float16", extra=None):
    """Save a model's weights and config (+ the schedule) for sampling; float16 halves the size."""
    if dtype not in ("float16", "float32"):
        raise ValueError(f'dtype must be "float16" or "float32"; got {dtype!r}.')
    weights = model.get_weights()
    if not weights:
        raise ValueError("the model has no weights yet; call it once (model.build_for(32)) first.")
    meta = {"format": "ddpm_lib.weights/1", "model_class": type(model).__name__,
            "model_config": model.get_config(), "betas": schedule.betas.tolist(),
            "n_weights": len(weights), "extra": extra or {}}
    arrays = {f"w{i:04d}": w.astype(dtype) for i, w in enumerate(weights)}
    arrays["meta"] = np.array(json.dumps(meta))
    return atomic_savez(path, arrays)


def load_weights(path, image_size=32, dtype=None):
    """Build the model saved by :func:`export_weights` and return ``(model, schedule)``.

    The weights are float32. ``dtype`` is the model's Keras dtype policy: ``None`` (float32), or
    e.g. ``"mixed_bfloat16"`` to compute in bfloat16 with the same float32 weights.
    """
    from .ho_unet import HoUNet
    from .unet import UNet
    classes = {"UNet": UNet, "HoUNet": HoUNet}
    data = read_npz(path)
    meta = data["meta"]
    if meta.get("format") != "ddpm_lib.weights/1" or meta.get("model_class") not in classes:
        raise ValueError(f"{path!r} is not a ddpm_lib UNet or HoUNet weights file (meta format "
                         f"{meta.get('format')!r}, class {meta.get('model_class')!r}).")
    cls = classes[meta["model_class"]]
    config = dict(meta["model_config"])
    if dtype is not None:
        import keras
        try:
            keras.DTypePolicy(dtype)
        except (TypeError, ValueError):
            raise ValueError(f"dtype must be None or a Keras dtype policy name such as "
                             f"'float32' or 'mixed_bfloat16'; got {dtype!r}.") from None
    try:
        model = cls(**config, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path!r} has a model config this ddpm_lib cannot build: {config} ({e})") from None
    model.build_for(image_size)
    expected = model.get_weights()
    n = meta.get("n_weights")
    if n != len(expected):
        raise ValueError(f"{path!r} holds {n} weight arrays but {cls.__name__}({config}) has {len(expected)}; "
                         "the file and this version of ddpm_lib disagree.")
    weights = []
    for i, ref in enumerate(expected):
        key = f"w{i:04d}"
        if key not in data:
            raise ValueError(f"{path!r} is missing weight array {key}.")
        w = data[key]
        if w.shape != ref.shape:
            raise ValueError(f"{path!r}: weight {i} ({model.weights[i].path}) has shape {w.shape}, "
                             f"expected {ref.shape}.")
        weights.append(w.astype(np.float32))
    if not all(np.all(np.isfinite(w)) for w in weights):
        raise ValueError(f"{path!r} contains non-finite weights (nan or inf).")
    model.set_weights(weights)
    return model, schedule_from_meta(meta)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

