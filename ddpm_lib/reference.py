"""The reference model: a UNet trained on the real Fashion-MNIST, shipped with ddpm_lib.

``load_reference()`` returns ``(model, schedule)`` ready for ``ddpm_lib.sampler.sample``:
images 32x32x1 in [-1, 1], T = 1000 linear schedule. The weights are the EMA weights, stored as
float16 and loaded as float32. How it was trained (configuration, steps, hardware, wall time,
loss curve, the command that reproduces it) is on the book's model-card page.
"""
from importlib import resources

from .checkpoint import load_weights

__all__ = ["load_reference", "REFERENCE_FILE"]

REFERENCE_FILE = "fashion_mnist_unet32.npz"


def load_reference(dtype=None):
    """Load the shipped reference model; returns ``(model, schedule)``.

    ``dtype=None`` computes in float32; ``"mixed_bfloat16"`` or ``"mixed_float16"`` keep the
    float32 weights and compute in half precision (the evaluation chapter measures the effect).
    """
    ref = resources.files("ddpm_lib") / "assets" / "reference" / REFERENCE_FILE
    with resources.as_file(ref) as path:
        if not path.exists():
            raise FileNotFoundError(
                f"the reference weights {REFERENCE_FILE} are missing from this installation of "
                "ddpm_lib (assets/reference/); reinstall the package.")
        return load_weights(path, image_size=32, dtype=dtype)
