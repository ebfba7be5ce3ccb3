"""ddpm_lib.metrics: the held-out halves that every FID of the book compares with."""
from collections import Counter

import numpy as np

from ddpm_lib import metrics


def row_bytes(f):
    return [r.tobytes() for r in f]


def test_heldout_halves_split_every_class_in_two():
    feats, labels = metrics.load_heldout_features()
    a, b = metrics.heldout_halves()
    assert a.shape == b.shape == (5000, feats.shape[1])
    row = {f.tobytes(): c for f, c in zip(feats, labels)}
    classes_a = np.array([row[f.tobytes()] for f in a])
    classes_b = np.array([row[f.tobytes()] for f in b])
    assert np.all(np.bincount(classes_a, minlength=10) == 500)
    assert np.all(np.bincount(classes_b, minlength=10) == 500)
    # disjoint: no held-out image is used twice (a few images share their features, so count)
    used, available = Counter(f.tobytes() for f in np.concatenate([a, b])), Counter(row_bytes(feats))
    assert all(available[k] >= n for k, n in used.items())
    assert np.any(classes_a[:100] != np.sort(classes_a[:100]))                # A is shuffled
    a2, b2 = metrics.heldout_halves()
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    # the floor at N = 1000, as the evaluation chapter measured it
    assert 0.5 < metrics.fid(a[:1000], b) < 5


def test_class_diversity():
    """1 for the real images themselves; a class squeezed towards its mean by a factor s has
    s^2 of the variance; an undefined class is refused."""
    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 4)) * np.repeat([1.0, 2.0, 3.0], 100)[:, None]
    labels = np.repeat([0, 1, 2], 100)
    np.testing.assert_allclose(metrics.class_diversity(real, labels, real, labels, 3), 1.0)
    squeezed = real.copy()
    means = np.stack([real[labels == c].mean(0) for c in range(3)])
    squeezed[labels == 1] = means[1] + 0.5 * (real[labels == 1] - means[1])
    np.testing.assert_allclose(metrics.class_diversity(squeezed, labels, real, labels, 3), [1, 0.25, 1])
    import pytest
    with pytest.raises(ValueError, match="class 2 has 1 samples and 100 real images"):
        metrics.class_diversity(real[:201], labels[:201], real, labels, 3)
