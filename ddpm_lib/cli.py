"""Command line: ``python -m ddpm_lib train|sample|export ...`` (also installed as ``ddpm``).

    python -m ddpm_lib train --data fashion_mnist --checkpoint-dir runs/fmnist --steps 20000
    python -m ddpm_lib train --conditional --init-weights uncond.npz --checkpoint-dir runs/cond ...
    python -m ddpm_lib sample --checkpoint-dir runs/fmnist --n 64 --method ddim --steps 50 --out grid.png
    python -m ddpm_lib sample --weights cond.npz --n 20 --labels 0,1,2,3,4,5,6,7,8,9 --guidance 2 ...
    python -m ddpm_lib export --checkpoint-dir runs/fmnist --out weights.npz

``train`` resumes from the newest checkpoint in ``--checkpoint-dir`` and trains until the total
step count ``--steps``; its configuration is stored in ``train_config.json`` there, and a resumed
run must use the same one. Every input is checked before any work starts; a bad one ends the
command with one line on stderr (``--debug`` shows the traceback of any failure).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

_RUN_KEYS = ("data", "data_npz", "test_per_class", "split_seed", "arch", "base_channels",
             "timesteps", "schedule", "batch_size", "lr", "warmup", "weight_decay",
             "grad_clip", "ema_decay", "seed", "image_size", "mixed_precision")
# The network's own settings, per --arch (a run made before --arch existed is "seed").
_NET_KEYS = {"seed": ("attention", "time_dim"),
             "ho": ("channel_mult", "num_res_blocks", "attn_resolutions", "dropout", "groups")}
_DEFAULT_BASE_CHANNELS = {"seed": 64, "ho": 32}
# (channels, image size) of each dataset but npz, known before it is loaded
_DATASETS = {"fashion_mnist": (1, 28), "mnist": (1, 28), "cifar10": (3, 32), "sample": (1, 28)}
_DOWNLOADED = ("fashion_mnist", "mnist", "cifar10")


class UsageError(ValueError):
    """A bad command-line input (exit status 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, with every error on one line (also used by tools/evaluate.py)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 1,2,2; got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, e.g. 1,2,2; got {text!r}")
    return values


def _label_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated class labels, e.g. 0,1,2; "
                                         f"got {text!r}")
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative class labels, e.g. 0,1,2; got {text!r}")
    return values


def _common(p):
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of a failure and TensorFlow's C++ log lines")


