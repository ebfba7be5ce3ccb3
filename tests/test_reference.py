"""ddpm_lib.load_reference(): the shipped weights load, match their summaries, and denoise real images."""
import json
from importlib import resources

import numpy as np
import pytest
import tensorflow as tf

import ddpm_lib
from ddpm_lib import reference
from ddpm_lib.checkpoint import read_npz
from ddpm_lib.data import load_sample, preprocess

# name -> (summary file, network class, parameter count)
SHIPPED = {"ho-unet": ("fashion_mnist_ho_unet.json", "HoUNet", 1_623_169),
           "ho-unet-step6000": ("fashion_mnist_ho_unet_step6000.json", "HoUNet", 1_623_169),
           "seed-unet": ("fashion_mnist_unet32.json", "UNet", 4_872_961)}
ARCH_KEYS = {"HoUNet": ("base_channels", "channel_mult", "num_res_blocks", "attn_resolutions", "groups"),
             "UNet": ("base_channels", "attention", "time_dim")}


def asset(filename):
    return resources.files("ddpm_lib") / "assets" / "reference" / filename


@pytest.fixture(scope="module")
def refs():
    return {name: ddpm_lib.load_reference(name) for name in SHIPPED}


@pytest.fixture(scope="module")
def ref():
    return ddpm_lib.load_reference()


def test_default_is_the_ho_unet(ref, refs):
    """The book's reference model is Ho et al.'s UNet: load_reference() == load_reference('ho-unet')."""
    assert reference.DEFAULT_REFERENCE == "ho-unet"
    model, _ = ref
    assert type(model).__name__ == "HoUNet"
    for a, b in zip(model.get_weights(), refs["ho-unet"][0].get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_reference_configuration(refs, name):
    filename, cls, n_params = SHIPPED[name]
    summary = json.loads(asset(filename).read_text())
    model, schedule = refs[name]
    cfg = model.get_config()
    assert type(model).__name__ == cls and model.count_params() == n_params
    for key in ARCH_KEYS[cls]:
        saved = summary["config"][key]
        assert (list(cfg[key]) if isinstance(cfg[key], tuple) else cfg[key]) == saved, key
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert schedule.timesteps == 1000
    np.testing.assert_allclose(schedule.betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-12, atol=0)
    # the summary's numbers are consistent with each other and with the weights file
    assert summary["images_seen"] == summary["step"] * summary["config"]["batch_size"]
    assert summary["final"]["step"] == summary["step"]
    with resources.as_file(asset(filename.replace(".json", ".npz"))) as weights:
        assert read_npz(weights)["meta"]["extra"]["step"] == summary["step"]


@pytest.fixture(scope="module")
def noisy_batch(ref):
    _, schedule = ref
    images, _ = load_sample()
    x0 = preprocess(images[::50]).numpy()                    # 40 held-out images, 4 per class
    t = np.tile(np.array([50, 250, 500, 750], np.int32), 10)
    eps = tf.random.stateless_normal(x0.shape, seed=[0, 1]).numpy()
    return schedule.q_sample(x0, t, eps).numpy(), t, eps


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_reference_predicts_the_noise(refs, noisy_batch, name):
    """On held-out images each trained model's eps error is far below the 1.0 of predicting
    eps = 0 (the training loss is about 0.03); the same network with shuffled weights is not."""
    model, _ = refs[name]
    x_t, t, eps = noisy_batch
    mse = float(np.mean((model(x_t, t).numpy() - eps) ** 2))
    assert mse < 0.1, mse
    rng = np.random.default_rng(0)
    untrained = type(model).from_config(model.get_config())
    untrained.build_for(32)
    untrained.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in model.get_weights()])
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


def test_reference_by_name():
    with pytest.raises(ValueError, match=r"unknown reference model 'ho'; expected one of "
                                         r"\['conditional', 'ho-unet', 'ho-unet-step6000', 'seed-unet'\] \(or None for 'ho-unet'\)"):
        ddpm_lib.load_reference("ho")


def test_ho_unet_was_trained_with_its_own_timesteps(refs):
    model, schedule = refs["ho-unet"]
    assert schedule.timesteps == 1000 and model.trained_timesteps == 1000
