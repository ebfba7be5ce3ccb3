"""Benchmarks: training throughput, achieved FLOP/s, sampler speed, and mixed precision.

    python bench/bench.py                 # everything, about 10 minutes on 2 CPU cores
    python bench/bench.py --only sampler  # one section: train, bf16, sampler, xla, ddim
    python bench/bench.py --out bench/results/my-machine.json

Every comparison is a ratio of two numbers measured in the same run, on the same machine, one
after the other (these machines are noisy: compare ratios, not absolute numbers across runs).
The seed's way of sampling is reproduced by ``eager_numpy_sample``: an eager model call per step
and the step itself in numpy, with a numpy round trip each step. The train section times three
networks; the other sections time the reference model's network (``reference_network``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from flops import ho_unet_flops, unet_flops  # noqa: E402
from ddpm_lib import HoUNet, UNet, Trainer, linear_schedule, sample, data  # noqa: E402

CONFIGS = {
    "seed UNet (base 64, seed attention)": dict(base_channels=64, attention="seed"),
    "seed-UNet model (base 32, origin attention)": dict(base_channels=32, attention="origin"),
}
# The book's reference model: the HoUNet that `python -m ddpm_lib train` builds by default (--arch ho).
HO_REFERENCE = dict(image_channels=1, image_size=32, base_channels=32, channel_mult=(1, 2, 2),
                    num_res_blocks=2, attn_resolutions=(16,), dropout=0.0, groups=8)
# The "train" section's rows: name -> (network class, its keyword arguments, FLOP counter).
TRAIN_CONFIGS = {**{name: (UNet, kw, unet_flops) for name, kw in CONFIGS.items()},
                 "reference model (HoUNet, base 32, attention at 16x16)": (HoUNet, HO_REFERENCE,
                                                                            ho_unet_flops)}


def reference_network(dtype=None):
    """The reference model's network (``load_reference()``'s architecture), untrained: speed does
    not depend on the weights. The bf16, sampler, xla and ddim sections time this network."""
    return HoUNet(dtype=dtype, **HO_REFERENCE).build_for(32)


def cpuinfo():
    """The fields of the first processor in /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return {}
    fields = {}
    for ln in text.split("\n\n")[0].splitlines():
        if ":" in ln:
            key, value = ln.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def machine():
    info = cpuinfo()
    flags = set(info.get("flags", "").split())
    gpus = tf.config.list_physical_devices("GPU")
    return {"cpu": info.get("model name", platform.processor() or "cpu"),
            "vendor": info.get("vendor_id"), "cpu_family": info.get("cpu family"),
            "cpu_model": info.get("model"), "mhz": info.get("cpu MHz"),
            "simd_flags": sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}),
            "cores": os.cpu_count(), "gpus": len(gpus),
            "tensorflow": tf.__version__, "python": platform.python_version()}


def fp32_flop_per_cycle(info):
    """fp32 FLOP per cycle and core: 2 FMA units x 2 FLOP x the vector width in floats.

    AVX-512 CPUs with two 512-bit FMA units give 64 (Intel Xeon); AMD's Zen 4 (family 25)
    runs AVX-512 on 256-bit units, so 32, as for AVX2 with two FMA units; without AVX2, 16.
    """
    flags = set(info.get("flags", "").split())
    if "avx512f" in flags and not (info.get("vendor_id") == "AuthenticAMD"
                                   and info.get("cpu family") == "25"):
        return 64
    return 32 if "avx2" in flags else 16


def cpu_peak_gflops():
    """fp32 peak of this CPU: cores x clock x ``fp32_flop_per_cycle``; None if unknown."""
    info = cpuinfo()
    if "cpu MHz" not in info:
        return None
    return os.cpu_count() * float(info["cpu MHz"]) / 1e3 * fp32_flop_per_cycle(info)


def time_train(model_kw, batch, steps, dtype=None, builder=HoUNet):
    """(images/s, last loss, model) of ``steps`` training steps of ``builder(dtype=dtype, **model_kw)``."""
    images, _ = data.load_sample()
    model = builder(dtype=dtype, **model_kw)
    tr = Trainer(model, linear_schedule(1000), batch_size=batch, verbose=False,
                 mixed_precision=dtype)
    tr.fit(images, 2)                                   # trace + warm up
    t0 = time.perf_counter()
    tr.fit(images, steps)
    dt = time.perf_counter() - t0
    return batch * steps / dt, tr.history[-1]["loss"], model


