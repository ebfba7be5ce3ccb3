"""Settings for the book's notebooks: quick mode and the hardware they run on.

``DDPM_QUICK=1`` (set by the test configuration) shrinks training and sampling so that every
chapter runs in a minute or two on a 2-core CPU. Without it a chapter does what a reader runs.
"""
import os

__all__ = ["QUICK", "quick", "has_gpu"]

QUICK = os.environ.get("DDPM_QUICK", "0") == "1"


def quick(quick_value, full_value):
    """``quick_value`` in quick mode, ``full_value`` otherwise."""
    return quick_value if QUICK else full_value


def has_gpu():
    """True when TensorFlow sees a GPU (e.g. a Colab GPU runtime)."""
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU"))
