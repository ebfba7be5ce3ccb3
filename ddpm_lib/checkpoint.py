"""Saving and loading: the two file formats of ddpm_lib, written so that nothing a user made is lost.

Every file is written by :func:`atomic_write`: to ``<name>.tmp`` first, flushed to disk, then
renamed over the final name (``os.replace`` is atomic on POSIX and Windows) and the directory
entry flushed too: a crash or a full disk leaves the previous file intact, never half a file.

Two formats, both plain ``.npz`` with a JSON ``meta`` entry:

* training checkpoints ``ckpt-00001000.npz`` (``ddpm_lib.checkpoint/2``): model weights
  ``model/<key>``, EMA weights ``ema/<key>``, optimizer variables ``opt/<key>``, the step and the
  training history; everything ``Trainer.restore`` needs to resume exactly;
* exported weights (``ddpm_lib.weights/2``): the EMA weights ``weights/<key>`` (optionally
  float16), the model's class and config and the noise schedule; ``load_weights`` reads them.

The evaluation classifier (``metrics.build_classifier``, a Keras functional model) is stored the
same way, ``weights/<key>`` plus a ``meta`` entry (``ddpm_lib.classifier/2``), by
:func:`save_classifier` and :func:`load_classifier_weights`.

A weight's key is its Keras variable path without the model's own name, e.g.
``down0_res0/conv1/kernel`` (the same for a model and its EMA copy), and an optimizer slot's key
the key of its weight plus the slot, e.g. ``adamw/down0_res0/conv1/kernel/momentum``. That needs
layers named explicitly, as ``HoUNet`` and ``UNet`` do (Keras' auto-numbered names such as
``conv2d_30`` change with every model a process builds); any other model's variables are keyed
by position, ``0000, 0001, ...``. ``meta["keys"]`` says which. Files keyed by position (the
version-1 formats, and version 2 written before ``UNet`` named its layers) keep loading into
any model with the same variables in the same order.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile

import numpy as np

__all__ = ["atomic_write", "atomic_savez", "atomic_write_json", "read_npz", "list_checkpoints",
           "latest_checkpoint", "read_latest_checkpoint", "schedule_hash", "schedule_from_meta",
           "check_same_run", "saved_model_config", "variable_keys", "optimizer_keys", "write_checkpoint",
           "assign_checkpoint", "export_weights", "load_weights", "save_classifier",
           "load_classifier_weights", "CHECKPOINT_FORMAT", "WEIGHTS_FORMAT", "CLASSIFIER_FORMAT"]

CHECKPOINT_FORMAT = "ddpm_lib.checkpoint/2"
WEIGHTS_FORMAT = "ddpm_lib.weights/2"
_CHECKPOINT_FORMATS = ("ddpm_lib.checkpoint/1", CHECKPOINT_FORMAT)
_WEIGHTS_FORMATS = ("ddpm_lib.weights/1", WEIGHTS_FORMAT)
CLASSIFIER_FORMAT = "ddpm_lib.classifier/2"
# Model classes whose every layer has an explicit name, so that variable paths are stable.
_KEYED_BY_PATH = ("HoUNet", "UNet")

_CKPT_RE = re.compile(r"^ckpt-(\d+)\.npz$")


# ------------------------------------------------------------------------------ writing files
def atomic_write(path, write):
    """Write ``path`` atomically: ``write(f)`` fills a binary file ``<path>.tmp``, which is
    flushed to disk and renamed over ``path``; then the directory is flushed where the OS allows.
    Parent directories are created. Returns ``path`` as a string."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    try:                                # make the rename itself durable (POSIX; not on Windows)
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    return path


def atomic_savez(path, arrays):
    """Write ``arrays`` (a dict name -> array) to ``path`` as .npz, atomically."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def atomic_write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path``, atomically."""
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


