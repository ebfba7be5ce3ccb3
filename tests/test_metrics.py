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


def test_shipped_classifier_is_keyed_by_layer_name():
    from ddpm_lib.checkpoint import CLASSIFIER_FORMAT, read_npz
    from importlib import resources
    with resources.as_file(resources.files("ddpm_lib") / "assets" / metrics.CLASSIFIER_FILE) as path:
        saved = read_npz(path)
    assert saved["meta"]["format"] == CLASSIFIER_FORMAT and saved["meta"]["keys"] == "path"
    model = metrics.load_classifier()
    assert sorted(k for k in saved if k != "meta") == sorted(f"weights/{v.path}" for v in model.weights)
    assert "weights/features/kernel" in saved and "weights/block1_conv1/kernel" in saved
    for v in model.weights:                                   # float16 on disk, float32 in the model
        np.testing.assert_array_equal(v.numpy(), saved[f"weights/{v.path}"].astype(np.float32))


def test_classifier_files_round_trip_and_the_first_format_still_loads(tmp_path):
    import json
    import keras
    import pytest
    from ddpm_lib.checkpoint import atomic_savez, load_classifier_weights, save_classifier
    keras.utils.set_random_seed(0)
    model = metrics.build_classifier()
    keras.layers.Conv2D(4, 3)                     # another layer built first must not shift any key
    save_classifier(model, tmp_path / "c.npz", {"epochs": 1}, dtype="float32")
    other = metrics.build_classifier()
    assert load_classifier_weights(other, tmp_path / "c.npz")["epochs"] == 1
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the first format: w0000, w0001, ... by position
    old = {f"w{i:04d}": v.numpy() for i, v in enumerate(model.weights)}
    old["meta"] = np.array(json.dumps({"format": "ddpm_lib.classifier/1"}))
    atomic_savez(tmp_path / "old.npz", old)
    third = metrics.build_classifier()
    load_classifier_weights(third, tmp_path / "old.npz")
    for a, b in zip(model.weights, third.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # a file of another model is refused by name
    wrong = dict(old, w0000=np.zeros((1, 1)))
    atomic_savez(tmp_path / "wrong.npz", wrong)
    with pytest.raises(ValueError, match=r"weights/0000 has shape \(1, 1\), expected \(3, 3, 1, 32\)"):
        load_classifier_weights(metrics.build_classifier(), tmp_path / "wrong.npz")
    atomic_savez(tmp_path / "none.npz", {"meta": np.array(json.dumps({"format": "x"}))})
    with pytest.raises(ValueError, match="is not a ddpm_lib classifier file"):
        load_classifier_weights(metrics.build_classifier(), tmp_path / "none.npz")


def test_fid_is_the_frechet_distance_of_the_fitted_gaussians():
    """Cases with a closed form, exact to rounding: a shift by c adds |c|^2 (equal covariances);
    scaling by a gives (a - 1)^2 (|mu|^2 + tr Sigma); in one dimension (mu1 - mu2)^2 + (s1 - s2)^2."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6)) + rng.standard_normal(6)
    assert abs(metrics.fid(x, x)) < 1e-9
    c = rng.standard_normal(6)
    np.testing.assert_allclose(metrics.fid(x + c, x), np.sum(c ** 2), rtol=1e-9)
    a, mu, cov = 1.7, x.mean(0), np.cov(x, rowvar=False)
    np.testing.assert_allclose(metrics.fid(a * x, x), (a - 1) ** 2 * (mu @ mu + np.trace(cov)), rtol=1e-9)
    u, v = rng.normal(1.0, 2.0, (300, 1)), rng.normal(-0.5, 0.5, (500, 1))
    expected = (u.mean() - v.mean()) ** 2 + (u.std(ddof=1) - v.std(ddof=1)) ** 2
    np.testing.assert_allclose(metrics.fid(u, v), expected, rtol=1e-9)
    y = rng.standard_normal((250, 6)) * 0.5
    np.testing.assert_allclose(metrics.fid(x, y), metrics.fid(y, x), rtol=1e-9)     # symmetric


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    """With subsets as large as both sets, every subset is the whole set: the mean is eq. 9-kid
    written pair by pair, the std 0."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((9, 3)), rng.standard_normal((9, 3)) + 0.5
    k = lambda p, q: (p @ q / 3 + 1) ** 3
    m = 9
    mean, std = metrics.kid(x, y, subsets=3, subset_size=m)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
    np.testing.assert_allclose(mean, xx + yy - 2 * xy, rtol=1e-9)
    assert std < 1e-12
    import pytest
    for kwargs, match in ((dict(subsets=0), "subsets must be"), (dict(subset_size=2.5), "subset_size must be")):
        with pytest.raises(ValueError, match=match):
            metrics.kid(x, y, **kwargs)


def test_fid_std_is_the_spread_of_fid_over_fresh_samples():
    """The bootstrap error bar of one sample of N agrees (within a factor 1.5) with the spread of
    the FID over 200 independent samples of N from the same distribution."""
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((4000, 4))
    draw = lambda: rng.standard_normal((300, 4)) * [1.0, 1.2, 0.8, 1.0] + [0.3, 0, 0, 0]
    spread = np.std([metrics.fid(draw(), ref) for _ in range(200)])
    boot = metrics.fid_std(draw(), ref, resamples=200)
    assert spread / 1.5 < boot < spread * 1.5, (boot, spread)
    assert metrics.fid_std(ref[:50], ref, seed=3) == metrics.fid_std(ref[:50], ref, seed=3)
    import pytest
    with pytest.raises(ValueError, match=r"same d; got \(50, 4\) and \(4000, 3\)"):
        metrics.fid_std(ref[:50], ref[:, :3])
    with pytest.raises(ValueError, match="resamples must be"):
        metrics.fid_std(ref[:50], ref, resamples=0)
