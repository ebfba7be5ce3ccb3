"""The reference models: networks trained on the real Fashion-MNIST, shipped with ddpm_lib.

``load_reference(name)`` returns ``(model, schedule)`` ready for ``ddpm_lib.sampler.sample``:
images 32x32x1 in [-1, 1], T = 1000 linear schedule. The weights are the EMA weights, stored as
float16 and loaded as float32. How each was trained (configuration, steps, hardware, wall time,
loss curve, the command that reproduces it) is on the book's model-card page.

    "ho-unet"     the default: Ho et al.'s UNet (``ddpm_lib.HoUNet``, base 32, 1.6M parameters),
                  the EMA weights of one step of its training run (which step: the model card). Every
                  sampler of the book works with it, deterministic DDIM (eta = 0) included.
    "ho-unet-step6000"
                  the same network at step 6,000 of the same run, the first Ho-UNet reference model:
                  the conditional model's starting point, and the same-budget comparison with the
                  seed UNet (chapter 9).
    "seed-unet"   the seed post's UNet (``ddpm_lib.UNet``, base 32), 7,000 steps. Its first block
                  is blind to the scale of x_t, and deterministic DDIM (eta = 0) fails with it
                  (chapter 8, errata item 19); kept for that diagnosis and for comparisons.
    "conditional" a class-conditional ``HoUNet(num_classes=10)`` for classifier-free guidance
                  (Ho & Salimans, 2022; ``sample(..., labels=y, guidance=w)``): label 10 is the
                  null class. Fine-tuned from "ho-unet-step6000" with label
                  dropout (``Trainer.fine_tune_from``); chapter 11 measures it.
"""
from importlib import resources

from .checkpoint import load_weights

__all__ = ["load_reference", "REFERENCE_MODELS", "DEFAULT_REFERENCE"]

REFERENCE_MODELS = {"seed-unet": "fashion_mnist_unet32.npz",
                    "ho-unet": "fashion_mnist_ho_unet.npz",
                    "ho-unet-step6000": "fashion_mnist_ho_unet_step6000.npz",
                    "conditional": "fashion_mnist_ho_unet_cond.npz"}
DEFAULT_REFERENCE = "ho-unet"


def load_reference(name=None, dtype=None):
    """Load a shipped reference model; returns ``(model, schedule)``.

    ``name``: one of ``REFERENCE_MODELS`` (default ``DEFAULT_REFERENCE``, the book's reference
    model). ``dtype=None`` computes in float32; ``"mixed_bfloat16"`` or ``"mixed_float16"`` keep
    the float32 weights and compute in half precision (the evaluation chapter measures the effect).
    """
    name = DEFAULT_REFERENCE if name is None else name
    if name not in REFERENCE_MODELS:
        raise ValueError(f"unknown reference model {name!r}; expected one of "
                         f"{sorted(REFERENCE_MODELS)} (or None for {DEFAULT_REFERENCE!r}).")
    filename = REFERENCE_MODELS[name]
    ref = resources.files("ddpm_lib") / "assets" / "reference" / filename
    with resources.as_file(ref) as path:
        if not path.exists():
            raise FileNotFoundError(
                f"the reference weights {filename} are missing from this installation of "
                "ddpm_lib (assets/reference/); reinstall the package.")
        return load_weights(path, image_size=32, dtype=dtype)
