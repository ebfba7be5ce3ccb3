"""Analytic FLOP count of ddpm_lib's UNet (one forward pass, one image).

A multiply-add counts as 2 FLOPs. Counted: every convolution, dense layer, attention projection
and the two attention matrix products (Q K^T and A V). Not counted: normalizations,
activations, softmax, pooling, upsampling and additions (a few percent at most).
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


if __name__ == "__main__":
    from ddpm_lib import UNet
    for kw in ({}, {"base_channels": 32, "attention": "origin"}):
        m = UNet(**kw)
        print(kw or "seed", f"{unet_flops(m) / 1e9:.3f} GFLOP / forward at 32x32x1")