def _train_parser(sub):
    p = sub.add_parser("train", help="train a UNet with Algorithm 1 (resumes automatically)")
    p.add_argument("--data", default="fashion_mnist",
                   choices=["fashion_mnist", "mnist", "cifar10", "sample", "npz"],
                   help="dataset; 'npz' reads --data-npz (default: fashion_mnist, downloaded by Keras)")
    p.add_argument("--data-npz", help="a local .npz with 'images' (uint8) and optional 'labels'")
    p.add_argument("--test-per-class", type=int, default=1000,
                   help="for --data npz with labels: held-out images per class (default 1000)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of that per-class split")
    p.add_argument("--checkpoint-dir", required=True)
    p.add_argument("--steps", type=int, required=True, help="total training steps to reach")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=0, help="learning-rate warm-up steps")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--grad-clip", type=float, default=1.0, help="global-norm clip (0: none)")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--arch", default="ho", choices=["ho", "seed"],
                   help="the network: 'ho' is Ho et al.'s UNet (ddpm_lib.HoUNet, default), "
                        "'seed' the seed post's UNet (ddpm_lib.UNet)")
    p.add_argument("--base-channels", type=int, default=None,
                   help="width of the first level (default: 32 for ho; 64, the seed's, for seed)")
    g = p.add_argument_group("--arch ho (defaults: the reference model)")
    g.add_argument("--channel-mult", type=_int_list, default=[1, 2, 2], help="level widths / c (1,2,2)")
    g.add_argument("--num-res-blocks", type=int, default=2)
    g.add_argument("--attn-resolutions", type=_int_list, default=[16], help="sizes with attention (16)")
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--groups", type=int, default=8, help="GroupNorm groups (8)")
    g.add_argument("--conditional", action="store_true",
                   help="class-conditional network (HoUNet(num_classes=K), K from the labels) "
                        "trained for classifier-free guidance (Ho & Salimans, 2022)")
    g.add_argument("--p-uncond", type=float, default=0.1,
                   help="with --conditional: probability that a label is dropped to the null "
                        "class during training (0.1)")
    g = p.add_argument_group("--arch seed")
    g.add_argument("--attention", default="seed", choices=["seed", "origin"])
    g.add_argument("--time-dim", type=int, default=256)
    p.add_argument("--timesteps", type=int, default=1000)
    p.add_argument("--schedule", default="linear", choices=["linear", "cosine"])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--mixed-precision", choices=["mixed_float16", "mixed_bfloat16"])
    p.add_argument("--jit", action="store_true", help="XLA-compile the train step")
    p.add_argument("--export", help="after training, export the EMA weights (float16) here")
    p.add_argument("--init-weights",
                   help="only when --checkpoint-dir has no checkpoint: warm-start from these "
                        "exported weights (`export --dtype float32`) of the same run, continuing "
                        "its step count with a fresh optimizer; not an exact resume (a float16 "
                        "export, the default, works too: its weights are rounded to float16). With "
                        "--conditional and the weights of an *unconditional* model of the same "
                        "architecture: fine-tune from them (class embedding zero, step 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)


def _sample_parser(sub):
    p = sub.add_parser("sample", help="generate images from a checkpoint or exported weights")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="an exported weights .npz")
    src.add_argument("--checkpoint-dir", help="use the EMA weights of the newest checkpoint")
    src.add_argument("--reference", nargs="?", const=True, metavar="NAME",
                     help="a reference model shipped with ddpm_lib: ho-unet (the book's reference "
                          "model, used when NAME is left out), seed-unet or conditional")
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--method", default="ddpm", choices=["ddpm", "ddim", "dpm_solver"],
                   help="ddpm: Algorithm 2 (default); ddim; dpm_solver: DPM-Solver++(2M), "
                        "deterministic, made for few steps (give --steps 10-20)")
    p.add_argument("--steps", type=int, default=None,
                   help="model calls (default: all T, e.g. 1000, for every method, dpm_solver "
                        "included: it needs only 10-20); DDPM with fewer steps is respaced")
    p.add_argument("--eta", type=float, default=None,
                   help="DDIM's stochasticity, in [0, 1] (default 0: deterministic); only with "
                        "--method ddim (refused with the others, which do not use it)")
    p.add_argument("--variance", default=None, choices=["posterior", "beta"],
                   help="DDPM's sigma_t^2: posterior (beta tilde, default) or beta (Ho et al., "
                        "Sec. 3.2); only with --method ddpm (refused with the others, which do "
                        "not use it)")
    p.add_argument("--clip-x0", action="store_true",
                   help="clip the predicted x_0 to [-1, 1] in every step (as Ho et al.'s code)")
    p.add_argument("--labels", type=_label_list,
                   help="class-conditional models: the class of each image, comma-separated and "
                        "repeated up to --n images, e.g. 0,1,2,3,4,5,6,7,8,9 (default: none, "
                        "unconditional sampling)")
    p.add_argument("--guidance", type=float, default=0.0,
                   help="classifier-free guidance strength w >= 0, with --labels: eps = (1 + w) "
                        "eps(x, t, y) - w eps(x, t, null) (0: plain conditional sampling)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--out", default="samples.png", help="grid image (.png) or raw arrays (.npz)")
    p.add_argument("--gif", help="also write the reverse process of the first 16 images as a GIF")
    _common(p)