# ------------------------------------------------------------------------------ reading files
def read_npz(path):
    """Load every array of an .npz into a dict; a clear error for missing or corrupt files."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
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


def read_latest_checkpoint(directory):
    """``(path, data)`` of the newest *readable* checkpoint in ``directory``, or ``(None, None)``.

    A corrupt or truncated newer file is skipped with a one-line ``UserWarning``; if no file is
    readable, ``ValueError`` (nothing is silently started over).
    """
    found = list_checkpoints(directory)
    for i in range(len(found) - 1, -1, -1):
        path = found[i][1]
        try:
            return path, read_npz(path)
        except ValueError as e:
            if i == 0:
                raise ValueError(f"no readable checkpoint in {directory!r}: the oldest, "
                                 f"{os.path.basename(path)}, is unreadable too ({e})") from None
            warnings.warn(f"{os.path.basename(path)} in {directory!r} is corrupt or truncated; "
                          f"resuming from {os.path.basename(found[i - 1][1])} instead.",
                          UserWarning, stacklevel=2)
    return None, None


# ------------------------------------------------------------------- what must match to resume
def schedule_hash(schedule):
    """The fingerprint of a noise schedule: 16 hex digits of SHA-256 of its float64 betas."""
    return hashlib.sha256(np.asarray(schedule.betas, np.float64).tobytes()).hexdigest()[:16]


def schedule_from_meta(meta):
    from .schedule import Schedule
    return Schedule(np.asarray(meta["betas"], np.float64))


def check_same_run(saved, given, source, name=str, advice="resume with the saved values or start a new run"):
    """Raise ``ValueError`` (one line) unless every setting in ``given`` equals the ``saved`` one.

    ``source`` names what holds the saved run (a file or directory), ``name(key)`` how a setting
    is called to the user (e.g. its command-line flag).
    """
    diff = [k for k in given if saved.get(k) != given[k]]
    if diff:
        items = "; ".join(f"{name(k)}: saved {saved.get(k)!r}, given {given[k]!r}" for k in diff)
        raise ValueError(f"{source} holds a run with another configuration ({items}); {advice}.")


# --------------------------------------------------------------------------------- array keys
def _relative_path(model, variable):
    parts = variable.path.split("/")
    if model.name not in parts[:-1]:
        raise ValueError(f"variable {variable.path!r} does not lie under the model's name {model.name!r}.")
    return "/".join(parts[parts.index(model.name) + 1:])



def _by_position(items):
    """The keys of files (and models) saved by position: ``0000, 0001, ...``."""
    return [f"{i:04d}" for i in range(len(items))]


def _check_unique(keys, what):
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"two {what} share the key {dup!r}; they cannot be saved by name.")
    return keys


def keyed_by_path(model):
    """True when ``model``'s variables are saved under their paths (see the module docstring)."""
    return type(model).__name__ in _KEYED_BY_PATH


def variable_keys(model):
    """The key of each of ``model.weights``: its path without the model's name, or its position."""
    if not keyed_by_path(model):
        return _by_position(model.weights)
    return _check_unique([_relative_path(model, v) for v in model.weights], "weights")


def optimizer_keys(optimizer, model):
    """The key of each of ``optimizer.variables`` for an optimizer built on ``model``'s weights.

    By path: ``<optimizer class>/<name>`` (``adamw/iteration``), and for a slot of weight w
    ``<optimizer class>/<key of w>/<slot>`` (``adamw/conv_in/kernel/momentum``). Keras names a
    slot ``<w.path with '/' as '_'>_<slot>``, which is how the weight is found.
    """
    if not keyed_by_path(model):
        return _by_position(optimizer.variables)
    owners = [optimizer] + ([optimizer.inner_optimizer] if hasattr(optimizer, "inner_optimizer") else [])
    classes = {o.name: type(o).__name__.lower() for o in owners}
    slots = sorted(((v.path.replace("/", "_") + "_", key)
                    for v, key in zip(model.weights, variable_keys(model))), key=lambda p: -len(p[0]))
    keys = []
    for v in optimizer.variables:
        head, name = v.path.split("/")[-2:]            # <optimizer name>/<variable name>
        if head not in classes:
            raise ValueError(f"optimizer variable {v.path!r} belongs to no known optimizer "
                             f"({sorted(classes)}).")
        prefix, key = next(((p, k) for p, k in slots if name.startswith(p)), (None, None))
        keys.append(f"{classes[head]}/{name}" if prefix is None
                    else f"{classes[head]}/{key}/{name[len(prefix):]}")
    return _check_unique(keys, "optimizer variables")


