"""eps_theta(x_t, t) as in the DDPM paper: Ho et al.'s UNet (Appendix B), in plain Keras 3.

The network of Ho, Jain & Abbeel (2020), after their ``diffusion_tf/models/unet.py``, a
PixelCNN++-style UNet. With base width c and channel multipliers m_0..m_{L-1}:

    temb = Dense(4c) -> SiLU -> Dense(4c) of the sinusoidal encoding of t
    conv_in: Conv3x3(c), *with bias*                                  H x W
    down level i: num_res_blocks x ResBlock(c m_i) [+ Attention if H_i in attn_resolutions],
                  then Downsample (Conv3x3, stride 2) except at the last level
    mid: ResBlock, Attention, ResBlock
    up level i (reversed): (num_res_blocks + 1) x ResBlock(c m_i) on concat(h, skip)
                  [+ Attention], then Upsample (nearest x2 -> Conv3x3) except at level 0
    out: GroupNorm -> SiLU -> Conv3x3(image_channels)

    ResBlock(x):  h = Conv3x3(SiLU(GroupNorm(x))) + Dense(SiLU(temb))
                  h = Conv3x3(Dropout(SiLU(GroupNorm(h))))
                  return Conv1x1(x) + h      (the 1x1 "nin" shortcut only when the width changes)
    Attention(x): single-head self-attention over all pixels, q, k, v and the output
                  projection 1x1; return x + proj(softmax(q k^T / sqrt(C)) v)

The convolution that ends each residual branch, the attention's output projection and the last
convolution start at zero (Ho's ``init_scale=0``), so at initialization every block is the
identity and the network outputs 0.

Why this matters for sampling (chapter 5): x_t enters through a biased convolution and then
*un-normalized* residual additions, so the scale of x_t reaches the output. The seed's UNet
normalizes right after its first convolution (no bias, GroupNorm(1)), which makes its output
blind to the scale of x_t; see the errata page, item 19.

Class conditioning (``num_classes``; Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022):
the label y in {0, ..., K - 1}, or the "null" class K (no label: Ho & Salimans' null token), has
a learned embedding of width 4c that is *added to the time embedding*,

    temb = Dense(4c) -> SiLU -> Dense(4c) of the encoding of t,   + Embedding(K + 1, 4c)[y]

so it reaches every residual block through the same Dense(SiLU(temb)). This is where Dhariwal &
Nichol's ``guided_diffusion`` UNet adds its class embedding (``emb = time_embed(...) +
label_emb(y)``), the architecture Ho & Salimans build on; Ho & Salimans do not fix it further. One
network learns eps_theta(x_t, t, y) and, with y = K, the unconditional eps_theta(x_t, t) that
classifier-free guidance needs. The embedding starts at *zero* (a choice of this library, not of
the papers): a conditional model that takes the weights of an unconditional one
(``copy_unconditional_weights``) then computes exactly the unconditional eps for every y, and
fine-tuning starts from there. Its output is multiplied by a constant ``class_embedding_scale``
(gamma = 50): under Adam, which moves each entry by at most about the learning rate per step, this is
a gamma times larger learning rate for the embedding alone (up to Adam's epsilon, AdamW's weight
decay, which is not scaled, and global-norm gradient clipping, in which the embedding's gradient
counts gamma times). With gamma = 1, 1,000 fine-tuning steps (learning rate 2e-4) moved the embedding to
about 1% of the time embedding's size, and the model did not follow its labels (chapter 11,
exercise 11.5). ``num_classes=None`` is the unconditional network, with the same
weights, names and config as before conditioning existed.

Differences from Ho's code, all small: the time encoding is ``unet.timestep_encoding`` (the
frequencies 1/10000^(2i/d) of the seed, where Ho divides by d/2 - 1 instead of d/2), and the
weights start from Keras' Glorot-uniform, which is Ho's default ``variance_scaling(1, fan_avg,
uniform)``.
"""
from __future__ import annotations

