"""The noise-prediction network eps_theta(x_t, t): the seed post's UNet in plain Keras 3.

Blocks, top to bottom (base_channels c = 64 is the seed's network, 23,624,769 parameters at
32x32x1):

    inc  DoubleConv(c)                                 32x32
    down1 Down(c, 2c)   + sa1 SelfAttention(2c)          16x16
    down2 Down(2c, 4c)  + sa2 SelfAttention(4c)           8x8
    down3 Down(4c, 4c)                                    4x4
    bot1 DoubleConv(8c), bot2 MultiHeadAttention(4 heads), bot3 DoubleConv(4c)
    up1  Up(8c, 2c)     + sa3 SelfAttention(2c)           8x8
    up2  Up(4c, c)      + sa4 SelfAttention(c)           16x16
    up3  Up(2c, c)                                       32x32
    outc Conv2D(image_channels, 1)

The time t enters as a sinusoidal encoding of width ``time_dim`` (256), projected by a
SiLU + Dense in every Down and Up block and added to every pixel.

``attention="seed"`` keeps the seed's attention width: Keras' ``key_dim`` is per head, so the
seed's ``key_dim=channels`` with 4 heads makes each attention 4x wider than in its PyTorch origin
(``nn.MultiheadAttention(channels, 4)``, 64 // 4 = 16 dims a head). ``attention="origin"`` uses
``key_dim = channels // heads`` as the origin does. See the book's errata page.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras
from keras import layers

from .validate import one_of, positive_int

__all__ = ["timestep_encoding", "check_unet_inputs", "DoubleConv", "SelfAttention", "Down", "Up", "UNet"]


def timestep_encoding(t, dim=256):
    """Sinusoidal encoding of integer times t, shape (batch,) -> (batch, dim), float32.

    enc[:, i] = sin(t * w_i) for i < dim/2 and cos(t * w_{i - dim/2}) after, with
    w_i = 1 / 10000^(2i / dim), as in the seed (and Vaswani et al., 2017).
    """
    if dim % 2:
        raise ValueError(f"time_dim must be even; got {dim}.")
    inv_freq = 1.0 / (10000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    t = tf.cast(tf.convert_to_tensor(t), tf.float32)[:, None]
    args = t * tf.constant(inv_freq, tf.float32)[None, :]
    return tf.concat([tf.sin(args), tf.cos(args)], axis=-1)


def check_unet_inputs(x, t, image_channels, factor, image_size=None):
    """Raise a clear ``ValueError`` unless ``x`` is (batch, H, W, image_channels) with H and W
    divisible by ``factor`` (and equal to ``image_size`` if given) and ``t`` is (batch,) integers."""
    shape = x.shape
    size = f"H = W = {image_size}" if image_size else f"H and W divisible by {factor}"
    expected = f"(batch, H, W, {image_channels}) with {size}"
    if shape.rank != 4:
        raise ValueError(f"x_t must be a 4-D NHWC tensor {expected}; got shape {tuple(shape)}.")
    if shape[-1] is not None and shape[-1] != image_channels:
        raise ValueError(
            f"x_t has {shape[-1]} channels but this network was built for "
            f"image_channels={image_channels}; expected shape {expected}, got {tuple(shape)}.")
    for n in shape[1:3]:
        if n is not None and (n % factor or (image_size and n != image_size)):
            raise ValueError(
                f"x_t has the wrong height or width; expected shape {expected}, got "
                f"{tuple(shape)}. Pad 28x28 images to 32x32 first.")
    if t.shape.rank != 1:
        raise ValueError(f"t must have shape (batch,); got shape {tuple(t.shape)}.")
    if t.shape[0] is not None and shape[0] is not None and t.shape[0] != shape[0]:
        raise ValueError(f"t has {t.shape[0]} entries but x_t has batch size {shape[0]}.")
    if not t.dtype.is_integer:
        raise ValueError(f"t must be an integer tensor of code times; got dtype {t.dtype.name}.")


def _gelu(x):
    return keras.activations.gelu(x, approximate=False)


class DoubleConv(layers.Layer):
    """Conv3x3 -> GroupNorm(1) -> GELU -> Conv3x3 -> GroupNorm(1), optionally residual (then GELU)."""

    def __init__(self, out_channels, mid_channels=None, residual=False, **kwargs):
        super().__init__(**kwargs)
        mid_channels = mid_channels or out_channels
        self.out_channels, self.residual = out_channels, residual
        p = self.dtype_policy
        self.conv1 = layers.Conv2D(mid_channels, 3, padding="same", use_bias=False, name="conv1", dtype=p)
        self.norm1 = layers.GroupNormalization(groups=1, name="norm1", dtype=p)
        self.conv2 = layers.Conv2D(out_channels, 3, padding="same", use_bias=False, name="conv2", dtype=p)
        self.norm2 = layers.GroupNormalization(groups=1, name="norm2", dtype=p)

    def build(self, x_shape):
        pass               # the sublayers build on their first call, inside this layer's name scope

    def call(self, x):
        h = self.norm2(self.conv2(_gelu(self.norm1(self.conv1(x)))))
        return _gelu(x + h) if self.residual else h


class SelfAttention(layers.Layer):
    """Pre-LayerNorm multi-head self-attention over all pixels, then a GELU feed-forward; both residual."""

    def __init__(self, channels, heads=4, key_dim=None, **kwargs):
        super().__init__(**kwargs)
        p = self.dtype_policy
        self.channels = channels
        self.ln = layers.LayerNormalization(name="ln", dtype=p)
        self.mha = layers.MultiHeadAttention(heads, key_dim or channels, name="mha", dtype=p)
        self.ff_ln = layers.LayerNormalization(name="ff_ln", dtype=p)
        self.ff1 = layers.Dense(channels, name="ff1", dtype=p)
        self.ff2 = layers.Dense(channels, name="ff2", dtype=p)

    def build(self, x_shape):
        pass

    def call(self, x):
        shape = tf.shape(x)
        h = tf.reshape(x, [shape[0], shape[1] * shape[2], self.channels])
        h_ln = self.ln(h)
        h = self.mha(h_ln, h_ln, h_ln) + h
        h = self.ff2(_gelu(self.ff1(self.ff_ln(h)))) + h
        return tf.reshape(h, shape)


class _TimeInjection(layers.Layer):
    """SiLU -> Dense(channels) of the time encoding, added to every pixel."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(channels, name="dense", dtype=self.dtype_policy)

    def build(self, x_shape, t_emb_shape=None):
        pass

    def call(self, x, t_emb):
        return x + self.dense(tf.nn.silu(t_emb))[:, None, None, :]


