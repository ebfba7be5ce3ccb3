"""ddpm_lib: Denoising Diffusion Probabilistic Models (Ho et al., 2020) in Keras 3 / TensorFlow.

The companion library of the DDPM book. One module per concept:

    schedule    beta_t, alpha_bar_t, q(x_t | x_0), q(x_{t-1} | x_t, x_0), extract, respacing
    reverse     p_theta(x_{t-1} | x_t): the mean mu_theta, the variance sigma_t^2, DDIM's sigma(eta)
    losses      the variational bound's KL terms, their weights, L_simple
    unet        eps_theta(x_t, t): the seed post's UNet
    ho_unet     eps_theta(x_t, t): Ho et al.'s UNet (the reference model's network), optionally
                class-conditional, eps_theta(x_t, t, y)
    trainer     Algorithm 1 with AdamW, EMA, atomic checkpoints and exact resume; label dropout
                for classifier-free guidance
    sampler     Algorithm 2 (DDPM, also respaced), DDIM and DPM-Solver++(2M): single steps, loops,
                compiled sample(); classifier-free guidance (guided_eps)
    parameterization  what the network predicts: eps, x_0, v or the score, and the conversions
    mixture     a Gaussian mixture with exact noised marginals, score and eps* (2-D toy data)
    sde         the VP SDE, its reverse SDE and probability-flow ODE, integrators, Langevin dynamics
    mlp         eps_theta(x_t, t) for points: a small MLP
    data        Fashion-MNIST/MNIST/CIFAR-10 loaders and the tf.data pipeline
    viz         grids, the noising strip, the reverse-process GIF, schedule plots
    checkpoint  atomic .npz files, exported weights
    validate    the input checks every module shares, with one wording

Index convention, used everywhere: code t = 0..T-1 is the paper's t = 1..T
(details in ``ddpm_lib.schedule``). Importing the package changes no global state (environment,
loggers): quieting TensorFlow is left to the caller.
"""
from .schedule import Schedule, linear_schedule, cosine_schedule
from .unet import UNet
from .ho_unet import HoUNet
from .trainer import Trainer
from .sampler import sample, ddpm_step, ddim_step, dpm_solver_step, guided_eps
from .checkpoint import load_weights
from .reference import load_reference

__version__ = "0.1.0"
__all__ = ["Schedule", "linear_schedule", "cosine_schedule", "UNet", "HoUNet", "Trainer", "sample",
           "ddpm_step", "ddim_step", "dpm_solver_step", "guided_eps", "load_weights",
           "load_reference"]