import tensorflow as tf
import keras
from keras import layers

from .checkpoint import variable_keys
from .unet import check_unet_inputs, timestep_encoding
from .validate import class_labels, fraction, positive_int, positive_number

__all__ = ["ResBlock", "AttentionBlock", "Downsample", "Upsample", "HoUNet",
           "copy_unconditional_weights"]

# The default gamma of HoUNet(class_embedding_scale=gamma); a file or run that does not record it was
# made before it existed and used gamma = 1 (``checkpoint.load_weights``, the command line).
CLASS_EMBEDDING_SCALE = 50.0


def _norm(groups, name, dtype):
    return layers.GroupNormalization(groups=groups, epsilon=1e-6, name=name, dtype=dtype)


class ResBlock(layers.Layer):
    """GroupNorm -> SiLU -> Conv3x3, + Dense(SiLU(temb)), GroupNorm -> SiLU -> Dropout -> Conv3x3, + skip."""

    def __init__(self, out_channels, groups, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        p = self.dtype_policy
        self.out_channels, self.groups, self.dropout_rate = out_channels, groups, dropout
        self.norm1 = _norm(groups, "norm1", p)
        self.conv1 = layers.Conv2D(out_channels, 3, padding="same", name="conv1", dtype=p)
        self.temb_proj = layers.Dense(out_channels, name="temb_proj", dtype=p)
        self.norm2 = _norm(groups, "norm2", p)
        self.dropout = layers.Dropout(dropout, name="dropout", dtype=p)
        self.conv2 = layers.Conv2D(out_channels, 3, padding="same", kernel_initializer="zeros",
                                   name="conv2", dtype=p)
        self.shortcut = None

    def build(self, x_shape, temb_shape=None):
        if x_shape[-1] != self.out_channels:
            self.shortcut = layers.Conv2D(self.out_channels, 1, name="nin_shortcut", dtype=self.dtype_policy)

    def call(self, x, temb, training=None):
        h = self.conv1(tf.nn.silu(self.norm1(x)))
        h = h + self.temb_proj(tf.nn.silu(temb))[:, None, None, :]
        h = self.conv2(self.dropout(tf.nn.silu(self.norm2(h)), training=training))
        skip = x if self.shortcut is None else self.shortcut(x)
        return skip + h


class AttentionBlock(layers.Layer):
    """x + proj_out(softmax(q k^T / sqrt(C)) v), q, k, v = 1x1 projections of GroupNorm(x)."""

    def __init__(self, channels, groups, **kwargs):
        super().__init__(**kwargs)
        p = self.dtype_policy
        self.channels = channels
        self.norm = _norm(groups, "norm", p)
        self.q = layers.Dense(channels, name="q", dtype=p)
        self.k = layers.Dense(channels, name="k", dtype=p)
        self.v = layers.Dense(channels, name="v", dtype=p)
        self.proj_out = layers.Dense(channels, kernel_initializer="zeros", name="proj_out", dtype=p)

    def call(self, x):
        shape = tf.shape(x)
        h = tf.reshape(self.norm(x), [shape[0], shape[1] * shape[2], self.channels])
        q, k, v = self.q(h), self.k(h), self.v(h)
        logits = tf.einsum("bic,bjc->bij", q, k) * (self.channels ** -0.5)
        w = tf.cast(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1), v.dtype)
        h = self.proj_out(tf.einsum("bij,bjc->bic", w, v))
        return x + tf.reshape(h, shape)


class Downsample(layers.Layer):
    """Halve H and W with a stride-2 Conv3x3."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(channels, 3, strides=2, padding="same", name="conv",
                                  dtype=self.dtype_policy)

    def call(self, x):
        return self.conv(x)


class Upsample(layers.Layer):
    """Double H and W: nearest-neighbour x2, then Conv3x3."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        p = self.dtype_policy
        self.up = layers.UpSampling2D(2, interpolation="nearest", name="up", dtype=p)
        self.conv = layers.Conv2D(channels, 3, padding="same", name="conv", dtype=p)

    def call(self, x):
        return self.conv(self.up(x))


