"""Command line: ``python -m ddpm_lib train|sample|export ...`` (also installed as ``ddpm``).

    python -m ddpm_lib train --data fashion_mnist --checkpoint-dir runs/fmnist --steps 20000
    python -m ddpm_lib sample --checkpoint-dir runs/fmnist --n 64 --method ddim --steps 50 --out grid.png
    python -m ddpm_lib export --checkpoint-dir runs/fmnist --out weights.npz

``train`` resumes from the newest checkpoint in ``--checkpoint-dir`` and trains until the total
step count ``--steps``; its configuration is stored in ``train_config.json`` there, and a resumed
run must use the same one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

_RUN_KEYS = ("data", "data_npz", "test_per_class", "split_seed", "arch", "base_channels",
             "timesteps", "schedule", "batch_size", "lr", "warmup", "weight_decay",
             "grad_clip", "ema_decay", "seed", "image_size", "mixed_precision")
# The network's own settings, per --arch (a run made before --arch existed is "seed").
_NET_KEYS = {"seed": ("attention", "time_dim"),
             "ho": ("channel_mult", "num_res_blocks", "attn_resolutions", "dropout", "groups")}
_DEFAULT_BASE_CHANNELS = {"seed": 64, "ho": 32}


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 1,2,2; got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, e.g. 1,2,2; got {text!r}")
    return values


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
    p.add_argument("--grad-clip", type=float, default=1.0)
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _sample_parser(sub):
    p = sub.add_parser("sample", help="generate images from a checkpoint or exported weights")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="an exported weights .npz")
    src.add_argument("--checkpoint-dir", help="use the EMA weights of the newest checkpoint")
    src.add_argument("--reference", action="store_true", help="the reference model shipped with ddpm_lib")
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--method", default="ddpm", choices=["ddpm", "ddim"])
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: all T)")
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--variance", default="posterior", choices=["posterior", "beta"])
    p.add_argument("--clip-x0", action="store_true",
                   help="clip the predicted x_0 to [-1, 1] in every step (as Ho et al.'s code)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--out", default="samples.png", help="grid image (.png) or raw arrays (.npz)")
    p.add_argument("--gif", help="also write the reverse process of the first 16 images as a GIF")


def _export_parser(sub):
    p = sub.add_parser("export", help="export the EMA weights of the newest checkpoint")
    p.add_argument("--checkpoint-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m ddpm_lib", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _sample_parser(sub)
    _export_parser(sub)
    return parser


def _load_data(args):
    from . import data
    if args.data == "npz":
        if not args.data_npz:
            raise SystemExit("error: --data npz needs --data-npz PATH")
        images, labels = data.load_npz(args.data_npz)
        if labels is None:
            return images, None
        (x, _), (xt, _) = data.split_per_class(images, labels, args.test_per_class, args.split_seed)
        return x, xt
    if args.data == "sample":
        images, _ = data.load_sample()
        return images, None
    loader = {"fashion_mnist": data.load_fashion_mnist, "mnist": data.load_mnist,
              "cifar10": data.load_cifar10}[args.data]
    (x, _), (xt, _) = loader()
    return x, xt


def _make_schedule(name, timesteps):
    from .schedule import cosine_schedule, linear_schedule
    return (linear_schedule if name == "linear" else cosine_schedule)(timesteps)


def _run_config(args, channels):
    """The run's configuration, as stored in train_config.json."""
    if args.base_channels is None:
        args.base_channels = _DEFAULT_BASE_CHANNELS[args.arch]
    cfg = {k: getattr(args, k) for k in _RUN_KEYS + _NET_KEYS[args.arch]}
    cfg["channels"] = channels
    return cfg


def _model_from_config(cfg):
    """A new, unbuilt network for a run configuration (seeded by the run's seed)."""
    import keras
    from .ho_unet import HoUNet
    from .unet import UNet
    keras.utils.set_random_seed(cfg["seed"])     # the same command gives the same initial weights
    dtype = cfg.get("mixed_precision") or None
    if cfg.get("arch", "seed") == "seed":
        return UNet(image_channels=cfg["channels"], base_channels=cfg["base_channels"],
                    attention=cfg["attention"], time_dim=cfg["time_dim"], dtype=dtype)
    return HoUNet(image_channels=cfg["channels"], image_size=cfg["image_size"],
                  base_channels=cfg["base_channels"], channel_mult=tuple(cfg["channel_mult"]),
                  num_res_blocks=cfg["num_res_blocks"], attn_resolutions=tuple(cfg["attn_resolutions"]),
                  dropout=cfg["dropout"], groups=cfg["groups"], dtype=dtype)


