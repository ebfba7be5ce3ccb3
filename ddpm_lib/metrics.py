"""Sample quality in numbers: FID and KID in the feature space of a Fashion-MNIST classifier.

Inception features (the usual FID) mean little for 28x28 grey garments, so, as is common for
MNIST-like data, we use the penultimate layer (128 features) of a small CNN trained on
Fashion-MNIST; the classifier's predictions also give the class histogram of the samples.
Numbers from different feature extractors are not comparable: compare within this book only.

    FID = ||mu_1 - mu_2||^2 + tr(S_1) + tr(S_2) - 2 tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2})
          (Heusel et al., 2017)
    KID = unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al., 2018),
          averaged over random subsets; its standard deviation over subsets is the error bar.
    diversity of class c = tr Cov(features of the samples of class c)
                           / tr Cov(features of the real images of class c)
          (``class_diversity``: 1 is as varied as the real class, below 1 less varied)
"""
from __future__ import annotations

from importlib import resources

import numpy as np
import keras
from keras import layers

from .validate import positive_int

__all__ = ["build_classifier", "train_classifier", "load_classifier", "features", "predict_classes",
           "fid", "fid_std", "kid", "class_histogram", "class_diversity", "load_heldout_features", "heldout_halves", "CLASSIFIER_FILE",
           "HELDOUT_FILE"]

CLASSIFIER_FILE = "fashion_mnist_classifier.npz"
HELDOUT_FILE = "fashion_mnist_heldout_features.npz"


def build_classifier(num_classes=10, image_size=32, channels=1):
    """A small CNN: 3 conv blocks, a 128-unit ``features`` layer, a softmax head.

    Every layer is named, so that its weights are saved under stable names
    (``checkpoint.save_classifier``)."""
    inp = keras.Input((image_size, image_size, channels), name="image")
    x = inp
    for block, width in enumerate((32, 64, 128), start=1):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"block{block}_conv1")(x)
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"block{block}_conv2")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    feats = layers.Dense(128, activation="relu", name="features")(x)
    out = layers.Dense(num_classes, name="logits")(layers.Dropout(0.3, name="dropout")(feats))
    return keras.Model(inp, out, name="fmnist_classifier")


def train_classifier(images, labels, epochs=8, batch_size=128, seed=0, verbose=1):
    """Train the classifier on uint8 images (padded to 32x32, scaled to [-1, 1] like the DDPM)."""
    from .data import preprocess
    keras.utils.set_random_seed(seed)
    model = build_classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    x = preprocess(images).numpy()
    model.fit(x, np.asarray(labels), epochs=epochs, batch_size=batch_size, verbose=verbose, shuffle=True)
    return model


def load_classifier():
    """The classifier shipped with ddpm_lib (see the evaluation chapter for how it was trained)."""
    from .checkpoint import load_classifier_weights
    model = build_classifier()
    ref = resources.files("ddpm_lib") / "assets" / CLASSIFIER_FILE
    with resources.as_file(ref) as path:
        load_classifier_weights(model, path)
    return model


def load_heldout_features():
    """Classifier features (10000, 128) and labels of the 10,000 held-out Fashion-MNIST images.

    Neither the classifier nor the reference DDPM saw these images (1,000 per class, split with
    ``data.split_per_class(..., 1000, seed=0)``); they are the real side of FID and KID.
    Shipped precomputed, so evaluation needs no download. Returns ``(features, labels)``.
    """
    from .checkpoint import read_npz
    ref = resources.files("ddpm_lib") / "assets" / HELDOUT_FILE
    with resources.as_file(ref) as path:
        data = read_npz(path)
    return data["features"].astype(np.float64), data["labels"]


def heldout_halves(seed=0):
    """The held-out features split into halves A and B, 500 images of every class in each.

    B (5,000 features, in class order) is the real side every sample set is compared with; A is
    shuffled, so its first N features are a random draw of N real images: FID(A[:N], B) is the
    real-vs-real floor at N (the evaluation chapter). Returns ``(feats_a, feats_b)``.
    """
    feats, labels = load_heldout_features()
    rng = np.random.default_rng(seed)
    idx_a, idx_b = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        idx_a.append(idx[:500])
        idx_b.append(idx[500:1000])
    idx_a = rng.permutation(np.concatenate(idx_a))
    return feats[idx_a], feats[np.concatenate(idx_b)]


def _feature_model(classifier):
    return keras.Model(classifier.input, [classifier.get_layer("features").output, classifier.output])


