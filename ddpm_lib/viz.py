"""Pictures: sample grids, the forward-noising strip, the reverse-process GIF, schedule plots.

Every function takes images in [-1, 1] (the model's range), NHWC, as numpy arrays or tensors.
"""
from __future__ import annotations

import os

import numpy as np

from .data import to_uint8

__all__ = ["image_grid", "show_images", "save_grid", "noising_strip", "plot_noising_strip",
           "save_gif", "plot_schedules", "unet_blocks", "draw_unet", "draw_chains"]


def _np(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def image_grid(images, ncols=8, pad=2, pad_value=255):
    """Tile (N, H, W, C) images in [-1, 1] into one uint8 array (rows*H, cols*W, C)."""
    x = _np(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C) or (N, H, W); got shape {x.shape}.")
    x = to_uint8(x)
    n, h, w, c = x.shape
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = x[i]
    return grid


def show_images(images, ncols=8, title=None, ax=None, figsize=None):
    """Show a grid of images with matplotlib; returns the Axes."""
    import matplotlib.pyplot as plt
    grid = image_grid(images, ncols)
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (ncols, max(1, grid.shape[0] / grid.shape[1] * ncols)))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def save_grid(images, path, ncols=8):
    """Write a grid of images in [-1, 1] to a PNG file."""
    from PIL import Image
    grid = image_grid(images, ncols)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


def noising_strip(schedule, x0, ts, seed=0):
    """x_t of one image at each code time in ``ts`` (same eps for all), via ``schedule.q_sample``.

    Returns an array (len(ts), H, W, C); x0 is (H, W, C) or (1, H, W, C) in [-1, 1].
    """
    import tensorflow as tf
    x0 = _np(x0).astype(np.float32)
    if x0.ndim == 3:
        x0 = x0[None]
    ts = np.asarray(ts, np.int32)
    eps = tf.random.stateless_normal(x0.shape, seed=[seed, 0], alg="philox")
    batch = np.repeat(x0, len(ts), axis=0)
    return _np(schedule.q_sample(batch, ts, np.repeat(_np(eps), len(ts), axis=0)))


def plot_noising_strip(schedule, x0, ts, seed=0, figsize=None):
    """Plot ``noising_strip`` with each panel titled by the paper's t (= code t + 1)."""
    import matplotlib.pyplot as plt
    xs = to_uint8(noising_strip(schedule, x0, ts, seed))
    fig, axes = plt.subplots(1, len(ts), figsize=figsize or (1.3 * len(ts), 1.6))
    for ax, img, t in zip(np.atleast_1d(axes), xs, ts):
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"t={int(t) + 1}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def save_gif(trajectory, path, ncols=4, frames=60, hold=20, duration_ms=60):
    """Write the reverse process as an animated GIF.

    ``trajectory``: (steps + 1, N, H, W, C) from ``sample(..., return_trajectory=True)``, x_T first.
    ``frames`` evenly spaced frames are kept (the last always), and the final image is held for
    ``hold`` extra frames. Frames are uint8 (the seed wrote int32, which GIF cannot hold).
    """
    from PIL import Image
    traj = _np(trajectory)
    if traj.ndim != 5:
        raise ValueError(f"trajectory must be (steps+1, N, H, W, C); got shape {traj.shape}.")
    idx = np.unique(np.round(np.linspace(0, len(traj) - 1, min(frames, len(traj)))).astype(int))
    imgs = []
    for i in idx:
        g = image_grid(traj[i], ncols)
        imgs.append(Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g))
    imgs += [imgs[-1]] * hold
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    imgs[0].save(path, format="GIF", save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0)
    return path