def _trainer_from_config(cfg, checkpoint_dir, verbose=True, checkpoint_every=1000, jit=False):
    from .trainer import Trainer
    model = _model_from_config(cfg)
    return Trainer(model, _make_schedule(cfg["schedule"], cfg["timesteps"]),
                   batch_size=cfg["batch_size"], learning_rate=cfg["lr"],
                   weight_decay=cfg["weight_decay"], warmup_steps=cfg["warmup"],
                   grad_clip=cfg["grad_clip"] or None, ema_decay=cfg["ema_decay"],
                   image_size=cfg["image_size"], seed=cfg["seed"], checkpoint_dir=checkpoint_dir,
                   checkpoint_every=checkpoint_every, jit_compile=jit,
                   mixed_precision=cfg.get("mixed_precision"), verbose=verbose)


def cmd_train(args):
    images, val = _load_data(args)
    channels = 1 if images.ndim == 3 else int(images.shape[-1])
    cfg = _run_config(args, channels)
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    cfg_path = os.path.join(args.checkpoint_dir, "train_config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            saved = json.load(f)
        saved.setdefault("arch", "seed")
        diff = {k: (saved.get(k), v) for k, v in cfg.items() if saved.get(k) != v}
        if diff:
            lines = "\n".join(f"  --{k.replace('_', '-')}: saved {a!r}, given {b!r}" for k, (a, b) in diff.items())
            raise SystemExit(f"error: {args.checkpoint_dir} holds a run with another configuration:\n"
                             f"{lines}\nUse the saved values to resume, or a new --checkpoint-dir.")
    else:
        tmp = cfg_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(cfg, f, indent=1)
        os.replace(tmp, cfg_path)
    trainer = _trainer_from_config(cfg, args.checkpoint_dir, verbose=not args.quiet,
                                   checkpoint_every=args.checkpoint_every, jit=args.jit)
    start = trainer.restore()
    print(f"{'resumed at step ' + str(start) if start else 'starting from scratch'}; "
          f"{len(images)} training images; model {trainer.model.count_params():,} parameters",
          flush=True)
    remaining = args.steps - trainer.step
    if remaining > 0:
        t0 = time.perf_counter()
        def report(tr, step, loss):
            if args.quiet and tr.history and tr.history[-1]["step"] == step:
                print(json.dumps(tr.history[-1]), flush=True)
        trainer.fit(images, remaining, val_images=val, log_every=args.log_every, callback=report)
        dt = time.perf_counter() - t0
        print(f"trained {remaining} steps in {dt:.0f} s "
              f"({remaining * args.batch_size / dt:.1f} images/s); step {trainer.step}", flush=True)
    else:
        print(f"already at step {trainer.step} >= --steps {args.steps}; nothing to do")
    if args.export:
        trainer.export(args.export)
        print(f"exported EMA weights to {args.export}")
    return 0


def _trainer_from_dir(checkpoint_dir):
    """The Trainer of a CLI run, restored from its newest checkpoint."""
    from .checkpoint import latest_checkpoint
    path = latest_checkpoint(checkpoint_dir)
    if path is None:
        raise SystemExit(f"error: no checkpoint (ckpt-*.npz) in {checkpoint_dir!r}")
    cfg_path = os.path.join(checkpoint_dir, "train_config.json")
    if not os.path.exists(cfg_path):
        raise SystemExit(f"error: {checkpoint_dir!r} has no train_config.json; was it made by "
                         "`python -m ddpm_lib train`?")
    with open(cfg_path) as f:
        cfg = json.load(f)
    trainer = _trainer_from_config(cfg, checkpoint_dir, verbose=False)
    trainer.restore(path)
    return trainer


def _load_model(args):
    from .checkpoint import load_weights
    if args.reference:
        from .reference import load_reference
        return load_reference()
    if args.weights:
        return load_weights(args.weights, image_size=args.image_size)
    trainer = _trainer_from_dir(args.checkpoint_dir)
    return trainer.ema_model, trainer.schedule


def cmd_sample(args):
    from .sampler import sample
    from . import viz
    model, schedule = _load_model(args)
    shape = (args.n, args.image_size, args.image_size, model.image_channels)
    t0 = time.perf_counter()
    out = sample(model, schedule, shape, method=args.method, steps=args.steps, eta=args.eta,
                 seed=args.seed, variance=args.variance, return_trajectory=bool(args.gif),
                 clip_x0=args.clip_x0)
    x0, traj = out if args.gif else (out, None)
    dt = time.perf_counter() - t0
    if args.out.endswith(".npz"):
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
    trainer = _trainer_from_dir(args.checkpoint_dir)
    trainer.export(args.out, dtype=args.dtype)
    print(f"exported {trainer.ema_model.count_params():,} EMA weights ({args.dtype}) of step "
          f"{trainer.step} to {args.out}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return {"train": cmd_train, "sample": cmd_sample, "export": cmd_export}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