def features(classifier, images, batch_size=500):
    """Penultimate features (N, 128) and logits (N, 10) of [-1, 1] images (N, 32, 32, 1)."""
    fm = _feature_model(classifier)
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[1:] != tuple(classifier.input_shape[1:]):
        raise ValueError(f"images must have shape (N, {', '.join(map(str, classifier.input_shape[1:]))}) "
                         f"in [-1, 1]; got {x.shape}.")
    f, lg = [], []
    for i in range(0, len(x), batch_size):
        a, b = fm(x[i:i + batch_size], training=False)
        f.append(a.numpy())
        lg.append(b.numpy())
    return np.concatenate(f).astype(np.float64), np.concatenate(lg)


def predict_classes(classifier, images):
    """Predicted class of each [-1, 1] image."""
    return np.argmax(features(classifier, images)[1], axis=1)


def _sqrtm_psd(m):
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid(feats1, feats2):
    """Frechet distance between Gaussians fitted to two feature sets (N_i, d)."""
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be (N, d) with the same d; got {f1.shape} and {f2.shape}.")
    if min(len(f1), len(f2)) < 2:
        raise ValueError("FID needs at least 2 samples in each set.")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))
    r1 = _sqrtm_psd(s1)
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross)


def fid_std(feats1, feats2, resamples=50, seed=0):
    """Error bar of ``fid(feats1, feats2)``: the standard deviation of the FID over ``resamples``
    bootstrap resamples of ``feats1`` (N1 rows drawn with replacement, ``feats2`` fixed).

    ``feats1`` are the generated images' features, ``feats2`` the real reference. The spread
    estimates the noise of an FID from N1 generated images; it says nothing about FID's bias at
    small N (for that, compare with the real-vs-real floor at the same N).
    """
    resamples = positive_int(resamples, "resamples")
    f1 = np.asarray(feats1, np.float64)
    fid(f1, feats2)                                  # FID's input checks (and the same error)
    rng = np.random.default_rng(seed)
    return float(np.std([fid(f1[rng.integers(0, len(f1), len(f1))], feats2)
                         for _ in range(resamples)]))


def kid(feats1, feats2, subsets=50, subset_size=500, seed=0):
    """Kernel Inception Distance: mean and std over ``subsets`` of the unbiased MMD^2.

    Each subset draws ``min(subset_size, N1, N2)`` features from each set without replacement;
    when a set is no larger than that, every subset holds all of it and the std reflects only
    the other set's subsampling.
    """
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be (N, d) with the same d; got {f1.shape} and {f2.shape}.")
    subsets = positive_int(subsets, "subsets")
    m = min(positive_int(subset_size, "subset_size"), len(f1), len(f2))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set.")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        mmd = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
               - 2 * kxy.mean())
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def class_histogram(classes, num_classes=10):
    """Fraction of samples per class."""
    counts = np.bincount(np.asarray(classes, np.int64), minlength=num_classes)
    return counts / max(1, counts.sum())



def class_diversity(feats, labels, real_feats, real_labels, num_classes=10):
    """Per class c: tr Cov(feats of class c) / tr Cov(real_feats of class c), shape (num_classes,).

    The total variance of a class's features, relative to that of the real images of the class:
    1 means the samples of c vary as much as real images of c, below 1 that they vary less (what
    guidance trades for typicality, chapter 11). ``labels``: the class each sample was asked for
    (or predicted); every class needs at least 2 samples on each side.
    """
    f, r = np.asarray(feats, np.float64), np.asarray(real_feats, np.float64)
    y, yr = np.asarray(labels).reshape(-1), np.asarray(real_labels).reshape(-1)
    if f.ndim != 2 or r.ndim != 2 or f.shape[1] != r.shape[1] or len(y) != len(f) or len(yr) != len(r):
        raise ValueError(f"feats (N, d) with N labels and real_feats (M, d) with M labels expected; "
                         f"got {f.shape} with {len(y)} and {r.shape} with {len(yr)}.")
    out = np.empty(num_classes)
    for c in range(num_classes):
        a, b = f[y == c], r[yr == c]
        if min(len(a), len(b)) < 2:
            raise ValueError(f"class {c} has {len(a)} samples and {len(b)} real images; "
                             "class_diversity needs at least 2 of each.")
        out[c] = np.trace(np.atleast_2d(np.cov(a, rowvar=False))) / np.trace(np.atleast_2d(np.cov(b, rowvar=False)))
    return out
