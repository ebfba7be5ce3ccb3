"""ddpm_lib.ho_unet: Ho et al.'s UNet: its size, shapes, zero start, scale awareness, bad inputs."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from ddpm_lib.checkpoint import export_weights, load_weights, variable_keys
from ddpm_lib.ho_unet import HoUNet
from ddpm_lib.schedule import linear_schedule


def make_tiny_ho(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    kw = dict(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,),
              dropout=0.0, groups=4)
    kw.update(kwargs)
    return HoUNet(**kw).build_for()


def perturbed(model, seed=0, scale=0.05):
    """The model with every weight moved by noise, so the zero-initialized layers are not zero."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + scale * rng.standard_normal(w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def tiny_ho():
    return perturbed(make_tiny_ho())


def test_the_papers_cifar10_network_has_its_35_7m_parameters():
    # Ho et al., Appendix B: "Our CIFAR10 model has 35.7 million parameters". Same config, 3 channels.
    model = HoUNet(image_channels=3, base_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                   attn_resolutions=(16,), dropout=0.1, groups=32).build_for()
    assert model.count_params() == 35_746_307


def test_reference_configuration_parameter_count():
    model = HoUNet(base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=2,
                   attn_resolutions=(16,), dropout=0.0, groups=8).build_for()
    assert model.count_params() == 1_623_169


def test_weight_names_follow_the_blocks():
    model = make_tiny_ho()
    # the path below the model's own name (a seed UNet built earlier in the process leaves Keras
    # name scopes open, which prefixes later paths; checkpoint.variable_keys strips that too)
    paths = variable_keys(model)
    assert paths[:6] == ["temb_dense0/kernel", "temb_dense0/bias", "temb_dense1/kernel",
                         "temb_dense1/bias", "conv_in/kernel", "conv_in/bias"]
    for name in ("down0_res0/conv1/kernel", "down1_res0/nin_shortcut/kernel", "down1_attn0/q/kernel",
                 "down0_downsample/conv/kernel", "mid_attn/proj_out/kernel", "up1_res1/conv2/kernel",
                 "up1_upsample/conv/kernel", "norm_out/gamma", "conv_out/kernel"):
        assert name in paths, name
    assert not any("attn" in p and p.startswith(("down0", "up0")) for p in paths)  # 32x32: no attention
    assert len(set(paths)) == len(paths)


def test_starts_as_zero_output():
    # Ho's init_scale=0 on the last convolution of each block and the output: the network starts at 0
    out = make_tiny_ho()(tf.random.stateless_normal([2, 32, 32, 1], seed=[0, 1]), tf.constant([1, 500]))
    np.testing.assert_array_equal(out.numpy(), 0.0)