def _assign(variables, keys, data, prefix, path):
    """Assign ``data[prefix/key]`` to each variable, after checking every array first."""
    values = []
    for v, key in zip(variables, keys):
        name = f"{prefix}/{key}"
        if name not in data:
            raise ValueError(f"{path!r} has no array {name!r} (for {v.path}); the file and this "
                             "model disagree.")
        if data[name].shape != tuple(v.shape):
            raise ValueError(f"{path!r}: {name} has shape {data[name].shape}, expected "
                             f"{tuple(v.shape)} for {v.path}.")
        values.append(data[name])
    expected = {f"{prefix}/{k}" for k in keys}
    extra = sorted(k for k in data if k.startswith(prefix + "/") and k not in expected)
    if extra:
        raise ValueError(f"{path!r} has {len(extra)} arrays this model does not have, e.g. "
                         f"{extra[0]!r}; the file and this model disagree.")
    for v, value in zip(variables, values):
        v.assign(value)


# ------------------------------------------------------------------------ training checkpoints
def write_checkpoint(path, meta, model, ema_model, optimizer):
    """Write a training checkpoint (``meta`` plus every variable), atomically."""
    model_keys = variable_keys(model)
    meta = dict(meta, format=CHECKPOINT_FORMAT,
                keys="path" if keyed_by_path(model) else "position")
    arrays = {"meta": np.array(json.dumps(meta))}
    for prefix, variables, keys in (("model", model.weights, model_keys),
                                    ("ema", ema_model.weights, model_keys),
                                    ("opt", optimizer.variables, optimizer_keys(optimizer, model))):
        for key, v in zip(keys, variables):
            arrays[f"{prefix}/{key}"] = np.asarray(v.numpy())
    return atomic_savez(path, arrays)


def check_checkpoint(path, data):
    """Raise ``ValueError`` unless ``data`` (from :func:`read_npz`) is a training checkpoint."""
    if data["meta"].get("format") not in _CHECKPOINT_FORMATS:
        raise ValueError(f"{path!r} is not a ddpm_lib training checkpoint (meta format "
                         f"{data['meta'].get('format')!r}).")


def assign_checkpoint(path, data, model, ema_model, optimizer):
    """Load the variables of a checkpoint read by :func:`read_npz` into the three objects."""
    check_checkpoint(path, data)
    meta = data["meta"]
    by_path = meta["format"] == CHECKPOINT_FORMAT and meta.get("keys") == "path"
    if by_path and not keyed_by_path(model):
        raise ValueError(f"{path!r} keys its arrays by path, but a {type(model).__name__} is "
                         "saved by position: another kind of model.")
    if by_path:                                   # else by position: version 1, older files
        model_keys, opt_keys = variable_keys(model), optimizer_keys(optimizer, model)
    else:
        model_keys = _by_position(model.weights)
        opt_keys = _by_position(optimizer.variables)
    _assign(model.weights, model_keys, data, "model", path)
    _assign(ema_model.weights, model_keys, data, "ema", path)
    _assign(optimizer.variables, opt_keys, data, "opt", path)


# ---------------------------------------------------------------------------- exported weights
def saved_model_config(config):
    """A stored model config as the network that wrote it was built: a conditional ``HoUNet``
    config written before ``class_embedding_scale`` existed gets s = 1, the scale it used."""
    config = dict(config)
    if config.get("num_classes") is not None and "class_embedding_scale" not in config:
        config["class_embedding_scale"] = 1.0
    return config


def model_classes():
    """The model classes a weights file can name: ``{"UNet": UNet, "HoUNet": HoUNet}``."""
    from .ho_unet import HoUNet
    from .unet import UNet
    return {"UNet": UNet, "HoUNet": HoUNet}


def export_weights(model, schedule, path, dtype="float16", extra=None):
    """Save a model's weights and config (+ the schedule) for sampling; float16 halves the size."""
    from .validate import one_of
    one_of(dtype, ("float16", "float32"), "dtype")
    if not model.weights:
        raise ValueError("the model has no weights yet; call it once (model.build_for(32)) first.")
    if type(model).__name__ not in model_classes():
        raise ValueError(f"export_weights saves a UNet or HoUNet; got a {type(model).__name__}.")
    meta = {"format": WEIGHTS_FORMAT, "model_class": type(model).__name__,
            "model_config": model.get_config(), "keys": "path" if keyed_by_path(model) else "position",
            "timesteps": schedule.timesteps, "betas": schedule.betas.tolist(), "extra": extra or {}}
    arrays = {f"weights/{k}": np.asarray(v.numpy()).astype(dtype)
              for k, v in zip(variable_keys(model), model.weights)}
    arrays["meta"] = np.array(json.dumps(meta))
    return atomic_savez(path, arrays)