class Down(layers.Layer):
    """MaxPool(2) -> DoubleConv(in, residual) -> DoubleConv(out), plus the time embedding."""

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__(**kwargs)
        p = self.dtype_policy
        self.pool = layers.MaxPooling2D(2, name="pool", dtype=p)
        self.conv1 = DoubleConv(in_channels, residual=True, name="conv1", dtype=p)
        self.conv2 = DoubleConv(out_channels, name="conv2", dtype=p)
        self.time = _TimeInjection(out_channels, name="time", dtype=p)

    def build(self, x_shape, t_emb_shape=None):
        pass

    def call(self, x, t_emb):
        return self.time(self.conv2(self.conv1(self.pool(x))), t_emb)


class Up(layers.Layer):
    """Bilinear x2 upsampling, concat with the skip, DoubleConv(in, residual) -> DoubleConv(out, in/2)."""

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__(**kwargs)
        p = self.dtype_policy
        self.up = layers.UpSampling2D(2, interpolation="bilinear", name="up", dtype=p)
        self.conv1 = DoubleConv(in_channels, residual=True, name="conv1", dtype=p)
        self.conv2 = DoubleConv(out_channels, in_channels // 2, name="conv2", dtype=p)
        self.time = _TimeInjection(out_channels, name="time", dtype=p)

    def build(self, x_shape, skip_shape=None, t_emb_shape=None):
        pass

    def call(self, x, skip, t_emb):
        x = tf.concat([skip, self.up(x)], axis=-1)
        return self.time(self.conv2(self.conv1(x)), t_emb)


class UNet(keras.Model):
    """eps_theta(x_t, t): predicts the noise in x_t. Call as ``model(x_t, t)``.

    Args:
        image_channels: channels of the images (1 for Fashion-MNIST, 3 for CIFAR-10).
        base_channels: width c of the first level; 64 is the seed's network.
        time_dim: width of the sinusoidal time encoding (256 in the seed).
        attention: ``"seed"`` (key_dim = channels per head, the seed's width) or ``"origin"``
            (key_dim = channels // heads, as in the PyTorch network the seed ported).
        heads: attention heads (4).
        dtype: a Keras dtype policy, e.g. ``"mixed_bfloat16"``; the output is always float32.

    ``x_t``: float images (batch, H, W, image_channels) with H and W divisible by 8.
    ``t``: int32 code times of shape (batch,). Returns eps with the shape of ``x_t``.
    """

    def __init__(self, image_channels=1, base_channels=64, time_dim=256, attention="seed",
                 heads=4, **kwargs):
        super().__init__(**kwargs)
        one_of(attention, ("seed", "origin"), "attention")
        for name, v in (("image_channels", image_channels), ("base_channels", base_channels),
                        ("time_dim", time_dim), ("heads", heads)):
            positive_int(v, name)
        if time_dim % 2:
            raise ValueError(f"time_dim must be even; got {time_dim}.")
        self.image_channels, self.base_channels = int(image_channels), int(base_channels)
        self.time_dim, self.attention, self.heads = int(time_dim), attention, int(heads)
        c, p = self.base_channels, self.dtype_policy

        def attn(ch, name):
            return SelfAttention(ch, heads, self._key_dim(ch), name=name, dtype=p)

        self.inc = DoubleConv(c, name="inc", dtype=p)
        self.down1, self.sa1 = Down(c, 2 * c, name="down1", dtype=p), attn(2 * c, "sa1")
        self.down2, self.sa2 = Down(2 * c, 4 * c, name="down2", dtype=p), attn(4 * c, "sa2")
        self.down3 = Down(4 * c, 4 * c, name="down3", dtype=p)
        self.bot1 = DoubleConv(8 * c, name="bot1", dtype=p)
        self.bot2 = layers.MultiHeadAttention(heads, self._key_dim(8 * c), name="bot2", dtype=p)
        self.bot3 = DoubleConv(4 * c, name="bot3", dtype=p)
        self.up1, self.sa3 = Up(8 * c, 2 * c, name="up1", dtype=p), attn(2 * c, "sa3")
        self.up2, self.sa4 = Up(4 * c, c, name="up2", dtype=p), attn(c, "sa4")
        self.up3 = Up(2 * c, c, name="up3", dtype=p)
        self.outc = layers.Conv2D(self.image_channels, 1, name="outc", dtype="float32")

    def _key_dim(self, channels):
        return channels if self.attention == "seed" else max(1, channels // self.heads)

    def get_config(self):
        # The dtype policy is left out on purpose: an EMA copy or a loaded model is float32 (a
        # mixed-precision model keeps float32 weights anyway); pass dtype= to choose another.
        return {"image_channels": self.image_channels, "base_channels": self.base_channels,
                "time_dim": self.time_dim, "attention": self.attention, "heads": self.heads,
                "name": self.name}

    def __call__(self, x, t, *args, **kwargs):
        # Check here, before Keras wraps any exception of call() in its own message.
        check_unet_inputs(tf.convert_to_tensor(x), tf.convert_to_tensor(t), self.image_channels, 8)
        return super().__call__(x, t, *args, **kwargs)

    def call(self, x, t, training=None):
        x = tf.convert_to_tensor(x)
        t = tf.convert_to_tensor(t)
        x = tf.cast(x, self.compute_dtype)
        emb = tf.cast(timestep_encoding(t, self.time_dim), self.compute_dtype)
        x1 = self.inc(x)
        x2 = self.sa1(self.down1(x1, emb))
        x3 = self.sa2(self.down2(x2, emb))
        x4 = self.bot1(self.down3(x3, emb))
        x4 = self.bot3(self.bot2(x4, x4, x4))
        x = self.sa3(self.up1(x4, x3, emb))
        x = self.sa4(self.up2(x, x2, emb))
        x = self.up3(x, x1, emb)
        return self.outc(x)

    def build_for(self, image_size=32):
        """Create the weights by one call on zeros of size ``image_size``; returns ``self``."""
        self(tf.zeros([1, image_size, image_size, self.image_channels]), tf.zeros([1], tf.int32))
        return self