class HoUNet(keras.Model):
    """eps_theta(x_t, t[, y]), the UNet of Ho et al. (2020). Call as ``model(x_t, t[, y])``.

    Args:
        image_channels: channels of the images (1 for Fashion-MNIST, 3 for CIFAR-10).
        image_size: height = width of the images (32); it places the attention blocks.
        base_channels: width c of the first level (128 in the paper's CIFAR-10 model).
        channel_mult: widths of the levels as multiples of c ((1, 2, 2, 2) for CIFAR-10); the
            image is halved between levels, so image_size must be divisible by 2^(levels - 1).
        num_res_blocks: residual blocks per level on the way down (2); the way up has one more.
        attn_resolutions: feature-map sizes with self-attention after every residual block
            ((16,) in the paper); the middle always has one.
        dropout: dropout rate inside the residual blocks (0.1 for CIFAR-10).
        groups: GroupNorm groups (32 in the paper); must divide every width c * m_i.
        num_classes: K for a class-conditional network (labels 0..K-1, and K = the null class;
            see the module docstring), ``None`` (default) for the unconditional one.
        class_embedding_scale: the constant gamma that multiplies the class embedding (50; see the
            module docstring); only for a conditional network.
        dtype: a Keras dtype policy, e.g. ``"mixed_bfloat16"``; the output is always float32.

    ``x_t``: float images (batch, image_size, image_size, image_channels); ``t``: int32 code
    times of shape (batch,); ``y``: integer labels of shape (batch,) in [0, K], only for a
    conditional network, where ``y=None`` means the null class K for the whole batch. Returns
    eps with the shape of ``x_t``.
    """

    def __init__(self, image_channels=1, image_size=32, base_channels=128, channel_mult=(1, 2, 2, 2),
                 num_res_blocks=2, attn_resolutions=(16,), dropout=0.1, groups=32, num_classes=None,
                 class_embedding_scale=CLASS_EMBEDDING_SCALE, **kwargs):
        kwargs.setdefault("name", "ho_unet")
        super().__init__(**kwargs)
        self.image_channels = positive_int(image_channels, "image_channels")
        self.image_size = positive_int(image_size, "image_size")
        self.base_channels = positive_int(base_channels, "base_channels")
        self.num_res_blocks = positive_int(num_res_blocks, "num_res_blocks")
        self.groups = positive_int(groups, "groups")
        if isinstance(channel_mult, (str, bytes)) or not len(channel_mult):
            raise ValueError(f"channel_mult must be a non-empty sequence of positive integers; "
                             f"got {channel_mult!r}.")
        self.channel_mult = tuple(positive_int(m, "each channel_mult") for m in channel_mult)
        self.attn_resolutions = tuple(positive_int(r, "each attn_resolution")
                                      for r in attn_resolutions)
        self.dropout = fraction(dropout, "dropout")
        self.num_classes = None if num_classes is None else positive_int(num_classes, "num_classes")
        self.class_embedding_scale = positive_number(class_embedding_scale, "class_embedding_scale")
        if self.image_size % self.downsample_factor:
            raise ValueError(f"image_size={self.image_size} must be divisible by "
                             f"{self.downsample_factor} (2^(levels - 1) for channel_mult="
                             f"{self.channel_mult}).")
        widths = [self.base_channels * m for m in self.channel_mult]
        bad = [w for w in [self.base_channels] + widths if w % self.groups]
        if bad:
            raise ValueError(f"groups={self.groups} must divide every width (base_channels * "
                             f"channel_mult = {widths}); it does not divide {bad[0]}. Choose a "
                             "divisor, e.g. groups=8 for narrow networks.")
        sizes = [self.image_size // 2 ** i for i in range(len(widths))]
        unused = sorted(set(self.attn_resolutions) - set(sizes))
        if unused:
            raise ValueError(f"attn_resolutions {list(self.attn_resolutions)} includes {unused}, which "
                             f"is not a feature-map size of this network ({sizes}).")
        c, p, g, drop = self.base_channels, self.dtype_policy, self.groups, self.dropout

        def res(w, name):
            return ResBlock(w, g, drop, name=name, dtype=p)

        def attn(w, size, name):
            return AttentionBlock(w, g, name=name, dtype=p) if size in self.attn_resolutions else None

        self.time_dim = c                     # width of the sinusoidal encoding, as in Ho's code
        self.temb_dense0 = layers.Dense(4 * c, name="temb_dense0", dtype=p)
        self.temb_dense1 = layers.Dense(4 * c, name="temb_dense1", dtype=p)
        if self.num_classes is not None:      # K labels + the null class K, added to temb
            self.class_embedding = layers.Embedding(self.num_classes + 1, 4 * c,
                                                    embeddings_initializer="zeros",
                                                    name="class_embedding", dtype=p)
        self.conv_in = layers.Conv2D(c, 3, padding="same", name="conv_in", dtype=p)
        # One entry per level: its residual blocks, their attention blocks (or None), resampling.
        self.down, self.up = [], []
        for i, (w, s) in enumerate(zip(widths, sizes)):
            self.down.append({
                "res": [res(w, f"down{i}_res{j}") for j in range(self.num_res_blocks)],
                "attn": [attn(w, s, f"down{i}_attn{j}") for j in range(self.num_res_blocks)],
                "downsample": Downsample(w, name=f"down{i}_downsample", dtype=p)
                if i < len(widths) - 1 else None})
        self.mid_res0 = res(widths[-1], "mid_res0")
        self.mid_attn = AttentionBlock(widths[-1], g, name="mid_attn", dtype=p)
        self.mid_res1 = res(widths[-1], "mid_res1")
        for i in reversed(range(len(widths))):
            w, s = widths[i], sizes[i]
            self.up.append({
                "res": [res(w, f"up{i}_res{j}") for j in range(self.num_res_blocks + 1)],
                "attn": [attn(w, s, f"up{i}_attn{j}") for j in range(self.num_res_blocks + 1)],
                "upsample": Upsample(w, name=f"up{i}_upsample", dtype=p) if i > 0 else None})
        self.norm_out = _norm(g, "norm_out", p)
        self.conv_out = layers.Conv2D(self.image_channels, 3, padding="same",
                                      kernel_initializer="zeros", name="conv_out", dtype="float32")

    @property
    def downsample_factor(self):
        return 2 ** (len(self.channel_mult) - 1)

    def get_config(self):
        # Like UNet: the dtype policy is left out on purpose (EMA and loaded models are float32).
        # num_classes only when conditional: an unconditional config is the one of older files.
        config = {"image_channels": self.image_channels, "image_size": self.image_size,
                  "base_channels": self.base_channels, "channel_mult": list(self.channel_mult),
                  "num_res_blocks": self.num_res_blocks,
                  "attn_resolutions": list(self.attn_resolutions), "dropout": self.dropout,
                  "groups": self.groups, "name": self.name}
        if self.num_classes is not None:
            config["num_classes"] = self.num_classes
            config["class_embedding_scale"] = self.class_embedding_scale
        return config

    def __call__(self, x, t, y=None, **kwargs):
        # Check here, before Keras wraps any exception of call() in its own message.
        x = tf.convert_to_tensor(x)
        check_unet_inputs(x, tf.convert_to_tensor(t), self.image_channels,
                          self.downsample_factor, image_size=self.image_size)
        if y is not None:
            if self.num_classes is None:
                raise ValueError("this HoUNet is unconditional (num_classes=None) and takes no "
                                 "labels y; build it with num_classes=K for class labels.")
            y = class_labels(y, self.num_classes, name="y", batch=x.shape[0], allow_null=True)
        return super().__call__(x, t, y=y, **kwargs)

    def call(self, x, t, y=None, training=None):
        x = tf.cast(tf.convert_to_tensor(x), self.compute_dtype)
        temb = tf.cast(timestep_encoding(tf.convert_to_tensor(t), self.time_dim), self.compute_dtype)
        temb = self.temb_dense1(tf.nn.silu(self.temb_dense0(temb)))
        if self.num_classes is not None:      # + the embedding of y (the null class K if None)
            if y is None:
                y = tf.fill(tf.shape(x)[:1], self.num_classes)
            temb = temb + self.class_embedding_scale * self.class_embedding(y)
        hs = [self.conv_in(x)]                                   # the skip connections
        for level in self.down:
            for res, attn in zip(level["res"], level["attn"]):
                h = res(hs[-1], temb, training=training)
                hs.append(h if attn is None else attn(h))
            if level["downsample"] is not None:
                hs.append(level["downsample"](hs[-1]))
        h = self.mid_res0(hs[-1], temb, training=training)
        h = self.mid_res1(self.mid_attn(h), temb, training=training)
        for level in self.up:
            for res, attn in zip(level["res"], level["attn"]):
                h = res(tf.concat([h, hs.pop()], axis=-1), temb, training=training)
                h = h if attn is None else attn(h)
            if level["upsample"] is not None:
                h = level["upsample"](h)
        return self.conv_out(tf.nn.silu(self.norm_out(h)))

    def build_for(self, image_size=None):
        """Create the weights by one call on zeros (of ``image_size``, default the model's)."""
        size = image_size or self.image_size
        self(tf.zeros([1, size, size, self.image_channels]), tf.zeros([1], tf.int32))
        return self


def copy_unconditional_weights(model, unconditional):
    """Start the class-conditional HoUNet ``model`` from the unconditional HoUNet ``unconditional``.

    Every weight the two share (all of the unconditional one's, matched by name) is copied and the
    class embedding is set to zero, so that ``model(x_t, t, y)`` equals ``unconditional(x_t, t)``
    for every label y, the null class included: the starting point of a classifier-free-guidance
    fine-tune (Ho & Salimans, 2022). The two must have the same architecture (config but for the
    name, ``num_classes`` and ``class_embedding_scale``). Returns ``model``.
    """
    if not isinstance(model, HoUNet) or model.num_classes is None:
        raise ValueError(f"model must be a class-conditional HoUNet (num_classes=K); got "
                         f"{type(model).__name__} with num_classes="
                         f"{getattr(model, 'num_classes', None)!r}.")
    if not isinstance(unconditional, HoUNet) or unconditional.num_classes is not None:
        raise ValueError(f"unconditional must be an unconditional HoUNet (num_classes=None); got "
                         f"{type(unconditional).__name__} with num_classes="
                         f"{getattr(unconditional, 'num_classes', None)!r}.")
    skip = ("name", "num_classes", "class_embedding_scale")
    arch = [{k: v for k, v in m.get_config().items() if k not in skip}
            for m in (model, unconditional)]
    if arch[0] != arch[1]:
        diff = sorted(k for k in arch[0] if arch[0][k] != arch[1].get(k))
        raise ValueError("model and unconditional must have the same architecture; they differ in "
                         + ", ".join(f"{k} ({arch[0][k]!r} vs {arch[1].get(k)!r})" for k in diff) + ".")
    for m in (model, unconditional):
        if not m.weights:
            m.build_for()
    source = dict(zip(variable_keys(unconditional), unconditional.weights))
    for key, v in zip(variable_keys(model), model.weights):
        v.assign(tf.zeros_like(v) if key.startswith("class_embedding/") else source.pop(key))
    return model
