"""Analytic FLOP counts of ddpm_lib's two networks (one forward pass, one image).

``unet_flops`` counts the seed's ``UNet``, ``ho_unet_flops`` Ho et al.'s ``HoUNet`` (the book's
reference model).

A multiply-add counts as 2 FLOPs. Counted: every convolution (3x3, strided, and the 1x1 shortcuts
and output convolutions), every dense layer (the time-embedding MLP and the per-block time
projections included), the attention projections and the two attention matrix products (Q K^T
and A V). Not counted: normalizations, activations, softmax, pooling, upsampling, bias and
residual additions and the sinusoidal time encoding: 0.4-1.3% more FLOPs for the benchmarked
networks, more for very narrow ones (tests/test_bench_flops.py checks both counts against
TensorFlow's profiler).
A training step costs about 3x a forward pass (forward + two backward products).
"""


def conv(h, w, cin, cout, k=3):
    return 2 * h * w * k * k * cin * cout


def double_conv(h, w, cin, cout, mid=None):
    mid = mid or cout
    return conv(h, w, cin, mid) + conv(h, w, mid, cout)


def attention(n_tokens, channels, heads, key_dim, feed_forward=True):
    proj = 3 * 2 * n_tokens * channels * heads * key_dim          # Q, K, V
    scores = 2 * 2 * heads * n_tokens * n_tokens * key_dim        # Q K^T and A V
    out = 2 * n_tokens * heads * key_dim * channels
    ff = 2 * 2 * n_tokens * channels * channels if feed_forward else 0
    return proj + scores + out + ff


def unet_flops(model, image_size=32):
    """FLOPs of one forward pass of ``model`` (a ddpm_lib UNet) on one image."""
    c, d, hds, s = model.base_channels, model.time_dim, model.heads, image_size
    kd = model._key_dim
    total = double_conv(s, s, model.image_channels, c)                       # inc
    for size, cin, cout in ((s // 2, c, 2 * c), (s // 4, 2 * c, 4 * c), (s // 8, 4 * c, 4 * c)):
        total += double_conv(size, size, cin, cin) + double_conv(size, size, cin, cout) + 2 * d * cout
    total += attention((s // 2) ** 2, 2 * c, hds, kd(2 * c))                  # sa1
    total += attention((s // 4) ** 2, 4 * c, hds, kd(4 * c))                  # sa2
    b = s // 8
    total += double_conv(b, b, 4 * c, 8 * c)                                  # bot1
    total += attention(b * b, 8 * c, hds, kd(8 * c), feed_forward=False)      # bot2
    total += double_conv(b, b, 8 * c, 4 * c)                                  # bot3
    for size, cin, cout in ((s // 4, 8 * c, 2 * c), (s // 2, 4 * c, c), (s, 2 * c, c)):
        total += double_conv(size, size, cin, cin) + double_conv(size, size, cin, cout, cin // 2) + 2 * d * cout
    total += attention((s // 4) ** 2, 2 * c, hds, kd(2 * c))                  # sa3
    total += attention((s // 2) ** 2, c, hds, kd(c))                          # sa4
    total += 2 * s * s * c * model.image_channels                             # outc
    return total


def ho_unet_flops(model, image_size=None):
    """FLOPs of one forward pass of ``model`` (a ddpm_lib HoUNet) on one image.

    ``image_size`` defaults to the model's own (a HoUNet only accepts that size).
    """
    s = image_size or model.image_size
    c, ic, nrb = model.base_channels, model.image_channels, model.num_res_blocks
    widths = [c * m for m in model.channel_mult]
    sizes = [s // 2 ** i for i in range(len(widths))]
    temb = 4 * c

    def res_block(size, cin, cout):        # conv1 + time projection + conv2 (+ 1x1 nin shortcut)
        short = conv(size, size, cin, cout, k=1) if cin != cout else 0
        return conv(size, size, cin, cout) + 2 * temb * cout + conv(size, size, cout, cout) + short

    def attn(size, ch):                    # q, k, v, proj_out (1x1) + one head of width ch
        return attention(size * size, ch, 1, ch, feed_forward=False) if size in model.attn_resolutions else 0

    total = 2 * c * temb + 2 * temb * temb                                    # temb MLP
    total += conv(s, s, ic, c)                                                # conv_in
    skips, ch = [c], c                                                        # widths of hs
    for i, (w, size) in enumerate(zip(widths, sizes)):
        for _ in range(nrb):
            total += res_block(size, ch, w) + attn(size, w)
            ch = w
            skips.append(ch)
        if i < len(widths) - 1:                                               # stride-2 conv
            total += conv(size // 2, size // 2, ch, ch)
            skips.append(ch)
    b = sizes[-1]
    total += 2 * res_block(b, ch, ch) + attention(b * b, ch, 1, ch, feed_forward=False)   # mid
    for i in reversed(range(len(widths))):
        w, size = widths[i], sizes[i]
        for _ in range(nrb + 1):
            total += res_block(size, ch + skips.pop(), w) + attn(size, w)     # on concat(h, skip)
            ch = w
        if i > 0:                                                             # nearest x2, conv
            total += conv(2 * size, 2 * size, ch, ch)
    total += conv(s, s, ch, ic)                                               # conv_out
    return total


if __name__ == "__main__":
    from ddpm_lib import HoUNet, UNet
    for kw in ({}, {"base_channels": 32, "attention": "origin"}):
        m = UNet(**kw)
        print(kw or "seed", f"{unet_flops(m) / 1e9:.3f} GFLOP / forward at 32x32x1")
    m = HoUNet(image_channels=1, image_size=32, base_channels=32, channel_mult=(1, 2, 2),
               num_res_blocks=2, attn_resolutions=(16,), dropout=0.0, groups=8)
    print("reference HoUNet", f"{ho_unet_flops(m) / 1e9:.3f} GFLOP / forward at 32x32x1")
