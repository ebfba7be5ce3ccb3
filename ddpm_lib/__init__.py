"""ddpm_lib: Denoising Diffusion Probabilistic Models (Ho et al., 2020) in Keras 3 / TensorFlow.

The companion library of the DDPM book. One module per concept:

    schedule    beta_t, alpha_bar_t, q(x_t | x_0), q(x_{t-1} | x_t, x_0), the eps-form mean
    losses      the variational bound's KL terms, their weights, L_simple
    unet        eps_theta(x_t, t): the seed post's UNet
    ho_unet     eps_theta(x_t, t): Ho et al.'s UNet (the reference model's network)
    trainer     Algorithm 1 with AdamW, EMA, atomic checkpoints and exact resume
    sampler     Algorithm 2 (DDPM) and DDIM, as one compiled loop
    data        Fashion-MNIST/MNIST/CIFAR-10 loaders and the tf.data pipeline
    viz         grids, the noising strip, the reverse-process GIF, schedule plots
    checkpoint  atomic .npz files, exported weights

Index convention, used everywhere: code t = 0..T-1 is the paper's t = 1..T
(details in ``ddpm_lib.schedule``).
"""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # keep TensorFlow's C++ start-up chatter quiet

from .schedule import Schedule, linear_schedule, cosine_schedule  # noqa: E402
from .unet import UNet  # noqa: E402
from .ho_unet import HoUNet  # noqa: E402
from .trainer import Trainer  # noqa: E402
from .sampler import sample, ddpm_step, ddim_step  # noqa: E402
from .checkpoint import load_weights  # noqa: E402
from .reference import load_reference  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Schedule", "linear_schedule", "cosine_schedule", "UNet", "HoUNet", "Trainer", "sample",
           "ddpm_step", "ddim_step", "load_weights",
           "load_reference"]
