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
    metrics     FID and KID in the features of a Fashion-MNIST classifier (shipped)
    generate    many samples in seeded batches, with an on-disk cache
    reference   the shipped reference models, load_reference(name)
    notebook    the chapters' quick mode and hardware settings
    cli         python -m ddpm_lib train | sample | export

Index convention, used everywhere: code t = 0..T-1 is the paper's t = 1..T
(details in ``ddpm_lib.schedule``). Importing the package changes no global state (environment,
loggers) and does not import TensorFlow until a name is used: quieting TensorFlow is left to the
caller (the chapters and the command line do it visibly).
"""
import importlib

__version__ = "0.1.0"

# The public names, and the module each lives in. They are imported on first use (PEP 562), so
# that ``import ddpm_lib`` is cheap and does not import TensorFlow: ``python -m ddpm_lib`` can then
# quiet TensorFlow's start-up log lines before TensorFlow is loaded (see ``__main__``).
_PUBLIC = {"Schedule": "schedule", "linear_schedule": "schedule", "cosine_schedule": "schedule",
           "UNet": "unet", "HoUNet": "ho_unet", "Trainer": "trainer", "sample": "sampler",
           "ddpm_step": "sampler", "ddim_step": "sampler", "dpm_solver_step": "sampler",
           "guided_eps": "sampler", "load_weights": "checkpoint", "load_reference": "reference"}
_MODULES = ("schedule", "reverse", "losses", "unet", "ho_unet", "trainer", "sampler",
            "parameterization", "mixture", "sde", "mlp", "data", "viz", "checkpoint", "validate",
            "metrics", "generate", "reference", "notebook", "cli")
__all__ = list(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value            # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC) | set(_MODULES))