def plot_schedules(schedules, quantities=("alpha_bars", "sqrt_alpha_bars", "sqrt_one_minus_alpha_bars"),
                   figsize=None):
    """Plot schedule arrays against the paper's t for several schedules, one panel per quantity.

    ``schedules``: dict label -> Schedule.
    """
    import matplotlib.pyplot as plt
    labels = {"alpha_bars": r"$\bar\alpha_t$", "sqrt_alpha_bars": r"$\sqrt{\bar\alpha_t}$",
              "sqrt_one_minus_alpha_bars": r"$\sqrt{1-\bar\alpha_t}$", "betas": r"$\beta_t$",
              "posterior_variance": r"$\tilde\beta_t$"}
    fig, axes = plt.subplots(1, len(quantities), figsize=figsize or (4 * len(quantities), 3))
    for ax, q in zip(np.atleast_1d(axes), quantities):
        for name, s in schedules.items():
            ax.plot(np.arange(1, s.timesteps + 1), getattr(s, q), label=name)
        ax.set_xlabel("t (paper)")
        ax.set_title(labels.get(q, q))
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    return fig


def unet_blocks(model):
    """The blocks of a ``UNet`` or ``HoUNet`` in call order, as dicts with ``name``, ``kind``,
    ``part`` ("in", "down", "mid", "up", "out"), ``size`` (H of the output) and ``channels``.

    Read from the model's own layers and config, so the diagram of :func:`draw_unet` is the network.
    """
    from .ho_unet import HoUNet, ResBlock
    from .unet import UNet
    if isinstance(model, HoUNet):
        s, c, blocks = model.image_size, model.base_channels, []
        blocks.append(dict(name="conv_in", kind="Conv3x3", part="in", size=s, channels=c))
        def level_blocks(level, size, part, resample, new_size):
            # a level's residual blocks (with attention where it has one), then its resampling
            for res, attn in zip(level["res"], level["attn"]):
                kind = "ResBlock" + (" + Attn" if attn is not None else "")
                blocks.append(dict(name=res.name, kind=kind, part=part, size=size,
                                   channels=res.out_channels))
            if level[resample] is not None:
                blocks.append(dict(name=level[resample].name, kind=resample.capitalize(), part=part,
                                   size=new_size, channels=level["res"][-1].out_channels))

        for i, level in enumerate(model.down):
            size = s // 2 ** i
            level_blocks(level, size, "down", "downsample", size // 2)
        mid = model.mid_res0.out_channels
        blocks.append(dict(name="mid", kind="Res, Attn, Res", part="mid",
                           size=s // model.downsample_factor, channels=mid))
        for k, level in enumerate(model.up):
            i = len(model.up) - 1 - k
            size = s // 2 ** i
            level_blocks(level, size, "up", "upsample", size * 2)
        blocks.append(dict(name="out", kind="GN, SiLU, Conv", part="out", size=s,
                           channels=model.image_channels))
        return blocks
    if isinstance(model, UNet):
        c = model.base_channels
        spec = [("inc", "DoubleConv", "in", 32, c), ("down1", "Down + SelfAttn", "down", 16, 2 * c),
                ("down2", "Down + SelfAttn", "down", 8, 4 * c), ("down3", "Down", "down", 4, 4 * c),
                ("bot1-3", "DConv, MHA, DConv", "mid", 4, 4 * c),
                ("up1", "Up + SelfAttn", "up", 8, 2 * c), ("up2", "Up + SelfAttn", "up", 16, c),
                ("up3", "Up", "up", 32, c), ("outc", "Conv1x1", "out", 32, model.image_channels)]
        return [dict(name=n, kind=k, part=p, size=s, channels=ch) for n, k, p, s, ch in spec]
    raise ValueError(f"draw a UNet or a HoUNet; got {type(model).__name__}.")


def draw_unet(model, ax=None, title=None):
    """Draw the block diagram of a ``UNet`` or ``HoUNet``: one box per block, at the height of its
    resolution, arrows in call order and dashed skip connections; returns the Axes.

    The seed's UNet draws at 32x32 (its blocks do not depend on the image size)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch
    blocks = unet_blocks(model)
    sizes = sorted({b["size"] for b in blocks}, reverse=True)
    level = {s: i for i, s in enumerate(sizes)}
    n, dx, w = len(blocks), 1.3, 1.2
    if ax is None:
        _, ax = plt.subplots(figsize=(max(8, 1.3 * n), 1.4 + 1.3 * len(sizes)))
    colors = {"in": "#d9d9d9", "down": "#9ecae1", "mid": "#fdd0a2", "up": "#a1d99b", "out": "#d9d9d9"}
    xy = []
    for i, b in enumerate(blocks):
        x, y = i * dx, -1.3 * level[b["size"]]
        xy.append((x, y))
        ax.add_patch(FancyBboxPatch((x - w / 2, y - 0.42), w, 0.84, boxstyle="round,pad=0.02",
                                    fc=colors[b["part"]], ec="black", lw=0.8))
        name = b["name"].replace("_downsample", "_down").replace("_upsample", "_up")
        ax.text(x, y + 0.2, name, ha="center", va="center", fontsize=6.5, weight="bold")
        ax.text(x, y - 0.03, b["kind"], ha="center", va="center", fontsize=6)
        ax.text(x, y - 0.25, f"{b['size']}x{b['size']}x{b['channels']}", ha="center",
                va="center", fontsize=6)
    for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
        ax.annotate("", xy=(x1 - w / 2, y1), xytext=(x0 + w / 2, y0),
                    arrowprops=dict(arrowstyle="->", lw=0.8))
    # skip connections: from the encoder at each size to the first decoder block that reads them
    for s in sizes:
        enc = [i for i, b in enumerate(blocks) if b["size"] == s and b["part"] in ("in", "down")]
        dec = [i for i, b in enumerate(blocks) if b["size"] == s and b["part"] == "up"
               and not b["kind"].startswith("Upsample")]
        if enc and dec:
            (x0, y0), (x1, y1) = xy[enc[-1]], xy[dec[0]]
            top = y0 + 0.64
            ax.plot([x0, x0, x1], [y0 + 0.44, top, top], color="gray", ls="--", lw=0.8)
            ax.annotate("", xy=(x1, y1 + 0.44), xytext=(x1, top),
                        arrowprops=dict(arrowstyle="->", ls="--", lw=0.8, color="gray"))
            label = "skip" if len(enc) == 1 else f"{len(enc)} skips, one to each ResBlock"
            ax.text((x0 + x1) / 2, top + 0.05, label, ha="center", va="bottom", fontsize=6,
                    color="gray")
    ax.set_xlim(-0.8, (n - 1) * dx + 0.8)
    ax.set_ylim(-1.3 * (len(sizes) - 1) - 0.7, 1.0)
    ax.axis("off")
    ax.set_title(title or f"{type(model).__name__}: {model.count_params():,} parameters", fontsize=10)
    return ax


def draw_chains(schedule=None, x0=None, t=499, seed=0, ax=None):
    """Draw the graphical model of diffusion (Ho et al. 2020, Fig. 2), with the posterior added.

    Nodes x_T, ..., x_t, x_{t-1}, ..., x_0 from left to right. Black arrows, right to left: the
    forward process q(x_t | x_{t-1}) (chapter 1). Blue arrows, left to right: the learned reverse
    process p_theta(x_{t-1} | x_t) (chapter 3). Pink: the posterior q(x_{t-1} | x_t, x_0), the
    reverse step when x_0 is known (chapter 2), which p_theta is trained to match (chapter 4).
    Given a ``schedule`` and one image ``x0`` (H, W, C) in [-1, 1], each named node shows that
    image noised to its time (``noising_strip``, one eps), labelled with the paper's times; ``t``
    is the code time of x_t (x_{t-1} is code t - 1, x_T code T - 1). Returns the Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.2 if x0 is not None else 2.8))
    xs = {"T": 0.0, "dots1": 1.5, "t": 3.0, "t-1": 5.0, "dots0": 6.5, "0": 8.0}
    names = {"T": "$x_T$", "t": "$x_t$", "t-1": "$x_{t-1}$", "0": "$x_0$"}
    r = 0.42
    for key, x in xs.items():
        if key.startswith("dots"):
            ax.text(x, 0, r"$\cdots$", ha="center", va="center", fontsize=16)
        else:
            ax.add_patch(Circle((x, 0), r, fc="white", ec="black", lw=1.2))
            ax.text(x, 0, names[key], ha="center", va="center", fontsize=13)
    black, blue, pink = "black", "#2171b5", "#e7298a"
    for a, b in [("T", "dots1"), ("dots1", "t"), ("t", "t-1"), ("t-1", "dots0"), ("dots0", "0")]:
        x_a, x_b = xs[a] + (0.0 if a.startswith("dots") else r), xs[b] - (0.3 if b.startswith("dots") else r)
        ax.annotate("", xy=(x_b, 0.12), xytext=(x_a + 0.05, 0.12), arrowprops=dict(
            arrowstyle="-|>", color=blue, lw=1.6))                             # p_theta, to the right
        ax.annotate("", xy=(x_a + 0.05, -0.12), xytext=(x_b, -0.12), arrowprops=dict(
            arrowstyle="-|>", color=black, lw=1.2, ls="--"))                   # q, to the left
    ax.text(4.0, 0.55, r"$p_\theta(x_{t-1} \mid x_t)$", color=blue, ha="center", fontsize=12)
    ax.text(1.5, -0.62, r"$q(x_t \mid x_{t-1})$", color=black, ha="center", fontsize=12)
    # the posterior: from x_t to x_{t-1}, conditioned on x_0 (an arc below, fed by x_0)
    ax.annotate("", xy=(xs["t-1"] - 0.15, -r), xytext=(xs["t"] + 0.15, -r), arrowprops=dict(
        arrowstyle="-|>", color=pink, lw=1.6, connectionstyle="arc3,rad=0.55"))
    ax.annotate("", xy=(4.0, -0.95), xytext=(xs["0"] - 0.1, -r), arrowprops=dict(
        arrowstyle="-", color=pink, lw=1.0, ls=":", connectionstyle="arc3,rad=-0.25"))
    ax.text(4.0, -1.45, r"$q(x_{t-1} \mid x_t, x_0)$: $p_\theta$ is trained to match it",
            color=pink, ha="center", fontsize=11)
    top = 0.9
    if x0 is not None:
        if schedule is None:
            raise ValueError("draw_chains needs the schedule to noise x0; got schedule=None.")
        T = schedule.timesteps
        if not 1 <= int(t) < T:
            raise ValueError(f"t must be a code time in [1, {T}) (x_t and x_{{t-1}} both in the chain); got {t}.")
        img = _np(x0)
        img = img[0] if img.ndim == 4 else img
        strip = to_uint8(noising_strip(schedule, img, [T - 1, int(t), int(t) - 1], seed))
        pics = {"T": strip[0], "t": strip[1], "t-1": strip[2], "0": to_uint8(img[None])[0]}
        for key, pic in pics.items():
            x = xs[key]
            ax.imshow(pic[..., 0] if pic.shape[-1] == 1 else pic, cmap="gray", vmin=0, vmax=255,
                      extent=(x - 0.55, x + 0.55, 0.95, 2.05), zorder=2)
        for key, label in [("T", f"T = {T}"), ("t", f"t = {int(t) + 1}"), ("t-1", f"t - 1 = {int(t)}"),
                           ("0", "the data")]:
            ax.text(xs[key], 2.15, label + ("" if key == "0" else " (paper)"), ha="center", fontsize=8)
        top = 2.4
    ax.set_xlim(-0.7, 8.7)
    ax.set_ylim(-1.8, top)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