def load_weights(path, image_size=32, dtype=None):
    """Build the model saved by :func:`export_weights` and return ``(model, schedule)``.

    The weights are float32. ``dtype`` is the model's Keras dtype policy: ``None`` (float32), or
    e.g. ``"mixed_bfloat16"`` to compute in bfloat16 with the same float32 weights. The model's
    ``trained_timesteps`` is the T of the schedule it was trained with (``sample`` warns when
    it is run with another T).
    """
    classes = model_classes()
    data = read_npz(path)
    meta = data["meta"]
    if meta.get("format") not in _WEIGHTS_FORMATS or meta.get("model_class") not in classes:
        raise ValueError(f"{path!r} is not a ddpm_lib UNet or HoUNet weights file (meta format "
                         f"{meta.get('format')!r}, class {meta.get('model_class')!r}).")
    cls = classes[meta["model_class"]]
    config = saved_model_config(meta["model_config"])
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
    if meta["format"] == WEIGHTS_FORMAT:
        if meta.get("keys") == "path":
            if not keyed_by_path(model):
                raise ValueError(f"{path!r} keys its weights by path, which a {cls.__name__} "
                                 "does not; the file is damaged.")
            keys = variable_keys(model)
        else:                                              # by position (older files)
            keys = _by_position(model.weights)
        prefix = "weights"
    else:                                                  # version 1: w0000, w0001, ...
        n = meta.get("n_weights")
        if n != len(model.weights):
            raise ValueError(f"{path!r} holds {n} weight arrays but {cls.__name__}({config}) has "
                             f"{len(model.weights)}; the file and this version of ddpm_lib disagree.")
        data = {k.replace("w", "weights/", 1): v for k, v in data.items() if k != "meta"}
        keys, prefix = _by_position(range(n)), "weights"
    bad = [k for k, v in data.items() if k != "meta" and not np.all(np.isfinite(v))]
    if bad:
        raise ValueError(f"{path!r} contains non-finite weights (nan or inf), e.g. in {bad[0]!r}.")
    _assign(model.weights, keys, {k: v.astype(np.float32) for k, v in data.items() if k != "meta"},
            prefix, path)
    model.trained_timesteps = len(meta["betas"])
    return model, schedule_from_meta(meta)


# -------------------------------------------------------------------- the evaluation classifier
def save_classifier(model, path, meta, dtype="float16"):
    """Save a Keras functional model whose layers are all named (``metrics.build_classifier``):
    ``weights/<variable path>`` (e.g. ``weights/features/kernel``) and ``meta``, atomically."""
    keys = _check_unique([v.path for v in model.weights], "weights")
    arrays = {f"weights/{k}": np.asarray(v.numpy()).astype(dtype) for k, v in zip(keys, model.weights)}
    arrays["meta"] = np.array(json.dumps(dict(meta, format=CLASSIFIER_FORMAT, keys="path")))
    return atomic_savez(path, arrays)


def load_classifier_weights(model, path):
    """Load a file of :func:`save_classifier` into ``model`` (float32) and return its ``meta``.

    Files of the first format (``ddpm_lib.classifier/1``: ``w0000, w0001, ...`` by position) load
    too, shape by shape."""
    data = read_npz(path)
    meta = data["meta"]
    if meta.get("format") == CLASSIFIER_FORMAT:
        keys = [v.path for v in model.weights]
    elif meta.get("format") == "ddpm_lib.classifier/1":
        keys = _by_position(model.weights)
        data = {k.replace("w", "weights/", 1): v for k, v in data.items() if k != "meta"}
    else:
        raise ValueError(f"{path!r} is not a ddpm_lib classifier file (meta format {meta.get('format')!r}).")
    _assign(model.weights, keys, {k: v.astype(np.float32) for k, v in data.items() if k != "meta"},
            "weights", path)
    return meta


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
