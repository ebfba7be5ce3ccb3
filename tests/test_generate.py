"""ddpm_lib.generate: seeded batches, and a cache that gives back exactly what a fresh run makes."""
import os

import numpy as np
import pytest

from ddpm_lib import sampler
from ddpm_lib.generate import generate_images, model_fingerprint, sampler_settings
from ddpm_lib.schedule import linear_schedule

KW = dict(method="ddim", steps=3, eta=1.0)


@pytest.fixture(scope="module")
def schedule():
    return linear_schedule(20)


def test_batches_are_seeded_and_prefixes_agree(tiny_unet, schedule):
    x5, secs = generate_images(tiny_unet, schedule, 5, batch_size=2, **KW)
    x3, _ = generate_images(tiny_unet, schedule, 3, batch_size=2, **KW)
    assert x5.shape == (5, 32, 32, 1) and x5.dtype == np.float32
    np.testing.assert_array_equal(x5[:3], x3)
    assert secs.shape == (3, 2) and secs[:, 1].tolist() == [2, 2, 1] and np.all(secs[:, 0] > 0)
    # batch b is sampler.sample with seed seed0 + b
    b1 = sampler.sample(tiny_unet, schedule, (2, 32, 32, 1), seed=1001, **KW).numpy()
    np.testing.assert_array_equal(x5[2:4], b1)


def test_cache_returns_the_same_images_without_sampling(tiny_unet, schedule, tmp_path, monkeypatch):
    fresh, _ = generate_images(tiny_unet, schedule, 3, batch_size=2, **KW)
    first, _ = generate_images(tiny_unet, schedule, 3, batch_size=2, cache_dir=tmp_path, **KW)
    np.testing.assert_array_equal(first, fresh)
    (folder,) = os.listdir(tmp_path)
    assert sorted(os.listdir(tmp_path / folder)) == ["batch-00000.npz", "batch-00001.npz", "request.npz"]

    def no_sampling(*args, **kwargs):
        raise AssertionError("the cache should have been used")
    monkeypatch.setattr(sampler, "sample", no_sampling)
    again, secs = generate_images(tiny_unet, schedule, 3, batch_size=2, cache_dir=tmp_path, **KW)
    np.testing.assert_array_equal(again, fresh)
    assert secs[:, 1].tolist() == [2, 1]
    # another request (another eta) is another cache entry, so it must sample
    with pytest.raises(AssertionError, match="cache should have been used"):
        generate_images(tiny_unet, schedule, 3, batch_size=2, cache_dir=tmp_path,
                        method="ddim", steps=3, eta=0.5)


def test_fingerprint_changes_with_the_weights(tiny_unet_factory):
    a, b = tiny_unet_factory(seed=0), tiny_unet_factory(seed=0)
    assert model_fingerprint(a) == model_fingerprint(b)
    b.set_weights([w + 1e-3 for w in b.get_weights()])
    assert model_fingerprint(a) != model_fingerprint(b)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "n must be a positive integer"),
    (dict(n=4, batch_size=2.0), "batch_size must be a positive integer"),
    (dict(n=4, seed=3), "sets seed and shape itself"),
])
def test_bad_arguments(tiny_unet, schedule, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_images(tiny_unet, schedule, **kwargs)


def test_labels_reach_the_sampler_and_key_the_cache(tiny_unet, schedule, tmp_path, monkeypatch):
    """Class labels (a long array) go to every batch's sample call, and two label arrays that
    differ in one entry are two cache entries (the key holds the labels in full)."""
    calls = []

    def fake_sample(model, schedule, shape, seed, **kwargs):
        calls.append(kwargs["labels"])
        import tensorflow as tf
        return tf.fill(shape, float(kwargs["labels"][0]))
    monkeypatch.setattr(sampler, "sample", fake_sample)
    labels = np.arange(2000) % 10
    x, _ = generate_images(tiny_unet, schedule, 3, batch_size=2000, cache_dir=tmp_path,
                           labels=labels, **KW)
    assert len(calls) == 1 and calls[0] is labels and x.shape == (3, 32, 32, 1)
    other = labels.copy()
    other[1501] = 7                # labels[1501] is 1
    generate_images(tiny_unet, schedule, 3, batch_size=2000, cache_dir=tmp_path, labels=other, **KW)
    assert len(calls) == 2 and len(os.listdir(tmp_path)) == 2


def test_a_default_given_or_left_out_is_the_same_request(tiny_unet, schedule, tmp_path, monkeypatch):
    """The key holds every setting of sampler.sample with its defaults filled in: leaving out
    eta=0.0 and variance="posterior", or writing eta=0 for 0.0, names the same cache entry."""
    first, _ = generate_images(tiny_unet, schedule, 2, batch_size=2, cache_dir=tmp_path,
                               method="ddim", steps=3)
    monkeypatch.setattr(sampler, "sample", lambda *a, **k: pytest.fail("sampled again"))
    for kw in (dict(eta=0.0), dict(eta=0), dict(eta=0, variance="posterior", clip_x0=False)):
        again, _ = generate_images(tiny_unet, schedule, 2, batch_size=2, cache_dir=tmp_path,
                                   method="ddim", steps=3, **kw)
        np.testing.assert_array_equal(again, first)
    assert len(os.listdir(tmp_path)) == 1
    settings = sampler_settings(dict(method="ddim", steps=3, eta=0))
    assert settings["eta"] == 0.0 and settings["variance"] == "posterior" and "seed" not in settings


def test_settings_hold_tensors_by_value():
    import tensorflow as tf
    labels = np.arange(2000) % 10
    assert sampler_settings(dict(labels=tf.constant(labels)))["labels"] == labels.tolist()


def test_an_unknown_setting_is_refused_before_work(tiny_unet, schedule, monkeypatch):
    monkeypatch.setattr(sampler, "sample", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(ValueError, match=r"sampler.sample has no setting 'etta'; expected some of "
                                         r"method, steps, eta"):
        generate_images(tiny_unet, schedule, 2, batch_size=2, method="ddim", etta=0.5)


def test_a_bad_setting_leaves_nothing_in_the_cache(tiny_unet, schedule, tmp_path):
    """A value the sampler refuses (more steps than T, eta above 1) stops before any batch and
    leaves no folder behind."""
    for bad, match in ((dict(steps=21), "steps must be"), (dict(steps=3, eta=1.5), r"in \[0, 1\]")):
        with pytest.raises(ValueError, match=match):
            generate_images(tiny_unet, schedule, 2, batch_size=2, cache_dir=tmp_path, method="ddim", **bad)
    assert os.listdir(tmp_path) == []


def test_a_cache_dir_that_cannot_be_written_is_refused_before_sampling(tiny_unet, schedule, tmp_path,
                                                                       monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(sampler, "sample", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(ValueError, match=r"cache_dir .*afile.* cannot be used: .*afile' is not a directory"):
        generate_images(tiny_unet, schedule, 2, batch_size=2, cache_dir=tmp_path / "afile" / "cache", **KW)