def eager_numpy_sample(model, schedule, shape, seed=0):
    """The seed's sampler: Python loop, eager model call, numpy step (posterior variance)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    for t in range(schedule.timesteps - 1, -1, -1):
        eps = model(x, np.full([shape[0]], t, np.int32), training=False).numpy()
        mean = (x - schedule.eps_coef[t] * eps) / np.sqrt(schedule.alphas[t])
        z = rng.standard_normal(shape).astype(np.float32) if t > 0 else 0.0
        x = (mean + np.sqrt(schedule.posterior_variance[t]) * z).astype(np.float32)
    return x


def time_sampler(model, batch, steps):
    schedule = linear_schedule(steps)                  # per-step cost does not depend on T
    shape = (batch, 32, 32, 1)
    sample(model, schedule, shape, seed=0).numpy()     # trace
    t0 = time.perf_counter()
    sample(model, schedule, shape, seed=1).numpy()     # .numpy(): wait for the device
    compiled = (time.perf_counter() - t0) / steps
    eager_numpy_sample(model, schedule, shape)         # warm up eager kernels
    t0 = time.perf_counter()
    eager_numpy_sample(model, schedule, shape, seed=1)
    eager = (time.perf_counter() - t0) / steps
    return compiled * 1e3, eager * 1e3


def time_sample_call(model, schedule, shape, **kw):
    """Seconds per sampling step of the compiled loop (the first call traces and is not timed)."""
    sample(model, schedule, shape, seed=0, **kw).numpy()
    t0 = time.perf_counter()
    sample(model, schedule, shape, seed=1, **kw).numpy()      # .numpy(): wait for the device
    return (time.perf_counter() - t0) / schedule.timesteps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=["train", "bf16", "sampler", "xla", "ddim"])
    p.add_argument("--batch", type=int, default=32, help="training batch size")
    p.add_argument("--train-steps", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3,
                   help="float32/bfloat16 pairs of the bf16 section, for training and for sampling each")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    for name in ("batch", "train_steps", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}.")
    started = time.perf_counter()
    res = {"machine": machine(), "cpu_fp32_flop_per_cycle_per_core": fp32_flop_per_cycle(cpuinfo()),
           "cpu_fp32_peak_gflops": cpu_peak_gflops(), "results": {}}
    print(json.dumps(res["machine"]), flush=True)
    out = res["results"]

    if args.only in (None, "train"):
        out["train"] = []
        for name, (builder, kw, count_flops) in TRAIN_CONFIGS.items():
            ips, loss, model = time_train(kw, args.batch, args.train_steps, builder=builder)
            fwd = count_flops(model)
            gflops = 3 * fwd * ips / 1e9
            row = {"model": name, "params": model.count_params(), "gflop_per_forward": fwd / 1e9,
                   "batch": args.batch, "images_per_s": ips, "achieved_gflops": gflops}
            if res["cpu_fp32_peak_gflops"] and not res["machine"]["gpus"]:
                row["fraction_of_cpu_peak"] = gflops / res["cpu_fp32_peak_gflops"]
            out["train"].append(row)
            print(json.dumps(row), flush=True)

    if args.only in (None, "bf16"):
        # float32 and bfloat16 alternate, `--repeats` pairs: each pair's ratio is measured one
        # after the other, and the spread of the ratios shows how noisy the machine was
        # (the order alternates too: float32 first in even pairs, bfloat16 first in odd ones)
        def train_pair(i):
            f32 = lambda: time_train(HO_REFERENCE, args.batch, args.train_steps)[0]
            bf16 = lambda: time_train(HO_REFERENCE, args.batch, args.train_steps, dtype="mixed_bfloat16")[0]
            if i % 2 == 0:
                a = f32()
                return a, bf16()
            b = bf16()
            return f32(), b
        pairs = [train_pair(i) for i in range(args.repeats)]
        out["bf16"] = {"model": "reference model (HoUNet)", "train_batch": args.batch,
                       "train_float32_images_per_s": [a for a, _ in pairs],
                       "train_bfloat16_images_per_s": [b for _, b in pairs],
                       "train_speedups": [b / a for a, b in pairs]}
        # sampling, same weights: float32 against bfloat16 compute, also alternating
        m32 = reference_network()
        m16 = reference_network(dtype="mixed_bfloat16")
        m16.set_weights(m32.get_weights())
        small, shape = linear_schedule(20), (64, 32, 32, 1)
        def sample_pair(i):
            if i % 2 == 0:
                a = time_sample_call(m32, small, shape)
                return a, time_sample_call(m16, small, shape)
            b = time_sample_call(m16, small, shape)
            return time_sample_call(m32, small, shape), b
        pairs = [sample_pair(i) for i in range(args.repeats)]
        out["bf16"].update({"sample_batch": 64,
                            "sample_float32_ms_per_step": [a * 1e3 for a, _ in pairs],
                            "sample_bfloat16_ms_per_step": [b * 1e3 for _, b in pairs],
                            "sample_speedups": [a / b for a, b in pairs]})
        print(json.dumps(out["bf16"]), flush=True)

    if args.only in (None, "sampler"):
        model = reference_network()
        out["sampler"] = []
        for batch, steps in ((1, 50), (64, 10)):
            comp, eager = time_sampler(model, batch, steps)
            row = {"batch": batch, "compiled_ms_per_step": comp, "eager_numpy_ms_per_step": eager,
                   "speedup": eager / comp}
            out["sampler"].append(row)
            print(json.dumps(row), flush=True)

    if args.only in (None, "xla"):
        model = reference_network()
        small = linear_schedule(20)
        out["xla"] = []
        for batch in (1, 64):
            shape = (batch, 32, 32, 1)
            plain = time_sample_call(model, small, shape)
            xla = time_sample_call(model, small, shape, jit_compile=True)
            row = {"batch": batch, "tf_function_ms_per_step": plain * 1e3,
                   "xla_ms_per_step": xla * 1e3, "xla_speedup": plain / xla}
            out["xla"].append(row)
            print(json.dumps(row), flush=True)

    if args.only in (None, "ddim"):
        model = reference_network()
        schedule = linear_schedule(1000)
        shape = (64, 32, 32, 1)
        sample(model, schedule, shape, method="ddim", steps=50, seed=0).numpy()      # trace
        t0 = time.perf_counter()
        sample(model, schedule, shape, method="ddim", steps=50, seed=1).numpy()
        ddim50 = time.perf_counter() - t0
        small = linear_schedule(20)
        sample(model, small, shape, seed=0).numpy()
        t0 = time.perf_counter()
        sample(model, small, shape, seed=1).numpy()
        per_step = (time.perf_counter() - t0) / 20
        out["ddim"] = {"batch": 64, "ddim50_s": ddim50, "ddpm1000_s_estimated": per_step * 1000,
                       "ratio": per_step * 1000 / ddim50,
                       "note": "DDPM-1000 = 1000 x the measured per-step time of the same loop"}
        print(json.dumps(out["ddim"]), flush=True)

    res["wall_seconds"] = time.perf_counter() - started
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
