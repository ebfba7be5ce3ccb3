"""Independent float64 references shared by the tests (plain loops, no ddpm_lib code)."""
import numpy as np


def ref_alpha_bars(betas):
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), with an explicit loop (no cumprod)."""
    out, prod = [], 1.0
    for b in np.asarray(betas, np.float64):
        prod *= 1.0 - b
        out.append(prod)
    return np.array(out)