@pytest.mark.parametrize("channels, size, mult", [(1, 32, (1, 2)), (3, 16, (1, 2, 2)), (1, 8, (1,))])
def test_output_shape_equals_input_shape(channels, size, mult):
    model = perturbed(make_tiny_ho(image_channels=channels, image_size=size, channel_mult=mult,
                                   attn_resolutions=(size // 2 if len(mult) > 1 else size,)))
    x = tf.random.stateless_normal([3, size, size, channels], seed=[0, 1])
    out = model(x, tf.constant([0, 10, 999]))
    assert out.shape == x.shape and out.dtype == tf.float32
    assert np.all(np.isfinite(out.numpy()))


def test_output_depends_on_t(tiny_ho):
    x = tf.random.stateless_normal([2, 32, 32, 1], seed=[1, 2])
    a = tiny_ho(x, tf.constant([3, 3])).numpy()
    b = tiny_ho(x, tf.constant([3, 700])).numpy()
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(a[1] - b[1])) > 1e-4


def test_output_sees_the_scale_of_x(tiny_ho):
    """The opposite of test_unet.py::test_output_is_blind_to_the_scale_of_x: conv_in has a bias and
    the residual stream is not normalized, so eps_theta(a x, t) differs from eps_theta(x, t)."""
    x = tf.random.stateless_normal([2, 32, 32, 1], seed=[3, 4])
    t = tf.constant([10, 700])
    e = tiny_ho(x, t).numpy()
    for a in (0.5, 3.0):
        rel = np.sqrt(np.mean((tiny_ho(a * x, t).numpy() - e) ** 2) / np.mean(e ** 2))
        assert rel > 0.1, (a, rel)


def test_dropout_is_active_only_in_training():
    model = perturbed(make_tiny_ho(dropout=0.5))
    x, t = tf.random.stateless_normal([1, 32, 32, 1], seed=[5, 6]), tf.constant([100])
    np.testing.assert_array_equal(model(x, t).numpy(), model(x, t, training=False).numpy())
    assert np.max(np.abs(model(x, t, training=True).numpy() - model(x, t).numpy())) > 1e-4


def test_config_round_trip_and_export(tiny_ho, tmp_path):
    cfg = tiny_ho.get_config()
    assert cfg["channel_mult"] == [1, 2] and cfg["attn_resolutions"] == [16] and cfg["groups"] == 4
    clone = HoUNet.from_config(cfg).build_for()
    clone.set_weights(tiny_ho.get_weights())
    x, t = tf.random.stateless_normal([1, 32, 32, 1], seed=[3, 4]), tf.constant([5])
    np.testing.assert_array_equal(clone(x, t).numpy(), tiny_ho(x, t).numpy())
    path = export_weights(tiny_ho, linear_schedule(50), tmp_path / "ho.npz", dtype="float32")
    loaded, schedule = load_weights(path)
    assert isinstance(loaded, HoUNet) and schedule.timesteps == 50
    np.testing.assert_array_equal(loaded(x, t).numpy(), tiny_ho(x, t).numpy())


def test_mixed_precision_computes_in_bfloat16_and_returns_float32(tiny_ho):
    model = HoUNet(**dict(tiny_ho.get_config(), name="bf16"), dtype="mixed_bfloat16").build_for()
    model.set_weights(tiny_ho.get_weights())
    x, t = tf.random.stateless_normal([2, 32, 32, 1], seed=[7, 8]), tf.constant([5, 900])
    out, ref = model(x, t), tiny_ho(x, t)
    assert out.dtype == tf.float32 and model.compute_dtype == "bfloat16"
    rel = np.sqrt(np.mean((out.numpy() - ref.numpy()) ** 2) / np.mean(ref.numpy() ** 2))
    assert 0 < rel < 0.05


@pytest.mark.parametrize("x_shape, t, match", [
    ((2, 28, 28, 1), [0, 1], r"wrong height or width; expected shape \(batch, H, W, 1\) with H = W = 32"),
    ((2, 16, 16, 1), [0, 1], r"wrong height or width; expected shape \(batch, H, W, 1\) with H = W = 32"),
    ((2, 32, 32, 3), [0, 1], "3 channels but this network was built for image_channels=1"),
    ((2, 32, 32), [0, 1], "4-D NHWC"),
    ((2, 32, 32, 1), [0, 1, 2], "t has 3 entries but x_t has batch size 2"),
    ((2, 32, 32, 1), [0.0, 1.0], "integer tensor"),
])
def test_bad_inputs(tiny_ho, x_shape, t, match):
    with pytest.raises(ValueError, match=match):
        tiny_ho(tf.zeros(x_shape), tf.constant(t))


@pytest.mark.parametrize("kwargs, match", [
    (dict(base_channels=0), "base_channels must be a positive integer"),
    (dict(num_res_blocks=1.5), "num_res_blocks must be a positive integer"),
    (dict(channel_mult=()), "channel_mult must be a non-empty sequence"),
    (dict(channel_mult="12"), "channel_mult must be a non-empty sequence"),
    (dict(channel_mult=(1, 0)), "each channel_mult must be a positive integer"),
    (dict(dropout=1.0), r"dropout must be a finite number in \[0, 1\)"),
    (dict(groups=32), "groups=32 must divide every width"),
    (dict(image_size=30, channel_mult=(1, 2, 2)), "image_size=30 must be divisible by 4"),
    (dict(attn_resolutions=(8,)), r"includes \[8\], which is not a feature-map size"),
])
def test_bad_constructor_arguments(kwargs, match):
    kw = dict(base_channels=8, channel_mult=(1, 2), groups=4, attn_resolutions=(16,))
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        HoUNet(**kw)
