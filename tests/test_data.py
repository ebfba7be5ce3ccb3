"""ddpm_lib.data: preprocessing, the shipped sample, the deterministic resumable input pipeline."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib.data import (FASHION_MNIST_CLASSES, check_images, load_npz, load_sample,
                           make_dataset, preprocess, split_per_class, to_uint8)


# ------------------------------------------------------------------------ preprocess
def test_preprocess_pad_maps_and_keeps_pixels():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    imgs[0, 0, 0], imgs[0, 5, 5] = 0, 255
    x = preprocess(imgs)
    assert x.shape == (5, 32, 32, 1) and x.dtype == tf.float32
    x = x.numpy()
    assert x[0, 2, 2, 0] == -1.0 and x[0, 7, 7, 0] == 1.0          # 0 -> -1, 255 -> 1 exactly
    # a 2-pixel border of background (-1) on every side
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert np.all(x[:, border, 0] == -1.0)
    # interior: v / 127.5 - 1 up to float32 rounding, and exactly invertible
    np.testing.assert_allclose(x[:, 2:30, 2:30, 0], imgs / 127.5 - 1.0, rtol=0, atol=2.4e-7)
    np.testing.assert_array_equal(to_uint8(x[:, 2:30, 2:30, :])[..., 0], imgs)
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_preprocess_variants():
    imgs = np.arange(2 * 28 * 28 * 3, dtype=np.int64).reshape(2, 28, 28, 3) % 256
    u8 = imgs.astype(np.uint8)
    x = preprocess(u8).numpy()                                     # NHWC, 3 channels
    assert x.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(to_uint8(x[:, 2:30, 2:30]), u8)
    # float input in [0, 1] gives the same as uint8 / 255
    xf = preprocess(u8.astype(np.float32) / 255.0).numpy()
    np.testing.assert_allclose(xf, x, atol=2.4e-7)
    # already the target size: untouched; odd padding puts the extra row at the bottom/right
    same = preprocess(np.zeros((1, 32, 32), np.uint8), 32).numpy()
    assert np.all(same == -1.0) and same.shape == (1, 32, 32, 1)
    odd = preprocess(np.full((1, 27, 27), 255, np.uint8), 32).numpy()[0, ..., 0]
    assert odd[2:29, 2:29].min() == 1.0 and odd[29:, :].max() == -1.0 and odd[:2, :].max() == -1.0
    # a tf.Tensor works (as inside tf.data)
    np.testing.assert_array_equal(preprocess(tf.constant(u8)).numpy(), x)


def test_preprocess_resize():
    flat = np.full((2, 28, 28), 51, np.uint8)                     # a constant image stays constant
    x = preprocess(flat, 32, mode="resize").numpy()
    assert x.shape == (2, 32, 32, 1)
    np.testing.assert_allclose(x, 51 / 127.5 - 1, atol=1e-6)
    imgs = np.random.default_rng(1).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    r = preprocess(imgs, 32, mode="resize").numpy()
    p = preprocess(imgs, 32, mode="pad").numpy()
    assert r.min() >= -1.0 - 1e-6 and r.max() <= 1.0 + 1e-6
    assert not np.allclose(r, p)
    assert np.any(r[:, 0, :, 0] > -1.0)                           # no padding border
    small = preprocess(imgs, 16, mode="resize").numpy()
    assert small.shape == (2, 16, 16, 1)
    with pytest.raises(ValueError, match="use mode='resize'"):
        preprocess(imgs, 16, mode="pad")
    with pytest.raises(ValueError, match="mode must be"):
        preprocess(imgs, 32, mode="crop")


def test_to_uint8_clips():
    np.testing.assert_array_equal(to_uint8(np.array([-3.0, -1.0, 0.0, 1.0, 7.0])), [0, 0, 128, 255, 255])
    assert to_uint8(tf.constant([0.0])).dtype == np.uint8


# ----------------------------------------------------------------------- the sample
def test_load_sample():
    images, labels = load_sample()
    assert images.shape == (2000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (2000,)
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 200))
    assert images.min() == 0 and images.max() == 255
    assert len(np.unique(images.reshape(2000, -1), axis=0)) == 2000       # real, distinct images
    assert 0.2 < images.mean() / 255 < 0.4                                # Fashion-MNIST's ~0.286
    assert len(FASHION_MNIST_CLASSES) == 10


def test_load_npz(tmp_path):
    imgs = np.zeros((4, 8, 8), np.uint8)
    np.savez(tmp_path / "a.npz", images=imgs, labels=np.arange(4))
    x, y = load_npz(tmp_path / "a.npz")
    np.testing.assert_array_equal(x, imgs)
    np.testing.assert_array_equal(y, np.arange(4))
    np.savez(tmp_path / "b.npz", images=imgs)
    assert load_npz(tmp_path / "b.npz")[1] is None
    np.savez(tmp_path / "c.npz", x=imgs)
    with pytest.raises(ValueError, match="has no array 'images'"):
        load_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", images=imgs.astype(np.int32))
    with pytest.raises(ValueError, match="uint8"):
        load_npz(tmp_path / "d.npz")
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "missing.npz")


def test_split_per_class():
    labels = np.repeat(np.arange(3), 10)
    images = np.arange(30, dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    (x, y), (xt, yt) = split_per_class(images, labels, 4, seed=1)
    assert len(xt) == 12 and len(x) == 18
    np.testing.assert_array_equal(np.bincount(yt), [4, 4, 4])
    assert not set(x[:, 0, 0]) & set(xt[:, 0, 0])
    (_, _), (xt2, _) = split_per_class(images, labels, 4, seed=1)
    np.testing.assert_array_equal(xt, xt2)
    with pytest.raises(ValueError, match="fewer than test_per_class"):
        split_per_class(images, labels, 11)
    with pytest.raises(ValueError, match="labels"):
        split_per_class(images, labels[:-1], 2)


# ---------------------------------------------------------------------- check_images
@pytest.mark.parametrize("images, match", [
    (np.zeros((4, 8, 8), np.int32), "uint8"),
    (np.zeros((4, 8, 8), np.float16) - 0.5, "already scaled to"),
    (np.full((4, 8, 8), 200.0), "cast to uint8"),
    (np.zeros((8, 8), np.uint8), "shape"),
    (np.zeros((0, 8, 8), np.uint8), "N >= 1"),
    (np.zeros((4, 1, 8, 8), np.uint8), "channels-first"),
    (np.zeros((4, 8, 8, 1, 1), np.uint8), "shape"),
    ([[[0]]], "numpy array"),
    (np.zeros((4, 8, 8), bool), "uint8"),
])
def test_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        check_images(images)
    if isinstance(images, np.ndarray) and images.ndim >= 3 and images.size:
        with pytest.raises(ValueError, match=match):
            preprocess(images)


def test_check_images_accepts():
    u8 = np.zeros((2, 8, 8, 3), np.uint8)
    assert check_images(u8) is u8
    check_images(np.ones((2, 8, 8), np.float32))
    check_images(tf.zeros((2, 8, 8, 1), tf.uint8))


# ---------------------------------------------------------------------- make_dataset
@pytest.fixture(scope="module")
def labelled():
    """100 images whose pixels all equal their index: a batch tells which images it holds."""
    return np.repeat(np.arange(100, dtype=np.uint8)[:, None, None], 28, 1).repeat(28, 2)


def ids(batch):
    # inverse of preprocess at an interior pixel
    return to_uint8(batch.numpy()[:, 16, 16, 0]).astype(int)


def take(ds, n):
    return [b for b in itertools.islice(iter(ds), n)]


def test_make_dataset_batches_and_epochs(labelled):
    ds = make_dataset(labelled, 16, seed=0)                   # 6 batches an epoch (4 dropped)
    batches = take(ds, 13)
    assert all(b.shape == (16, 32, 32, 1) and b.dtype == tf.float32 for b in batches)
    epoch0 = np.concatenate([ids(b) for b in batches[:6]])
    epoch1 = np.concatenate([ids(b) for b in batches[6:12]])
    assert len(set(epoch0)) == 96 and len(set(epoch1)) == 96  # no image twice in an epoch
    assert not np.array_equal(epoch0, epoch1)                 # reshuffled every epoch
    assert not np.array_equal(epoch0, np.arange(96))          # shuffled at all
    plain = np.concatenate([ids(b) for b in take(make_dataset(labelled, 16, shuffle=False), 6)])
    np.testing.assert_array_equal(plain, np.arange(96))


def test_make_dataset_is_deterministic(labelled):
    a = [ids(b) for b in take(make_dataset(labelled, 16, seed=3), 8)]
    b = [ids(b) for b in take(make_dataset(labelled, 16, seed=3), 8)]
    c = [ids(b) for b in take(make_dataset(labelled, 16, seed=4), 8)]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_make_dataset_start_step_resumes_the_stream(labelled):
    fresh = [ids(b) for b in take(make_dataset(labelled, 16, seed=7), 20)]
    for k in (1, 5, 6, 7, 12, 19):                            # inside, at and across epoch ends
        resumed = take(make_dataset(labelled, 16, seed=7, start_step=k), 2)
        np.testing.assert_array_equal(ids(resumed[0]), fresh[k], err_msg=f"start_step={k}")
        if k + 1 < 20:
            np.testing.assert_array_equal(ids(resumed[1]), fresh[k + 1])


def test_make_dataset_on_the_sample(sample_images):
    images, _ = sample_images
    ds = make_dataset(images, 32, seed=0)
    first = take(ds, 1)[0].numpy()
    assert first.shape == (32, 32, 32, 1)
    again = take(make_dataset(images, 32, seed=0, start_step=62), 1)[0].numpy()  # 62 = 2000 // 32
    assert again.shape == (32, 32, 32, 1) and not np.array_equal(first, again)
    np.testing.assert_array_equal(
        take(make_dataset(images, 32, seed=0, start_step=63), 1)[0].numpy(),
        take(make_dataset(images, 32, seed=0), 64)[63].numpy())


def test_make_dataset_one_epoch_and_remainder(labelled):
    one = take(make_dataset(labelled, 16, repeat=False), 100)
    assert len(one) == 6
    rest = take(make_dataset(labelled, 16, repeat=False, drop_remainder=False), 100)
    assert len(rest) == 7 and rest[-1].shape[0] == 4
    assert sorted(np.concatenate([ids(b) for b in rest])) == list(range(100))


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_size=True), "batch_size must be a positive integer"),
    (dict(batch_size=8.0), "batch_size must be a positive integer"),
    (dict(batch_size=101), "larger than the 100 images"),
    (dict(batch_size=16, start_step=3, repeat=False), "start_step needs repeat=True"),
])
def test_make_dataset_bad_arguments(labelled, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(labelled, **kwargs)


def test_make_dataset_bad_images():
    with pytest.raises(ValueError, match="uint8"):
        make_dataset(np.zeros((20, 28, 28), np.int64), 4)
    with pytest.raises(ValueError, match="already scaled"):
        make_dataset(np.full((20, 28, 28), -1.0, np.float32), 4)
