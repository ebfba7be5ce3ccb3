"""ddpm_lib.load_reference(): the shipped weights load, match their summary, and denoise real images."""
import json
from importlib import resources

import numpy as np
import pytest
import tensorflow as tf

import ddpm_lib
from ddpm_lib import reference
from ddpm_lib.data import load_sample, preprocess


@pytest.fixture(scope="module")
def ref():
    return ddpm_lib.load_reference()


@pytest.fixture(scope="module")
def summary():
    path = resources.files("ddpm_lib") / "assets" / "reference" / "fashion_mnist_unet32.json"
    return json.loads(path.read_text())


def test_reference_configuration(ref, summary):
    model, schedule = ref
    cfg = model.get_config()
    assert (cfg["base_channels"], cfg["attention"], cfg["time_dim"]) == (
        summary["config"]["base_channels"], summary["config"]["attention"], summary["config"]["time_dim"])
    assert model.count_params() == 4_872_961
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert schedule.timesteps == 1000
    np.testing.assert_allclose(schedule.betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-12, atol=0)
    # the summary's numbers are consistent with each other
    assert summary["images_seen"] == summary["step"] * summary["config"]["batch_size"]
    assert summary["final"]["step"] == summary["step"]


@pytest.fixture(scope="module")
def noisy_batch(ref):
    _, schedule = ref
    images, _ = load_sample()
    x0 = preprocess(images[::50]).numpy()                    # 40 held-out images, 4 per class
    t = np.tile(np.array([50, 250, 500, 750], np.int32), 10)
    eps = tf.random.stateless_normal(x0.shape, seed=[0, 1]).numpy()
    return schedule.q_sample(x0, t, eps).numpy(), t, eps


def test_reference_predicts_the_noise(ref, noisy_batch):
    """On held-out images the trained model's eps error is far below the 1.0 of predicting
    eps = 0 (the training loss is about 0.04); an untrained or wrongly loaded model is not."""
    model, _ = ref
    x_t, t, eps = noisy_batch
    mse = float(np.mean((model(x_t, t).numpy() - eps) ** 2))
    assert mse < 0.1, mse
    shuffled = model.get_weights()
    rng = np.random.default_rng(0)
    untrained = ddpm_lib.UNet(**model.get_config())
    untrained.build_for(32)
    untrained.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in shuffled])
    assert float(np.mean((untrained(x_t, t).numpy() - eps) ** 2)) > 0.5


def test_reference_in_bfloat16(ref, noisy_batch):
    model, _ = ref
    half, _ = ddpm_lib.load_reference(dtype="mixed_bfloat16")
    assert half.dtype_policy.name == "mixed_bfloat16"
    assert all(w.dtype == np.float32 for w in half.get_weights())
    x_t, t, eps = noisy_batch
    a = model(x_t, t).numpy()
    b = tf.cast(half(x_t, t), tf.float32).numpy()
    # bfloat16 keeps 8 bits of mantissa: the outputs agree to a few percent, not exactly
    rel = np.sqrt(np.mean((a - b) ** 2) / np.mean(a ** 2))
    assert 0 < rel < 0.05, rel


def test_reference_missing_file(monkeypatch):
    monkeypatch.setitem(reference.REFERENCE_MODELS, "seed-unet", "no_such_file.npz")
    with pytest.raises(FileNotFoundError, match="no_such_file.npz are missing"):
        ddpm_lib.load_reference("seed-unet")


def test_reference_by_name(ref):
    model, _ = ddpm_lib.load_reference("seed-unet")
    assert type(model).__name__ == "UNet" and model.count_params() == ref[0].count_params()
    with pytest.raises(ValueError, match=r"unknown reference model 'ho'; expected one of "
                                         r"\['conditional', 'ho-unet', 'seed-unet'"):
        ddpm_lib.load_reference("ho")


def test_ho_unet_milestone_matches_its_summary():
    """The shipped HoUNet weights: the run's configuration, and the step its summary records."""
    from ddpm_lib.checkpoint import read_npz
    model, schedule = ddpm_lib.load_reference("ho-unet")
    assert type(model).__name__ == "HoUNet" and model.count_params() == 1_623_169
    assert schedule.timesteps == 1000 and model.trained_timesteps == 1000
    path = resources.files("ddpm_lib") / "assets" / "reference" / "fashion_mnist_ho_unet.json"
    summary = json.loads(path.read_text())
    with resources.as_file(resources.files("ddpm_lib") / "assets" / "reference"
                           / "fashion_mnist_ho_unet.npz") as weights:
        extra = read_npz(weights)["meta"]["extra"]
    assert extra["step"] == summary["step"] == summary["final"]["step"]
    assert summary["config"]["arch"] == "ho" and summary["config"]["base_channels"] == 32
