"""Train the Fashion-MNIST classifier whose features ddpm_lib.metrics uses, and ship its weights.

    python tools/train_classifier.py --data-npz fashion_mnist.npz   # a local copy, per-class split
    python tools/train_classifier.py                                # Keras download, official split

Writes ddpm_lib/assets/fashion_mnist_classifier.npz (float16, ``checkpoint.save_classifier``), prints the test accuracy, and
writes ddpm_lib/assets/fashion_mnist_heldout_features.npz: the classifier's features of the
held-out images (never seen by the classifier nor by the reference DDPM), the real side of every
FID/KID in the book. ``--features-only`` recomputes just those with the shipped classifier.
"""
import argparse
import json
import os

import numpy as np

from ddpm_lib import data, metrics
from ddpm_lib.checkpoint import atomic_savez, save_classifier


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-npz")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--features-only", action="store_true")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "ddpm_lib",
                                                 "assets", metrics.CLASSIFIER_FILE))
    args = p.parse_args()
    if args.data_npz:
        images, labels = data.load_npz(args.data_npz)
        (x, y), (xt, yt) = data.split_per_class(images, labels, 1000, seed=0)
        source = "local npz, per-class split (1000 test images per class, seed 0)"
    else:
        (x, y), (xt, yt) = data.load_fashion_mnist()
        source = "keras.datasets.fashion_mnist"
    if not args.features_only:
        model = metrics.train_classifier(x, y, epochs=args.epochs, verbose=2)
        acc = float(np.mean(metrics.predict_classes(model, data.preprocess(xt).numpy()) == yt))
        print(f"test accuracy: {acc:.4f}")
        meta = {"epochs": args.epochs, "test_accuracy": acc, "train_images": int(len(x)),
                "data": source}
        save_classifier(model, args.out, meta)
        print(f"wrote {os.path.normpath(args.out)}")
    model = metrics.load_classifier() if args.features_only else model
    feats, logits = metrics.features(model, data.preprocess(xt).numpy())
    acc = float(np.mean(np.argmax(logits, 1) == yt))
    out = os.path.join(os.path.dirname(args.out), metrics.HELDOUT_FILE)
    meta = {"format": "ddpm_lib.features/1", "n": int(len(xt)), "data": source,
            "classifier_accuracy": acc}
    atomic_savez(out, {"features": feats.astype(np.float16), "labels": yt.astype(np.uint8),
                       "meta": np.array(json.dumps(meta))})
    print(f"wrote {os.path.normpath(out)} ({len(xt)} held-out images, accuracy {acc:.4f})")


if __name__ == "__main__":
    main()