def _export_parser(sub):
    p = sub.add_parser("export", help="export the EMA weights of the newest checkpoint")
    p.add_argument("--checkpoint-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    _common(p)


def build_parser():
    parser = OneLineParser(prog="python -m ddpm_lib", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _sample_parser(sub)
    _export_parser(sub)
    return parser


# ------------------------------------------------------------------------------ input checks
def _check(check, *args, **kwargs):
    """Run one of ``ddpm_lib.validate``'s checks; its ValueError becomes a UsageError."""
    try:
        return check(*args, **kwargs)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _check_dir(path, flag):
    """``path`` is a directory, or does not exist yet (it will be created)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is a file, not a directory.")


def _check_existing_dir(path, flag):
    if not os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is not a directory" +
                         (" (it is a file)." if os.path.exists(path) else " (it does not exist)."))


def _check_out(path, flag, suffixes=None, expected=None):
    """An output file we can write: not a directory, in an existing writable directory."""
    if suffixes is not None and not path.lower().endswith(tuple(suffixes)):
        raise UsageError(f"{flag} must end with {expected or ' or '.join(suffixes)}; got {path!r}.")
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is a directory; give a file name.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path!r}: the folder {os.path.dirname(path) or '.'!r} does not "
                         "exist; create it first.")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path!r}: the folder {os.path.dirname(path) or '.'!r} is not writable.")


def _image_suffixes():
    """File endings Pillow can write (for ``sample --out``), plus .npz."""
    from PIL import Image
    Image.init()
    return sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)


def _check_train_args(args):
    from . import validate
    from .validate import non_negative_int, positive_int
    _check(non_negative_int, args.steps, "--steps")
    for flag in ("batch_size", "checkpoint_every", "log_every", "test_per_class", "timesteps",
                 "image_size", "num_res_blocks", "groups", "time_dim"):
        _check(positive_int, getattr(args, flag), "--" + flag.replace("_", "-"))
    if args.base_channels is not None:
        _check(positive_int, args.base_channels, "--base-channels")
    _check(non_negative_int, args.warmup, "--warmup")
    _check(validate.positive_number, args.lr, "--lr")
    _check(validate.finite_number, args.weight_decay, "--weight-decay", minimum=0)
    _check(validate.finite_number, args.grad_clip, "--grad-clip", minimum=0)   # 0: no clipping
    _check(validate.fraction, args.ema_decay, "--ema-decay")
    _check(validate.fraction, args.dropout, "--dropout")
    _check(validate.fraction, args.p_uncond, "--p-uncond")
    if args.conditional and args.arch != "ho":
        raise UsageError(f"--conditional needs --arch ho (HoUNet); got --arch {args.arch}.")
    if args.data == "npz" and not args.data_npz:
        raise UsageError("--data npz needs --data-npz FILE (an .npz with uint8 'images').")
    if args.data != "npz" and args.data_npz:
        raise UsageError(f"--data-npz is read only with --data npz (got --data {args.data}).")
    _check_dir(args.checkpoint_dir, "--checkpoint-dir")
    if args.export:
        _check_out(args.export, "--export")
    if args.init_weights and not os.path.isfile(args.init_weights):
        raise UsageError(f"--init-weights {args.init_weights!r} is not a file.")


def _check_sample_args(args):
    from . import validate
    from .validate import positive_int
    _check(positive_int, args.n, "--n")
    _check(positive_int, args.image_size, "--image-size")
    if args.steps is not None:
        _check(positive_int, args.steps, "--steps")
    sampler_options(args.method, args.eta, args.variance)
    _check(validate.finite_number, args.guidance, "--guidance", minimum=0)
    if args.guidance and args.labels is None:
        raise UsageError(f"--guidance {args.guidance} needs --labels (classifier-free guidance "
                         "steers towards a class).")
    if args.checkpoint_dir is not None:
        _check_existing_dir(args.checkpoint_dir, "--checkpoint-dir")
    if args.weights is not None and not os.path.isfile(args.weights):
        raise UsageError(f"--weights {args.weights!r}: no such file.")
    _check_out(args.out, "--out", [".npz"] + _image_suffixes(),
               ".png (or another image format Pillow writes, e.g. .jpg) or .npz")
    if args.gif:
        _check_out(args.gif, "--gif", [".gif"])


def sampler_options(method, eta=None, variance=None):
    """The keywords of ``sample`` that ``--method``, ``--eta`` and ``--variance`` give.

    Only what the method uses: ``eta`` (default 0) for ddim, ``variance`` (default
    ``"posterior"``) for ddpm. A flag the method does not use is refused (a UsageError), not
    ignored. Shared by ``sample`` and ``tools/evaluate.py``.
    """
    from . import validate
    if eta is not None:
        _check(validate.eta, eta, "--eta")
        if method != "ddim":
            raise UsageError(f"--eta is DDIM's stochasticity and is used only with --method ddim; "
                             f"--method {method} does not use it (leave --eta out).")
    if variance is not None and method != "ddpm":
        raise UsageError(f"--variance is DDPM's choice of sigma_t^2 and is used only with --method "
                         f"ddpm; --method {method} does not use it (leave --variance out).")
    options = {"method": method}
    if method == "ddim":
        options["eta"] = 0.0 if eta is None else float(eta)
    if method == "ddpm":
        options["variance"] = variance or "posterior"
    return options


def _check_export_args(args):
    _check_existing_dir(args.checkpoint_dir, "--checkpoint-dir")
    _check_out(args.out, "--out")


# ------------------------------------------------------------------------------------ train
def _read_npz_data(args):
    """``(images, labels), (held-out images, labels)`` of ``--data npz`` (labels, held-out images
    None when the file has no labels); a UsageError for a bad file."""
    import zipfile
    from . import data
    unreadable = (f"--data-npz {args.data_npz!r} is not a readable .npz file with uint8 'images'")
    if not os.path.isfile(args.data_npz):
        raise UsageError(f"--data-npz {args.data_npz!r}: " + (
            "a directory, not a file." if os.path.isdir(args.data_npz) else "no such file."))
    if not zipfile.is_zipfile(args.data_npz):                 # an .npz is a zip archive
        raise UsageError(unreadable + ".")
    try:
        images, labels = data.load_npz(args.data_npz)
    except ValueError as e:
        raise UsageError(f"--data-npz {args.data_npz!r}: {e}") from None
    except Exception as e:                    # a corrupt zip, ...
        raise UsageError(f"{unreadable} ({type(e).__name__}: {e}).") from None
    if labels is None:
        return (images, None), (None, None)
    try:
        return data.split_per_class(images, labels, args.test_per_class, args.split_seed)
    except ValueError as e:
        raise UsageError(f"--data-npz {args.data_npz!r}: {e} (see --test-per-class)") from None


def _download(args):
    from . import data
    loader = {"fashion_mnist": data.load_fashion_mnist, "mnist": data.load_mnist,
              "cifar10": data.load_cifar10}[args.data]
    try:
        (x, y), (xt, yt) = loader()
    except Exception as e:       # Keras raises a bare Exception for a failed download
        reason = " ".join(str(e).split())
        raise UsageError(
            f"could not download {args.data} ({reason[:200]}); without internet use "
            "--data npz --data-npz FILE (a local .npz with uint8 'images') or --data sample "
            "(the 2,000 images shipped with ddpm_lib).") from None
    return (x, y), (xt, yt)


def _make_schedule(name, timesteps):
    from .schedule import cosine_schedule, linear_schedule
    return (linear_schedule if name == "linear" else cosine_schedule)(timesteps)


def _run_config(args, channels, num_classes=None):
    """The run's configuration, as stored in train_config.json.

    ``num_classes`` and ``p_uncond`` are None for an unconditional run (and absent from files
    written before --conditional existed, which reads as None). A conditional run records the
    network's ``class_embedding_scale`` (``HoUNet``'s default); a conditional file without it was
    written before the scale existed and is resumed with s = 1, as it was trained.
    """
    if args.base_channels is None:
        args.base_channels = _DEFAULT_BASE_CHANNELS[args.arch]
    cfg = {k: getattr(args, k) for k in _RUN_KEYS + _NET_KEYS[args.arch]}
    cfg["channels"] = channels
    cfg["num_classes"] = num_classes if args.conditional else None
    cfg["p_uncond"] = args.p_uncond if args.conditional else None
    if args.conditional:
        from .ho_unet import CLASS_EMBEDDING_SCALE
        cfg["class_embedding_scale"] = CLASS_EMBEDDING_SCALE
    return cfg


def _model_from_config(cfg):
    """A new, unbuilt network for a run configuration (seeded by the run's seed)."""
    import keras
    from .ho_unet import HoUNet
    from .unet import UNet
    keras.utils.set_random_seed(cfg["seed"])     # the same command gives the same initial weights
    dtype = cfg.get("mixed_precision") or None
    scale = {"class_embedding_scale": cfg.get("class_embedding_scale", 1.0)} if cfg.get("num_classes") else {}
    if cfg.get("arch", "seed") == "seed":
        return UNet(image_channels=cfg["channels"], base_channels=cfg["base_channels"],
                    attention=cfg["attention"], time_dim=cfg["time_dim"], dtype=dtype)
    return HoUNet(image_channels=cfg["channels"], image_size=cfg["image_size"],
                  base_channels=cfg["base_channels"], channel_mult=tuple(cfg["channel_mult"]),
                  num_res_blocks=cfg["num_res_blocks"], attn_resolutions=tuple(cfg["attn_resolutions"]),
                  dropout=cfg["dropout"], groups=cfg["groups"], num_classes=cfg.get("num_classes"),
                  **scale, dtype=dtype)


def _check_run_config(cfg, size):
    """The network and schedule of ``cfg`` can be built, and images of ``size`` fit it."""
    if cfg["arch"] == "seed" and cfg["image_size"] % 8:
        raise UsageError(f"--image-size must be divisible by 8 for --arch seed; got {cfg['image_size']}.")
    try:
        _make_schedule(cfg["schedule"], cfg["timesteps"])
        _model_from_config(cfg)                      # unbuilt: checks the settings, no weights
    except ValueError as e:
        raise UsageError(f"--arch {cfg['arch']}: {e}") from None
    if size > cfg["image_size"]:
        raise UsageError(f"the images are {size} pixels wide or high, larger than --image-size "
                         f"{cfg['image_size']}; give --image-size >= {size}.")


def _trainer_from_config(cfg, checkpoint_dir, verbose=True, checkpoint_every=1000, jit=False):
    from .trainer import Trainer
    model = _model_from_config(cfg)
    conditional = {"p_uncond": cfg["p_uncond"]} if cfg.get("num_classes") else {}
    return Trainer(model, _make_schedule(cfg["schedule"], cfg["timesteps"]), **conditional,
                   batch_size=cfg["batch_size"], learning_rate=cfg["lr"],
                   weight_decay=cfg["weight_decay"], warmup_steps=cfg["warmup"],
                   grad_clip=cfg["grad_clip"] or None, ema_decay=cfg["ema_decay"],
                   image_size=cfg["image_size"], seed=cfg["seed"], checkpoint_dir=checkpoint_dir,
                   checkpoint_every=checkpoint_every, jit_compile=jit,
                   mixed_precision=cfg.get("mixed_precision"), verbose=verbose)


def _flag(key):
    return "--" + key.replace("_", "-")


def _init_weights_error(path, error):
    """One line for a refused ``--init-weights`` file, naming the file once."""
    message = str(error)
    if message.startswith(repr(path)):
        return f"--init-weights {message}"
    return f"--init-weights {path!r}: {message}"


def _check_init_weights(meta, cfg, path, fine_tune):
    """The exported weights ``meta`` (from ``read_npz``) fit the run ``cfg``, in flag names.

    A warm start continues the run that exported them: the same network, schedule, --batch-size,
    --seed and --image-size. A fine-tune (``--conditional`` from an unconditional file) needs
    the same network but for the classes, and the same schedule.
    """
    from .checkpoint import check_same_run, schedule_from_meta, schedule_hash
    net = meta.get("model_config") or {}
    arch = {"HoUNet": "ho", "UNet": "seed"}.get(meta.get("model_class"))
    if arch is None:                # not a weights file: Trainer.warm_start says so
        return
    saved = {"arch": arch}
    if arch == cfg["arch"]:
        saved.update({"channels": net.get("image_channels"), "base_channels": net.get("base_channels"),
                      **{k: net.get(k) for k in _NET_KEYS[arch]},
                      "timesteps": len(meta.get("betas") or ())})
        if arch == "ho":
            saved["image_size"] = net.get("image_size")
        if saved["timesteps"] == cfg["timesteps"]:      # the same T: the same betas?
            betas = schedule_hash(schedule_from_meta(meta))
            saved["schedule"] = next(
                (name for name in ("linear", "cosine")
                 if schedule_hash(_make_schedule(name, cfg["timesteps"])) == betas), "another")
        if not fine_tune:
            hparams = (meta.get("extra") or {}).get("hparams") or {}
            saved["num_classes"] = net.get("num_classes")
            saved.update({k: hparams[k] for k in ("batch_size", "seed", "image_size") if k in hparams})
    given = {k: cfg.get(k) for k in saved}
    names = {"channels": "image channels (of --data)", "num_classes": "classes (--conditional)"}
    advice = ("a fine-tune needs the unconditional model's architecture and schedule" if fine_tune
              else "a warm start continues the run that exported them: give its settings")
    try:
        check_same_run(saved, given, f"--init-weights {path!r}",
                       name=lambda k: names.get(k, _flag(k)), advice=advice)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _start_from_weights(trainer, args, cfg):
    """Warm-start or fine-tune ``trainer`` from ``--init-weights``; returns the start's message.

    The run's record in ``cfg`` says how it began: ``warm_start`` (file, step, dtype) or
    ``fine_tuned_from`` (file, dtype). A float16 file (``export``'s default, e.g. the shipped
    reference weights) is accepted, and the message and record say that its weights are rounded.
    """
    from .checkpoint import read_npz
    path = args.init_weights
    try:
        data = read_npz(path)
    except (OSError, ValueError) as e:
        raise UsageError(_init_weights_error(path, e)) from None
    meta = data["meta"]
    fine_tune = args.conditional and "num_classes" not in (meta.get("model_config") or {})
    _check_init_weights(meta, cfg, path, fine_tune)
    dtype = "+".join(sorted({v.dtype.name for k, v in data.items() if k != "meta"}))
    rounded = " (float16 weights, rounded)" if "float16" in dtype else ""
    record = {"file": os.path.basename(path), "dtype": dtype}
    try:
        if fine_tune:
            trainer.fine_tune_from(path)
            cfg["fine_tuned_from"] = record
            return (f"fine-tuning from the unconditional weights {path}{rounded}: class embedding "
                    "zero, step 0, a fresh optimizer")
        start = trainer.warm_start(path)
    except (OSError, ValueError) as e:
        raise UsageError(_init_weights_error(path, e)) from None
    cfg["warm_start"] = dict(record, step=start)
    return f"warm-started from {path}{rounded}: EMA weights of step {start}, the optimizer starts afresh"


def cmd_train(args):
    from .checkpoint import atomic_write_json, check_same_run
    _check_train_args(args)
    images = labels = val = val_labels = None
    num_classes = 10                           # every dataset but npz has 10 classes
    if args.data == "npz":
        (images, labels), (val, val_labels) = _read_npz_data(args)
        channels = 1 if images.ndim == 3 else int(images.shape[-1])
        size = max(images.shape[1:3])
        if args.conditional:
            if labels is None:
                raise UsageError(f"--conditional needs labels; --data-npz {args.data_npz!r} has "
                                 "no 'labels' array.")
            num_classes = int(np.max(labels)) + 1
    else:
        channels, size = _DATASETS[args.data]
    cfg = _run_config(args, channels, num_classes)
    _check_run_config(cfg, size)
    cfg_path = os.path.join(args.checkpoint_dir, "train_config.json")
    saved = None
    if os.path.exists(cfg_path):
        try:
            with open(cfg_path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"{cfg_path!r} is not readable JSON ({e}).") from None
        saved.setdefault("arch", "seed")
        if saved.get("num_classes") and cfg.get("num_classes"):
            # not a flag: a resumed run keeps the scale it was trained with (1 if the file was
            # written before the scale existed)
            cfg["class_embedding_scale"] = saved.setdefault("class_embedding_scale", 1.0)
        try:
            check_same_run(saved, cfg, repr(args.checkpoint_dir), name=_flag,
                           advice="use the saved values to resume, or a new --checkpoint-dir")
        except ValueError as e:
            raise UsageError(str(e)) from None
    # How the run starts (resume, warm start, fine-tune or from scratch), decided and checked
    # on the Trainer (no data needed) before any data are loaded and anything is written.
    trainer = _trainer_from_config(cfg, args.checkpoint_dir, verbose=not args.quiet,
                                   checkpoint_every=args.checkpoint_every, jit=args.jit)
    start = trainer.restore()
    if start:
        how = f"resumed at step {start}" + (" (--init-weights ignored: resuming from the "
                                             "checkpoint)" if args.init_weights else "")
    elif args.init_weights:
        how = _start_from_weights(trainer, args, cfg)
    else:
        how = "starting from scratch"
    # -- the inputs are good: the work starts here
    if args.data == "sample":
        from .data import load_sample
        images, labels = load_sample()
    elif args.data in _DOWNLOADED:
        (images, labels), (val, val_labels) = _download(args)
    if not args.conditional:
        labels = val_labels = None
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    if saved is None or not start:             # a run that begins now: its record says how
        atomic_write_json(cfg_path, cfg)
    print(f"{how}; {len(images)} training images; model {trainer.model.count_params():,} parameters",
          flush=True)
    remaining = args.steps - trainer.step
    if remaining > 0:
        t0 = time.perf_counter()

        def report(tr, step, loss):
            if args.quiet and tr.history and tr.history[-1]["step"] == step:
                print(json.dumps(tr.history[-1]), flush=True)
        trainer.fit(images, remaining, val_images=val, log_every=args.log_every, callback=report,
                    labels=labels, val_labels=val_labels)
        dt = time.perf_counter() - t0
        print(f"trained {remaining} steps in {dt:.0f} s "
              f"({remaining * args.batch_size / dt:.1f} images/s); step {trainer.step}", flush=True)
    else:
        print(f"already at step {trainer.step} >= --steps {args.steps}; nothing to do")
    if args.export:
        if trainer.step > args.steps:       # the weights of step --steps are gone: never mislabel
            raise UsageError(f"the run is at step {trainer.step}, past --steps {args.steps}, so its "
                             f"weights of step {args.steps} no longer exist; --export {args.export!r} "
                             "was not written (`python -m ddpm_lib export` writes the current ones).")
        trainer.export(args.export)
        print(f"exported EMA weights of step {trainer.step} to {args.export}")
    return 0


# ---------------------------------------------------------------------------- sample, export
def _trainer_from_dir(checkpoint_dir):
    """The Trainer of a CLI run, restored from its newest readable checkpoint."""
    from .checkpoint import latest_checkpoint
    if latest_checkpoint(checkpoint_dir) is None:
        raise UsageError(f"no checkpoint (ckpt-*.npz) in {checkpoint_dir!r}")
    cfg_path = os.path.join(checkpoint_dir, "train_config.json")
    if not os.path.exists(cfg_path):
        raise UsageError(f"{checkpoint_dir!r} has no train_config.json; was it made by "
                         "`python -m ddpm_lib train`?")
    with open(cfg_path) as f:
        cfg = json.load(f)
    trainer = _trainer_from_config(cfg, checkpoint_dir, verbose=False)
    trainer.restore()
    return trainer


def load_model_source(weights=None, reference=None, image_size=32):
    """``(model, schedule)`` of ``--weights FILE`` or ``--reference [NAME]`` (``True``: the
    default reference model); a UsageError naming the flag. Also used by tools/evaluate.py."""
    if reference is None and weights is None:
        raise UsageError("give --weights FILE or --reference [NAME].")
    if reference is not None:
        from .reference import load_reference
        try:
            return load_reference(None if reference is True else reference)
        except (OSError, ValueError) as e:
            raise UsageError(f"--reference: {e}") from None
    from .checkpoint import load_weights
    try:
        return load_weights(weights, image_size=image_size)
    except (OSError, ValueError) as e:
        raise UsageError(f"--weights {weights!r}: {e}") from None


def check_steps(steps, schedule):
    """``--steps`` (None: all T) is an integer in [1, T], T the model's; a UsageError otherwise."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer))
                              or not 1 <= steps <= schedule.timesteps):
        raise UsageError(f"--steps must be an integer in [1, {schedule.timesteps}] (the model's "
                         f"T); got {steps}.")


def _load_model(args):
    """``(model, schedule)`` of the sample command, checked against ``--image-size``."""
    import tensorflow as tf
    if args.reference is not None or args.weights:
        model, schedule = load_model_source(args.weights, args.reference, args.image_size)
    else:
        trainer = _trainer_from_dir(args.checkpoint_dir)
        model, schedule = trainer.ema_model, trainer.schedule
    try:                      # one call on zeros: the network accepts images of this size
        model(tf.zeros([1, args.image_size, args.image_size, model.image_channels]),
              tf.zeros([1], tf.int32))
    except ValueError as e:
        raise UsageError(f"--image-size {args.image_size} does not fit this model: {e}") from None
    check_steps(args.steps, schedule)
    if args.labels is not None:
        from .validate import class_labels
        if getattr(model, "num_classes", None) is None:
            raise UsageError("--labels needs a class-conditional model (train --conditional); "
                             "this one is unconditional.")
        _check(class_labels, args.labels, model.num_classes, "--labels")
    return model, schedule


def cmd_sample(args):
    _check_sample_args(args)
    from .sampler import sample
    from . import viz
    model, schedule = _load_model(args)
    shape = (args.n, args.image_size, args.image_size, model.image_channels)
    labels = None if args.labels is None else np.resize(np.array(args.labels, np.int32), args.n)
    t0 = time.perf_counter()
    out = sample(model, schedule, shape, **sampler_options(args.method, args.eta, args.variance),
                 steps=args.steps, seed=args.seed, return_trajectory=bool(args.gif),
                 clip_x0=args.clip_x0, labels=labels, guidance=args.guidance)
    x0, traj = out if args.gif else (out, None)
    dt = time.perf_counter() - t0
    if args.out.lower().endswith(".npz"):
        from .checkpoint import atomic_savez
        from .data import to_uint8
        atomic_savez(args.out, {"images": to_uint8(x0.numpy()),
                                "meta": np.array(json.dumps(vars(args)))})
    else:
        viz.save_grid(x0.numpy(), args.out)
    print(f"{args.n} images in {dt:.1f} s -> {args.out}")
    if traj is not None:
        viz.save_gif(traj.numpy()[:, :16], args.gif)
        print(f"reverse process -> {args.gif}")
    return 0


def cmd_export(args):
    _check_export_args(args)
    trainer = _trainer_from_dir(args.checkpoint_dir)
    trainer.export(args.out, dtype=args.dtype)
    print(f"exported {trainer.ema_model.count_params():,} EMA weights ({args.dtype}) of step "
          f"{trainer.step} to {args.out}")
    return 0


def _one_line(text):
    return " ".join(str(text).split())


def main(argv=None):
    """Run a command; returns its exit status (0, 1 for a failure, 2 for a bad input)."""
    args = build_parser().parse_args(argv)
    command = {"train": cmd_train, "sample": cmd_sample, "export": cmd_export}[args.command]
    with warnings.catch_warnings():
        # a warning (e.g. a corrupt newest checkpoint, skipped) is one line too
        warnings.showwarning = lambda message, *a, **k: print(
            f"warning: {_one_line(message)}", file=sys.stderr, flush=True)
        if args.debug:
            return command(args)
        try:
            return command(args)
        except UsageError as e:
            print(f"error: {_one_line(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        except Exception as e:                        # noqa: BLE001 - one line, not a traceback
            print(f"error: {_one_line(e) or type(e).__name__} (--debug shows the traceback)",
                  file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
