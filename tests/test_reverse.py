"""ddpm_lib.reverse: mu_theta (eq. 11), the variance choices (Sec. 3.2) and DDIM's sigma(eta).

References are float64 numpy written here; float32 results use conftest.assert_f32_close.
"""
import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib.losses import loss_weights
from ddpm_lib.reverse import ddim_sigma, p_mean, p_variance
from ddpm_lib.schedule import cosine_schedule, linear_schedule

from test_schedule import col, ref_derived


@pytest.fixture(scope="module", params=["linear", "cosine"])
def sched(request):
    return linear_schedule(1000) if request.param == "linear" else cosine_schedule(1000)


def test_p_mean_eq11(sched, batch, f32):
    x0, noise, t = batch
    rng = np.random.default_rng(1)
    xt = rng.standard_normal(x0.shape).astype(np.float32)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    betas = sched.betas[t]
    abar = ref_derived(sched.betas)["alpha_bars"][t]
    a = col(1 / np.sqrt(1 - betas)) * xt
    b = col(1 / np.sqrt(1 - betas) * betas / np.sqrt(1 - abar)) * eps
    f32(p_mean(sched, xt, t, eps).numpy(), a - b, scale=np.abs(a) + np.abs(b), what="p_mean")


def test_p_mean_is_posterior_mean_at_predicted_x0(sched, batch, f32):
    # eq. (10) -> (11): mu_tilde(x_t, x0_pred(x_t, eps)) == mu_theta(x_t, eps), in float64 numpy
    x0, noise, t = batch
    ref = ref_derived(sched.betas)
    abar, c1, c2 = ref["alpha_bars"][t], ref["posterior_mean_coef1"][t], ref["posterior_mean_coef2"][t]
    xt = (np.sqrt(col(abar)) * x0 + np.sqrt(1 - col(abar)) * noise).astype(np.float32)
    x0_pred = (xt - np.sqrt(1 - col(abar)) * noise) / np.sqrt(col(abar))   # float64
    mu_tilde = col(c1) * x0_pred + col(c2) * xt
    got = p_mean(sched, xt, t, noise).numpy()
    scale = col(1 / np.sqrt(1 - sched.betas[t])) * (np.abs(xt) + col(sched.eps_coef[t]) * np.abs(noise))
    f32(got, mu_tilde, scale=scale, what="p_mean vs mu_tilde(x0_pred)")


def test_p_mean_bad_inputs():
    s = linear_schedule(100)
    x0 = np.zeros((2, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="eps must have the shape of x_t"):
        p_mean(s, x0, np.array([1, 2]), np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="t must be code indices"):
        p_mean(s, x0, np.array([1, 100]), x0)


def test_p_variance_choices():
    s = linear_schedule(20)
    assert p_variance(s, "beta") is s.betas
    assert p_variance(s, "posterior") is s.posterior_variance
    for bad in ("Beta", "fixed", None):
        with pytest.raises(ValueError, match="variance must be"):
            p_variance(s, bad)
        with pytest.raises(ValueError, match="variance must be"):
            loss_weights(s, bad)


def test_ddim_sigma_eq16():
    s = linear_schedule(1000)
    a = s.alpha_bars
    for t, t_prev, eta in [(999, 998, 1.0), (999, 500, 0.5), (20, 0, 0.3), (700, 500, 0.0)]:
        ref = eta * np.sqrt((1 - a[t_prev]) / (1 - a[t])) * np.sqrt(1 - a[t] / a[t_prev])
        got = ddim_sigma(a[t], a[t_prev], eta)
        assert got.dtype == tf.float64
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-14)
    # eta = 1 and a step t -> t - 1: sqrt(beta_tilde_t), DDPM's posterior std
    t = np.arange(1, 1000)
    np.testing.assert_allclose(ddim_sigma(a[t], a[t - 1], 1.0).numpy(),
                               np.sqrt(s.posterior_variance[t]), rtol=1e-12)
    # the last step to x_0 (alpha_bar_prev = 1) adds no noise
    assert ddim_sigma(a[5], 1.0, 1.0).numpy() == 0.0
    for bad, match in ((-0.5, "eta must be a finite number >= 0"), (1.2, r"in \[0, 1\]; got 1.2")):
        with pytest.raises(ValueError, match=match):
            ddim_sigma(a[5], a[4], bad)
