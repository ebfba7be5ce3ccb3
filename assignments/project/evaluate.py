"""FID and KID of generated images against the held-out Fashion-MNIST features shipped with
ddpm_lib, next to the real-versus-real floor at the same N (the recipe of chapter 9).

    python evaluate.py samples.npz        # an .npz written by `python -m ddpm_lib sample --out ...npz`
"""
import sys

import numpy as np
from ddpm_lib import data, metrics

images = np.load(sys.argv[1])["images"]                 # uint8 (N, 32, 32, 1)
feats, logits = metrics.features(metrics.load_classifier(), data.preprocess(images).numpy())
n = len(feats)

# Halves A and B of the held-out features, 500 images of every class in each (as in chapter 9).
real, labels = metrics.load_heldout_features()
rng = np.random.default_rng(0)
idx_a, idx_b = [], []
for c in range(10):
    idx = rng.permutation(np.flatnonzero(labels == c))
    idx_a.append(idx[:500])
    idx_b.append(idx[500:1000])
feats_a = real[rng.permutation(np.concatenate(idx_a))]
feats_b = real[np.concatenate(idx_b)]
if n > len(feats_a):
    sys.exit(f"at most {len(feats_a)} samples: the floor needs as many real images of half A")

subset = min(n, 1000)
fid, (kid, kid_std) = metrics.fid(feats, feats_b), metrics.kid(feats, feats_b, subset_size=subset)
fid0, (kid0, kid0_std) = metrics.fid(feats_a[:n], feats_b), metrics.kid(feats_a[:n], feats_b, subset_size=subset)
print(f"N = {n}")
print(f"samples vs real (B):      FID {fid:8.2f}   KID {kid:.4f} ± {kid_std:.4f}")
print(f"floor, real (A) vs real:  FID {fid0:8.2f}   KID {kid0:.4f} ± {kid0_std:.4f}")
print("class histogram of the samples:", np.round(metrics.class_histogram(np.argmax(logits, 1)), 3))
