"""Pictures: sample grids, the forward-noising strip, the reverse-process GIF, schedule plots.

Every function takes images in [-1, 1] (the model's range), NHWC, as numpy arrays or tensors.
"""
from __future__ import annotations

import os

import numpy as np

from .data import to_uint8

__all__ = ["image_grid", "show_images", "save_grid", "noising_strip", "plot_noising_strip",
           "save_gif", "plot_schedules"]


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
    noise = tf.random.stateless_normal(x0.shape, seed=[seed, 0], alg="philox")
    batch = np.repeat(x0, len(ts), axis=0)
    return _np(schedule.q_sample(batch, ts, np.repeat(_np(noise), len(ts), axis=0)))


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
