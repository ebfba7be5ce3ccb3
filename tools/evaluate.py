"""FID and KID of one sampler setting of a weights file, next to the real-vs-real floor at the same N.

    python tools/evaluate.py --weights ddpm_lib/assets/reference/fashion_mnist_ho_unet.npz \
        --n 500 --method ddim --steps 50 --eta 0

The protocol of the evaluation chapter (Chapter 9): N samples in seeded batches
(``generate.generate_images``, seeds 1000, 1001, ...), clipped to [-1, 1], features of the shipped
classifier, compared with half B of the held-out features; the floor is FID(A[:N], B)
(``metrics.heldout_halves``). Prints one JSON line.
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from ddpm_lib import metrics
from ddpm_lib.checkpoint import load_weights
from ddpm_lib.generate import generate_images
from ddpm_lib.reference import load_reference


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="an exported weights .npz")
    src.add_argument("--reference", help="a shipped reference model's name")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--method", default="ddim", choices=["ddpm", "ddim", "dpm_solver"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--variance", default="posterior", choices=["posterior", "beta"])
    p.add_argument("--clip-x0", action="store_true", help="clip the predicted x_0 in every step")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--cache-dir", default=None, help="keep the samples here (generate_images)")
    args = p.parse_args()
    model, schedule = (load_weights(args.weights) if args.weights else load_reference(args.reference))
    kwargs = dict(method=args.method, steps=args.steps)
    if args.clip_x0:
        kwargs["clip_x0"] = True
    if args.method == "ddim":
        kwargs["eta"] = args.eta
    if args.method == "ddpm":
        kwargs["variance"] = args.variance
    t0 = time.perf_counter()
    x, _ = generate_images(model, schedule, args.n, batch_size=args.batch_size,
                           cache_dir=args.cache_dir, **kwargs)
    seconds = time.perf_counter() - t0
    # before clipping: broken samples saturate far beyond the data's [-1, 1] (good ones overshoot
    # the background value -1 slightly, so the threshold has a margin)
    out_of_range = float(np.mean(np.abs(x) > 1.5))
    x = np.clip(x, -1.0, 1.0)
    feats_a, feats_b = metrics.heldout_halves()
    f_gen, logits = metrics.features(metrics.load_classifier(), x)
    kid, kid_std = metrics.kid(f_gen, feats_b)
    hist = metrics.class_histogram(np.argmax(logits, 1))
    print(json.dumps({"source": os.path.basename(args.weights) if args.weights else args.reference,
                      **kwargs, "n": args.n, "fid": round(metrics.fid(f_gen, feats_b), 3),
                      "fid_floor": round(metrics.fid(feats_a[:args.n], feats_b), 3),
                      "kid": round(kid, 5), "kid_std": round(kid_std, 5),
                      "min_class_fraction": round(float(hist.min()), 4),
                      "pixels_beyond_1.5": round(out_of_range, 4),
                      "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
