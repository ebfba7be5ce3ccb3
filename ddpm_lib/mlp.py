"""eps_theta(x_t, t) for points in R^d: a small MLP, the network of the 2-D toy problems.

The image networks (``unet``, ``ho_unet``) are convolutional; on points ``(batch, d)`` the same job
is done by a multilayer perceptron on the concatenation of x_t and the sinusoidal encoding of t
(``unet.timestep_encoding``). It is called like them, ``model(x_t, t)``, so Algorithm 1
(``trainer.draw_t_eps`` and ``trainer.train_step``) trains it unchanged. t may be a float (a
continuous time on the code scale, e.g. (T s - 1) for ``ddpm_lib.sde``'s s).
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from . import validate
from .unet import timestep_encoding

__all__ = ["MLP"]


@keras.saving.register_keras_serializable(package="ddpm_lib")
class MLP(keras.Model):
    """eps_theta(x_t, t) = W_out h_L, h_l = SiLU(W_l h_{l-1} + b_l), h_0 = [x_t, enc(t)].

    Args:
        dim: d, the dimension of the points.
        width: units of each hidden layer.
        depth: number of hidden layers.
        time_dim: length of the sinusoidal time encoding (even).
    """

    def __init__(self, dim=2, width=128, depth=3, time_dim=32, **kwargs):
        super().__init__(**kwargs)
        self.dim = validate.positive_int(dim, "dim")
        self.width = validate.positive_int(width, "width")
        self.depth = validate.positive_int(depth, "depth")
        self.time_dim = validate.positive_int(time_dim, "time_dim")
        if self.time_dim % 2:
            raise ValueError(f"time_dim must be even; got {time_dim}.")
        self.hidden = [layers.Dense(self.width, activation="silu", name=f"hidden_{i}")
                       for i in range(self.depth)]
        self.out = layers.Dense(self.dim, name="out")

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "width": self.width, "depth": self.depth,
                "time_dim": self.time_dim}

    def __call__(self, x, t, *args, **kwargs):
        # Check here, before Keras wraps any exception of call() in its own message.
        shape = tf.convert_to_tensor(x).shape
        if shape.rank != 2 or (shape[-1] is not None and shape[-1] != self.dim):
            raise ValueError(f"x must have shape (batch, {self.dim}); got shape {tuple(shape)}.")
        return super().__call__(x, t, *args, **kwargs)

    def call(self, x, t, training=None):
        h = tf.concat([tf.cast(x, tf.float32), timestep_encoding(t, self.time_dim)], axis=-1)
        for layer in self.hidden:
            h = layer(h)
        return self.out(h)
