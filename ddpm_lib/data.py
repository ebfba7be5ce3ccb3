"""Images in, batches out: loaders and the tf.data pipeline.

Images are scaled to [-1, 1], the range the reverse process starts from (x_T ~ N(0, I)) and the
paper uses (Sec. 3.3). 28x28 Fashion-MNIST/MNIST images are padded to 32x32 with the background
value (-1) so that three 2x poolings divide the size; ``mode="resize"`` resizes bilinearly, as
the seed did.

Loaders return uint8 arrays ``(N, H, W)`` or ``(N, H, W, C)`` and labels:
    load_fashion_mnist()     the real download, through Keras (needs the network)
    load_mnist(), load_cifar10()
    load_npz(path)           a local ``.npz`` with ``images`` and ``labels``
    load_sample()            a small Fashion-MNIST sample shipped in the package (no network)
"""
from __future__ import annotations

import os
from importlib import resources

import numpy as np
import tensorflow as tf

from . import validate

__all__ = ["check_mode", "load_fashion_mnist", "load_mnist", "load_cifar10", "load_npz", "load_sample",
           "split_per_class", "check_images", "preprocess", "to_uint8", "make_dataset",
           "FASHION_MNIST_CLASSES"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


def load_fashion_mnist():
    """Fashion-MNIST via ``keras.datasets`` (downloads once, then cached in ~/.keras/datasets).

    Returns ``(x_train, y_train), (x_test, y_test)``: 60,000 + 10,000 uint8 28x28 images.
    """
    import keras
    return keras.datasets.fashion_mnist.load_data()


def load_mnist():
    """MNIST digits via ``keras.datasets`` (downloads once). Same layout as Fashion-MNIST."""
    import keras
    return keras.datasets.mnist.load_data()


def load_cifar10():
    """CIFAR-10 via ``keras.datasets`` (downloads once): uint8 32x32x3 RGB images."""
    import keras
    (x, y), (xt, yt) = keras.datasets.cifar10.load_data()
    return (x, y.reshape(-1)), (xt, yt.reshape(-1))


def load_npz(path, images_key="images", labels_key="labels"):
    """Load ``(images, labels)`` from a local ``.npz`` file; ``labels`` is None if absent."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such .npz file: {path!r}")
    with np.load(path) as f:
        if images_key not in f:
            raise ValueError(f"{path!r} has no array {images_key!r}; it has {sorted(f.files)}.")
        images = f[images_key]
        labels = f[labels_key] if labels_key in f else None
    check_images(images)
    if labels is not None and (labels.dtype.kind not in "iu" or labels.shape != images.shape[:1]
                               or (labels.size and labels.min() < 0)):
        raise ValueError(f"{labels_key!r} must hold one non-negative integer class per image, "
                         f"shape ({len(images)},); got dtype {labels.dtype}, shape {labels.shape}"
                         + (f", smallest {labels.min()}" if labels.size and labels.dtype.kind in "iuf"
                            else "") + ".")
    return images, labels


def load_sample():
    """The Fashion-MNIST sample shipped with ``ddpm_lib``: 2,000 images, 200 per class.

    Taken from the held-out part of Fashion-MNIST (see ``assets/README.md``); for tests, quick
    notebook runs and a first look without the network. Returns ``(images, labels)``, uint8.
    """
    ref = resources.files("ddpm_lib") / "assets" / "fashion_mnist_sample.npz"
    with resources.as_file(ref) as p:
        return load_npz(p)


def split_per_class(images, labels, test_per_class, seed=0):
    """Split into train/test with exactly ``test_per_class`` test images of every class.

    A fixed seed makes the split reproducible. Returns ``(x_train, y_train), (x_test, y_test)``.
    """
    labels = np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < test_per_class:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than test_per_class={test_per_class}.")
        test_idx.append(rng.choice(idx, test_per_class, replace=False))
    test_idx = np.sort(np.concatenate(test_idx))
    mask = np.zeros(len(labels), bool)
    mask[test_idx] = True
    return (images[~mask], labels[~mask]), (images[mask], labels[mask])


def check_images(images):
    """Raise ValueError unless ``images`` is (N, H, W) or (N, H, W, C) uint8, or float in [0, 1]."""
    if isinstance(images, tf.Tensor):
        images = images.numpy()
    if not isinstance(images, np.ndarray):
        raise ValueError(f"images must be a numpy array; got {type(images).__name__}.")
    if images.ndim not in (3, 4) or images.shape[0] == 0:
        raise ValueError(
            f"images must have shape (N, H, W) or (N, H, W, C) with N >= 1; got {images.shape}.")
    if images.ndim == 4 and images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"images look channels-first or odd: shape {images.shape}; expected NHWC with "
            "1, 3 or 4 channels last.")
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind != "f":
        raise ValueError(
            f"images must be uint8 in [0, 255] or float in [0, 1]; got dtype {images.dtype}.")
    lo, hi = float(np.min(images)), float(np.max(images))
    if lo < 0.0 or hi > 1.0:
        hint = (" They look already scaled to [-1, 1]; pass uint8 or [0, 1] images." if lo < 0
                else " They look like 0..255 values; cast to uint8.")
        raise ValueError(
            f"float images must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}].{hint}")
    return images


def check_mode(mode):
    """Raise unless ``mode`` is one of ``preprocess``'s ways to reach the network's size."""
    validate.one_of(mode, ("pad", "resize"), "mode")


def preprocess(images, image_size=32, mode="pad"):
    """uint8 (or [0, 1] float) images -> float32 NHWC tensor in [-1, 1] of size ``image_size``.

    ``mode="pad"`` pads symmetrically with -1 (the background), keeping every pixel exact;
    ``mode="resize"`` resizes bilinearly. Works on numpy arrays and inside ``tf.data``.
    """
    check_mode(mode)
    if isinstance(images, np.ndarray):
        check_images(images)
    x = tf.convert_to_tensor(images)
    if x.shape.rank == 3:
        x = x[..., None]
    x = tf.cast(x, tf.float32) / 255.0 if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
    x = x * 2.0 - 1.0
    h, w = x.shape[1], x.shape[2]
    if (h, w) != (image_size, image_size):
        if mode == "resize":
            x = tf.image.resize(x, [image_size, image_size], method="bilinear")
        else:
            if h > image_size or w > image_size:
                raise ValueError(
                    f"cannot pad {h}x{w} images to {image_size}x{image_size}; use mode='resize'.")
            top, left = (image_size - h) // 2, (image_size - w) // 2
            x = tf.pad(x, [[0, 0], [top, image_size - h - top], [left, image_size - w - left], [0, 0]],
                       constant_values=-1.0)
    return x


def to_uint8(x):
    """[-1, 1] float images -> uint8 [0, 255] numpy (clipped), the inverse of ``preprocess``."""
    x = np.asarray(x, dtype=np.float32)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_dataset(images, batch_size, image_size=32, mode="pad", shuffle=True, seed=0,
                 start_step=0, repeat=True, drop_remainder=True, labels=None):
    """A ``tf.data.Dataset`` of float32 batches (batch_size, image_size, image_size, C) in [-1, 1].

    Shuffling is a function of ``(seed, epoch)`` only (a stateless permutation per epoch), so the
    k-th batch is the same on every run: ``start_step=k`` resumes the stream exactly at batch k.
    With ``labels`` (integers, one per image) each element is ``(images, labels)``, the labels
    of the same images; the images are the batches of the call without labels.
    """
    images = check_images(np.asarray(images))
    n = images.shape[0]
    if labels is not None:
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.shape != (n,):
            raise ValueError(f"labels must be integers of shape ({n},), one per image; got dtype "
                             f"{labels.dtype}, shape {labels.shape}.")
    batch_size = validate.positive_int(batch_size, "batch_size")
    if drop_remainder and batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} images.")
    steps_per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
    if start_step and not repeat:
        raise ValueError("start_step needs repeat=True.")
    store = tf.constant(images)

    def epoch_order(epoch):
        idx = tf.range(n, dtype=tf.int64)
        if shuffle:
            idx = tf.random.experimental.stateless_shuffle(
                idx, seed=tf.stack([tf.constant(seed, tf.int64), epoch]), alg="philox")
        return tf.data.Dataset.from_tensor_slices(idx).batch(batch_size, drop_remainder=drop_remainder)

    start_epoch, skip = divmod(int(start_step), steps_per_epoch)
    epochs = (tf.data.Dataset.range(start_epoch, 2**62) if repeat
              else tf.data.Dataset.range(0, 1))
    ds = epochs.flat_map(epoch_order).skip(skip)
    if labels is None:
        ds = ds.map(lambda idx: preprocess(tf.gather(store, idx), image_size, mode),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        label_store = tf.constant(labels.astype(np.int32))
        ds = ds.map(lambda idx: (preprocess(tf.gather(store, idx), image_size, mode),
                                 tf.gather(label_store, idx)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
