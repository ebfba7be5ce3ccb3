"""Summarize a `python -m ddpm_lib train` run for the model card.

    python tools/reference_report.py --checkpoint-dir runs/ho-reference --name fashion_mnist_ho_unet

Reads the newest checkpoint's history and the run's train_config.json; writes the loss curve
(book/images/<name>_loss.png) and ddpm_lib/assets/reference/<name>.json, beside the weights
file <name>.npz. A warm start (``train --init-weights``) is recorded in train_config.json and so
in the summary; the history goes on across it.
"""
import argparse
import json
import os
import platform

import numpy as np

from ddpm_lib.checkpoint import latest_checkpoint, read_npz

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint-dir", required=True)
    p.add_argument("--name", required=True, help="the weights file's name without .npz")
    p.add_argument("--hardware", default=None, help="describe the machine (default: this CPU)")
    args = p.parse_args()
    path = latest_checkpoint(args.checkpoint_dir)
    meta = read_npz(path)["meta"]
    with open(os.path.join(args.checkpoint_dir, "train_config.json")) as f:
        cfg = json.load(f)
    if cfg.get("data_npz"):
        cfg["data_npz"] = os.path.basename(cfg["data_npz"])   # no machine paths in the repo
    hist = meta["history"]
    # `time` restarts at every (re)started fit(): add up the sessions.
    wall, prev = 0.0, 0.0
    for rec in hist:
        wall += rec["time"] - prev if rec["time"] >= prev else rec["time"]
        prev = rec["time"]
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    train_images = 60000
    summary = {"step": meta["step"], "images_seen": meta["step"] * cfg["batch_size"],
               "epochs": meta["step"] * cfg["batch_size"] / train_images,
               "wall_time_s": wall, "hardware": args.hardware or f"{cpu}, {os.cpu_count()} cores, no GPU",
               "config": cfg, "final": hist[-1]}
    with open(os.path.join(ROOT, "ddpm_lib", "assets", "reference", f"{args.name}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = np.array([r["step"] for r in hist])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, [r["loss"] for r in hist], label="training loss (mean over 50 steps)")
    v = [(r["step"], r["val_loss"], r["val_loss_ema"]) for r in hist if "val_loss" in r]
    if v:
        vs = np.array(v)
        ax.plot(vs[:, 0], vs[:, 1], "o-", ms=3, label="validation loss (weights)")
        ax.plot(vs[:, 0], vs[:, 2], "s-", ms=3, label="validation loss (EMA weights)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(r"$L_\mathrm{simple}$")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.join(ROOT, "book", "images"), exist_ok=True)
    fig.savefig(os.path.join(ROOT, "book", "images", f"{args.name}_loss.png"), dpi=120)
    print(json.dumps({k: summary[k] for k in ("step", "epochs", "wall_time_s", "final")}, indent=1))


if __name__ == "__main__":
    main()
