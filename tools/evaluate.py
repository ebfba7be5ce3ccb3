"""FID and KID of one sampler setting of a weights file, next to the real-vs-real floor at the same N.

    python tools/evaluate.py --weights ddpm_lib/assets/reference/fashion_mnist_ho_unet.npz \
        --n 500 --method ddim --steps 50 --eta 0

The protocol of the evaluation chapter (Chapter 9): N samples in seeded batches
(``generate.generate_images``, seeds 1000, 1001, ...), clipped to [-1, 1], features of the shipped
classifier, compared with half B of the held-out features; the floor is FID(A[:N], B)
(``metrics.heldout_halves``). Prints one JSON line. A bad input (a number out of range, a flag
the method does not use, a missing file) ends it with one line on stderr and exit status 2,
before any sampling.
"""
import json
import os
import sys
import time

import numpy as np


def build_parser():
    from ddpm_lib.cli import OneLineParser          # the command line's parser: errors on one line
    p = OneLineParser(prog="tools/evaluate.py", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="an exported weights .npz")
    src.add_argument("--reference", help="a shipped reference model's name")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--method", default="ddim", choices=["ddpm", "ddim", "dpm_solver"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--eta", type=float, default=None,
                   help="DDIM's stochasticity, in [0, 1] (default 0); only with --method ddim")
    p.add_argument("--variance", default=None, choices=["posterior", "beta"],
                   help="DDPM's sigma_t^2 (default posterior); only with --method ddpm")
    p.add_argument("--clip-x0", action="store_true", help="clip the predicted x_0 in every step")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--cache-dir", default=None, help="keep the samples here (generate_images)")
    return p


def sampler_kwargs(args):
    """The keywords of ``generate_images`` for ``args``; a ValueError (one line) for a bad input.

    Only what the method uses: ``eta`` for ddim, ``variance`` for ddpm. A flag the method does
    not use is refused rather than ignored.
    """
    from ddpm_lib.cli import sampler_options          # the command line's check, one wording
    from ddpm_lib.validate import positive_int
    positive_int(args.n, "--n")
    positive_int(args.batch_size, "--batch-size")
    if args.steps is not None:
        positive_int(args.steps, "--steps")
    kwargs = dict(sampler_options(args.method, args.eta, args.variance), steps=args.steps)
    if args.weights is not None and not os.path.isfile(args.weights):
        raise ValueError(f"--weights {args.weights!r}: no such file.")
    if args.cache_dir is not None and os.path.isfile(args.cache_dir):
        raise ValueError(f"--cache-dir {args.cache_dir!r} is a file, not a directory.")
    if args.clip_x0:
        kwargs["clip_x0"] = True
    return kwargs


def load_model(args):
    """``(model, schedule)`` of ``--weights`` or ``--reference``; a ValueError for a bad one
    (the command line's loading and checks, one wording)."""
    from ddpm_lib.cli import check_steps, load_model_source
    model, schedule = load_model_source(args.weights, args.reference)
    check_steps(args.steps, schedule)
    return model, schedule


def main(argv=None):
    """Evaluate one setting; returns the exit status (0, or 2 for a bad input)."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")      # before TensorFlow is imported
    try:
        kwargs = sampler_kwargs(args)
        model, schedule = load_model(args)
    except ValueError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    from ddpm_lib import metrics
    from ddpm_lib.generate import generate_images
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
                      "fid_std": round(metrics.fid_std(f_gen, feats_b), 3),
                      "fid_floor": round(metrics.fid(feats_a[:args.n], feats_b), 3),
                      "kid": round(kid, 5), "kid_std": round(kid_std, 5),
                      "min_class_fraction": round(float(hist.min()), 4),
                      "pixels_beyond_1.5": round(out_of_range, 4),
                      "seconds": round(seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
