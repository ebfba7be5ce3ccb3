"""The point MLP eps_theta(x_t, t) of ddpm_lib.mlp, trained by Algorithm 1 (trainer.train_step) on 2-D data."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib import linear_schedule
from ddpm_lib.mixture import GaussianMixture
from ddpm_lib.mlp import MLP
from ddpm_lib.trainer import draw_t_eps, train_step


def test_shapes_config_and_float_times():
    keras.utils.set_random_seed(0)
    m = MLP(dim=3, width=16, depth=2, time_dim=8)
    x = tf.zeros((5, 3))
    assert m(x, tf.constant([0, 1, 2, 3, 999])).shape == (5, 3)
    assert m(x, tf.constant([0.5] * 5)).shape == (5, 3)      # continuous times are accepted
    clone = MLP.from_config(m.get_config())
    assert (clone.dim, clone.width, clone.depth, clone.time_dim) == (3, 16, 2, 8)
    assert len(m.trainable_variables) == 2 * 3


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\)"):
        MLP()(tf.zeros((4, 3)), tf.zeros([4], tf.int32))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\)"):
        MLP()(tf.zeros((4, 8, 8, 1)), tf.zeros([4], tf.int32))
    with pytest.raises(ValueError, match="time_dim must be even"):
        MLP(time_dim=7)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        MLP(width=0)


def test_algorithm_1_trains_it_towards_the_optimal_eps():
    """train_step works unchanged on (batch, 2) points; the network's distance to eps* falls."""
    keras.utils.set_random_seed(0)
    sched = linear_schedule(1000)
    mix = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], 0.05)
    data = tf.constant(mix.sample(20_000, seed=0), tf.float32)
    model, opt = MLP(width=64, depth=2), keras.optimizers.Adam(2e-3)

    @tf.function
    def step(k):
        x0 = tf.gather(data, tf.random.stateless_uniform([256], [7, k], maxval=20_000, dtype=tf.int32))
        t, eps = draw_t_eps(x0, k, 0, 1000)
        return train_step(model, opt, sched, x0, t, eps)

    t = 299
    x_t = mix.diffuse(sched.alpha_bars[t]).sample(2000, seed=1)
    eps_star = mix.optimal_eps(sched, x_t, t)

    def gap():
        return float(np.mean((model(x_t.astype(np.float32), tf.fill([2000], t)).numpy() - eps_star) ** 2))

    before = gap()
    for k in range(600):
        step(tf.constant(k, tf.int64))
    after = gap()
    assert after < 0.2 * before and after < 0.05, (before, after)
