"""Shared fixtures of the library tests.

Tolerances used throughout (float32 results against float64 numpy references):

* a float32 expression ``a*x + b*y`` carries a rounding error of a few units of 2**-24 ~ 6e-8 of
  ``|a*x| + |b*y|`` (coefficients are cast to float32, then multiplied and added in float32), so
  ``assert_f32_close`` allows ``rtol = 1e-6`` of that *scale* plus ``atol = 1e-6``. Comparing to the
  scale instead of the result keeps the check honest where terms cancel (e.g. ``predict_x0`` at
  large t, where 1/sqrt(alpha_bar) ~ 150).
* float64 library arrays against an independent float64 numpy computation: ``rtol = 1e-12``.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

RTOL32 = 1e-6
ATOL32 = 1e-6


def assert_f32_close(actual, reference, scale=None, rtol=RTOL32, atol=ATOL32, what=""):
    """|actual - reference| <= rtol * scale + atol elementwise; ``scale`` defaults to |reference|."""
    actual = np.asarray(actual, np.float64)
    reference = np.asarray(reference, np.float64)
    assert actual.shape == reference.shape, f"{what}: shape {actual.shape} != {reference.shape}"
    scale = np.abs(reference) if scale is None else np.asarray(scale, np.float64)
    err = np.abs(actual - reference)
    bound = rtol * scale + atol
    worst = np.max(err - bound)
    assert np.all(err <= bound), (
        f"{what}: max error {err.max():.3g} exceeds the bound (rtol={rtol}, atol={atol}) "
        f"by {worst:.3g}")


class TinyEps(keras.Model):
    """A very small eps-model (two convolutions and a time projection) for fast trainer tests.

    It has everything ``Trainer`` needs: ``model(x_t, t)``, ``image_channels``, ``get_config``.
    Tracing its train step takes about a second, against ~10 s for even a tiny UNet.
    """

    def __init__(self, image_channels=1, width=8, **kwargs):
        super().__init__(**kwargs)
        self.image_channels, self.width = int(image_channels), int(width)
        self.conv1 = layers.Conv2D(self.width, 3, padding="same", dtype=self.dtype_policy)
        self.temb = layers.Dense(self.width, dtype=self.dtype_policy)
        self.conv2 = layers.Conv2D(self.image_channels, 3, padding="same", dtype="float32")

    def call(self, x, t, training=None):
        x = tf.cast(x, self.compute_dtype)
        h = self.conv1(x)
        te = self.temb(tf.cast(t, self.compute_dtype)[:, None] / 100.0)
        h = tf.nn.silu(h + te[:, None, None, :])
        return self.conv2(h)

    def get_config(self):
        return {"image_channels": self.image_channels, "width": self.width, "name": self.name}


@pytest.fixture(scope="session")
def tiny_eps_cls():
    return TinyEps


def make_tiny_unet(seed=0, image_channels=1, image_size=32, **kwargs):
    """UNet(base_channels=8, time_dim=32, attention="origin"), with seeded initial weights."""
    from ddpm_lib import UNet
    keras.utils.set_random_seed(seed)
    kw = dict(base_channels=8, time_dim=32, attention="origin")
    kw.update(kwargs)
    return UNet(image_channels=image_channels, **kw).build_for(image_size)


@pytest.fixture(scope="session")
def tiny_unet_factory():
    return make_tiny_unet


@pytest.fixture(scope="session")
def tiny_unet():
    """One built tiny UNet (32x32x1) shared by every test that only calls it."""
    return make_tiny_unet(seed=0)


@pytest.fixture(scope="session")
def batch():
    """x0, noise and code times covering both ends of the chain (t = 0, 1, 2 ... 998, 999)."""
    rng = np.random.default_rng(0)
    t = np.array([0, 1, 2, 10, 100, 500, 998, 999], np.int32)
    x0 = rng.uniform(-1, 1, size=(len(t), 4, 4, 2)).astype(np.float32)
    noise = rng.standard_normal(size=x0.shape).astype(np.float32)
    return x0, noise, t


@pytest.fixture(scope="session")
def sample_images():
    from ddpm_lib.data import load_sample
    return load_sample()


@pytest.fixture(scope="session")
def f32():
    return assert_f32_close


def run_python(args, cwd=None, timeout=600, check=True):
    """Run ``sys.executable args...`` with the test environment; return the CompletedProcess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args[:3]} exited with {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
            f"\n--- stderr\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="session")
def python_runner():
    return run_python
