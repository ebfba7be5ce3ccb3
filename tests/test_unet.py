"""ddpm_lib.unet: shapes, the pinned size of the seed network, the time encoding, bad inputs."""
import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib.unet import UNet, timestep_encoding


def test_seed_network_parameter_count():
    # the seed post's network: base 64, attention "seed" (Keras key_dim = channels per head)
    model = UNet().build_for(32)
    assert model.count_params() == 23_624_769
    out = model(tf.zeros([2, 32, 32, 1]), tf.constant([0, 999]))
    assert out.shape == (2, 32, 32, 1) and out.dtype == tf.float32


def mha_params(channels, heads, key_dim):
    """Keras MultiHeadAttention(heads, key_dim) on `channels` features: q, k, v and output, with biases."""
    return 3 * (channels * heads * key_dim + heads * key_dim) + heads * key_dim * channels + channels


def test_attention_width_difference_is_exactly_the_attention_layers(tiny_unet, tiny_unet_factory):
    """"seed" and "origin" differ only in key_dim: c per head vs c // 4 (errata page)."""
    c = 8
    seed = tiny_unet_factory(attention="seed").count_params()
    origin = tiny_unet.count_params()                     # base 8, attention "origin"
    widths = [2 * c, 4 * c, 8 * c, 2 * c, c]          # sa1, sa2, bot2, sa3, sa4
    expected = sum(mha_params(ch, 4, ch) - mha_params(ch, 4, ch // 4) for ch in widths)
    assert seed - origin == expected > 0


@pytest.mark.parametrize("size, channels", [((32, 32), 1), ((16, 16), 3), ((24, 40), 1), ((8, 8), 1)])
def test_output_shape_equals_input_shape(tiny_unet, tiny_unet_factory, size, channels):
    model = tiny_unet if channels == 1 else tiny_unet_factory(image_channels=channels, image_size=16)
    x = tf.random.stateless_normal([3, *size, channels], seed=[0, 1])
    out = model(x, tf.constant([0, 10, 999]))
    assert out.shape == x.shape and out.dtype == tf.float32
    assert np.all(np.isfinite(out.numpy()))


def test_output_depends_on_t(tiny_unet):
    x = tf.random.stateless_normal([2, 32, 32, 1], seed=[1, 2])
    a = tiny_unet(x, tf.constant([3, 3])).numpy()
    b = tiny_unet(x, tf.constant([3, 700])).numpy()
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-5)     # same (x, t): same output
    assert np.max(np.abs(a[1] - b[1])) > 1e-4                       # other t: other output
    # int64 times are accepted too
    np.testing.assert_allclose(tiny_unet(x, tf.constant([3, 3], tf.int64)).numpy(), a, rtol=1e-5, atol=1e-6)


def test_works_inside_tf_function_with_unknown_batch(tiny_unet):
    f = tf.function(lambda x, t: tiny_unet(x, t),
                    input_signature=[tf.TensorSpec([None, 32, 32, 1]), tf.TensorSpec([None], tf.int32)])
    out = f(tf.zeros([2, 32, 32, 1]), tf.constant([1, 2]))
    assert out.shape == (2, 32, 32, 1)


def test_config_round_trip(tiny_unet):
    cfg = tiny_unet.get_config()
    assert {k: cfg[k] for k in ("image_channels", "base_channels", "time_dim", "attention", "heads")} == \
        dict(image_channels=1, base_channels=8, time_dim=32, attention="origin", heads=4)
    clone = UNet.from_config(cfg).build_for(32)
    assert clone.count_params() == tiny_unet.count_params()
    clone.set_weights(tiny_unet.get_weights())
    x = tf.random.stateless_normal([1, 32, 32, 1], seed=[3, 4])
    np.testing.assert_allclose(clone(x, tf.constant([5])).numpy(), tiny_unet(x, tf.constant([5])).numpy(),
                               rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------- time encoding
@pytest.mark.parametrize("dim", [2, 32, 256])
def test_timestep_encoding_values(dim):
    t = np.array([0, 1, 7, 500, 999])
    enc = timestep_encoding(tf.constant(t, tf.int32), dim)
    assert enc.shape == (5, dim) and enc.dtype == tf.float32
    i = np.arange(dim // 2)
    w = 1.0 / 10000.0 ** (2.0 * i / dim)
    args = t[:, None].astype(np.float64) * w[None, :]
    ref = np.concatenate([np.sin(args), np.cos(args)], axis=1)
    # float32: w rounded (rel 6e-8), t*w rounded (rel 6e-8): the argument is off by <~ 2 ulp of
    # t*w, which moves sin/cos by as much -> atol = 3 * 2**-24 * t*w + 1e-6
    tol = np.concatenate([3 * 2.0 ** -24 * args, 3 * 2.0 ** -24 * args], axis=1) + 1e-6
    assert np.all(np.abs(enc.numpy() - ref) <= tol)
    np.testing.assert_array_equal(enc.numpy()[0], np.r_[np.zeros(dim // 2), np.ones(dim // 2)])


def test_timestep_encoding_odd_dim():
    with pytest.raises(ValueError, match="even"):
        timestep_encoding(tf.constant([1]), 33)


# ------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("x_shape, t, match", [
    ((2, 28, 28, 1), [0, 1], "divisible by 8"),
    ((2, 32, 20, 1), [0, 1], "divisible by 8"),
    ((2, 32, 32, 3), [0, 1], "3 channels but this network was built for image_channels=1"),
    ((2, 32, 32), [0, 1], "4-D NHWC"),
    ((2, 32, 32, 1), [0, 1, 2], "t has 3 entries but x_t has batch size 2"),
    ((2, 32, 32, 1), [[0, 1]], r"t must have shape \(batch,\)"),
    ((2, 32, 32, 1), 5, r"t must have shape \(batch,\)"),
    ((2, 32, 32, 1), [0.0, 1.0], "integer tensor"),
])
def test_bad_inputs(tiny_unet, x_shape, t, match):
    with pytest.raises(ValueError, match=match):
        tiny_unet(tf.zeros(x_shape), tf.constant(t))


@pytest.mark.parametrize("kwargs, match", [
    (dict(attention="flash"), "attention must be"),
    (dict(base_channels=0), "base_channels must be a positive integer"),
    (dict(base_channels=8.0), "base_channels must be a positive integer"),
    (dict(image_channels=True), "image_channels must be a positive integer"),
    (dict(heads=0), "heads must be a positive integer"),
    (dict(time_dim=31), "time_dim must be even"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet(**kwargs)


def test_output_is_blind_to_the_scale_of_x(tiny_unet):
    """Errata 19 / chapter 8: `inc` (bias-free convolutions + one-group GroupNorm) removes the scale
    of x_t, so eps_theta(a x, t) equals eps_theta(x, t) up to GroupNorm's epsilon. This pins the
    seed architecture's property; a scale-aware variant must make this test fail on purpose."""
    x = tf.random.stateless_normal([2, 32, 32, 1], seed=[3, 4])
    t = tf.constant([10, 700])
    e = tiny_unet(x, t).numpy()
    for a in (0.5, 3.0):
        rel = np.sqrt(np.mean((tiny_unet(a * x, t).numpy() - e) ** 2) / np.mean(e ** 2))
        assert rel < 0.02, (a, rel)
    inc = tiny_unet.inc(x).numpy()
    np.testing.assert_allclose(tiny_unet.inc(3.0 * x).numpy(), inc, atol=1e-2 * np.abs(inc).max())
    # a shift is not removed: it adds a different constant to each channel, which one group keeps
    assert np.sqrt(np.mean((tiny_unet(x + 0.5, t).numpy() - e) ** 2) / np.mean(e ** 2)) > 0.02
