"""ddpm_lib.sampler: single DDPM/DDIM steps by hand, the visited times, and whole sampling runs.

References are float64 numpy formulas written here (Algorithm 2 / eq. 11 of Ho et al.; eq. 12 of
Song et al.'s DDIM). Single steps use conftest.assert_f32_close (rtol 1e-6 of the sum of |terms|,
atol 1e-6); whole chains are compared with rtol = atol = 1e-4 (see the test's docstring).
"""
import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib.sampler import (Step, ddim_loop, ddim_step, ddpm_loop, ddpm_step, dpm_solver_loop,
                              dpm_solver_step, dpm_solver_timesteps, sample, sampling_timesteps)
from ddpm_lib.schedule import Schedule, linear_schedule


from reference_formulas import ref_alpha_bars as abars_of  # noqa: E402
from test_dpm_solver import ref_chain as ref_dpm_solver_chain  # noqa: E402
from test_dpm_solver import sched, xs  # noqa: E402,F401  (the shared short schedule and inputs)


def tilde_of(betas):
    abar = abars_of(betas)
    prev = np.append(1.0, abar[:-1])
    return (1 - prev) / (1 - abar) * betas


def ref_ddpm(betas, x, t, eps, z, variance):
    abar = abars_of(betas)
    b = betas[t]
    a = (1 / np.sqrt(1 - b)) * x
    c = (1 / np.sqrt(1 - b)) * b / np.sqrt(1 - abar[t]) * eps
    sigma2 = tilde_of(betas)[t] if variance == "posterior" else b
    noise = np.sqrt(sigma2) * z if t > 0 else 0.0 * z
    return a - c + noise, np.abs(a) + np.abs(c) + np.abs(noise)


def ref_ddpm_clipped(betas, x, t, eps, z, variance):
    """Ho et al.'s clip_denoised: x0 = clip((x - sqrt(1-abar) eps)/sqrt(abar)), then mu_tilde, eq. (7)."""
    abar = abars_of(betas)
    prev = abar[t - 1] if t > 0 else 1.0
    b = betas[t]
    x0_terms = (np.abs(x) + np.sqrt(1 - abar[t]) * np.abs(eps)) / np.sqrt(abar[t])
    x0 = np.clip((x - np.sqrt(1 - abar[t]) * eps) / np.sqrt(abar[t]), -1, 1)
    coef1 = np.sqrt(prev) * b / (1 - abar[t])
    c1 = coef1 * x0
    c2 = np.sqrt(1 - b) * (1 - prev) / (1 - abar[t]) * x
    sigma2 = tilde_of(betas)[t] if variance == "posterior" else b
    noise = np.sqrt(sigma2) * z if t > 0 else 0.0 * z
    # rounding scale: the terms of x0_pred (before clipping), the mean terms and the noise
    return c1 + c2 + noise, coef1 * x0_terms + np.abs(c2) + np.abs(noise)


def ref_ddim(betas, x, t, t_prev, eps, eta, z, clip_x0=False):
    abar = abars_of(betas)
    a_t = abar[t]
    a_prev = abar[t_prev] if t_prev >= 0 else 1.0
    sigma = eta * np.sqrt((1 - a_prev) / (1 - a_t)) * np.sqrt(1 - a_t / a_prev)
    x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    if clip_x0:
        x0 = np.clip(x0, -1, 1)
        eps = (x - np.sqrt(a_t) * x0) / np.sqrt(1 - a_t)
    c_eps = np.sqrt(max(1 - a_prev - sigma ** 2, 0.0))
    out = np.sqrt(a_prev) * x0 + c_eps * eps + sigma * z
    scale = (np.sqrt(a_prev / a_t) * (np.abs(x) + np.sqrt(1 - a_t) * np.abs(eps))
             + c_eps * np.abs(eps) + sigma * np.abs(z))
    return out, scale, sigma


class LinearEps:
    """A model with a known output: eps(x, t) = 0.3 x + 0.01 t (a plain callable, not Keras)."""

    def __call__(self, x, t, training=False):
        return 0.3 * x + 0.01 * tf.cast(t, tf.float32)[:, None, None, None]

    @staticmethod
    def np(x, t):
        return 0.3 * x + 0.01 * t


@pytest.fixture(scope="module")
def model():
    return LinearEps()


# ------------------------------------------------------------------------- ddpm_step
@pytest.mark.parametrize("variance", ["posterior", "beta"])
@pytest.mark.parametrize("t", [0, 1, 10, 19])
def test_ddpm_step_by_hand(sched, xs, t, variance, f32):
    x, eps, z = xs
    got = ddpm_step(sched, x, t, eps, z, variance=variance).x_prev
    assert got.dtype == tf.float32 and got.shape == x.shape
    ref, scale = ref_ddpm(sched.betas, x.astype(np.float64), t, eps, z, variance)
    f32(got.numpy(), ref, scale=scale, what=f"ddpm_step t={t} {variance}")


@pytest.mark.parametrize("variance", ["posterior", "beta"])
@pytest.mark.parametrize("t", [0, 1, 10, 19])
def test_ddpm_step_clip_x0_by_hand(sched, xs, t, variance, f32):
    x, eps, z = xs
    x = 3 * x                                 # so that some predicted x0 fall outside [-1, 1]
    x0 = sched.predict_x0(x, t, eps).numpy()
    assert np.any(np.abs(x0) > 1)
    got = ddpm_step(sched, x, t, eps, z, variance=variance, clip_x0=True).x_prev
    ref, scale = ref_ddpm_clipped(sched.betas, x.astype(np.float64), t, eps, z, variance)
    f32(got.numpy(), ref, scale=scale, what=f"ddpm_step clip_x0 t={t} {variance}")
    plain = ddpm_step(sched, x, t, eps, z, variance=variance).x_prev.numpy()
    assert np.max(np.abs(plain - got.numpy())) > 1e-3       # clipping changed something


def test_ddpm_step_clip_x0_in_range_is_eq11(sched, xs, f32):
    """When x0_pred already lies in [-1, 1], clipping does nothing and mu_tilde(x0_pred, x_t) is
    eq. (11): the algebra of chapter 3, checked in float32."""
    x, eps, z = xs
    t = 12
    x_small = sched.q_sample(np.tanh(x) * 0.9, t, eps).numpy()
    a = ddpm_step(sched, x_small, t, eps, z, clip_x0=True).x_prev.numpy()
    b = ddpm_step(sched, x_small, t, eps, z).x_prev.numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_ddpm_step_no_noise_at_t0(sched, xs, f32):
    x, eps, z = xs
    mean = ddpm_step(sched, x, 0, eps, None).x_prev
    np.testing.assert_array_equal(ddpm_step(sched, x, 0, eps, z).x_prev.numpy(), mean.numpy())
    np.testing.assert_array_equal(ddpm_step(sched, x, 0, eps, 100 * z, variance="beta").x_prev.numpy(),
                                  mean.numpy())
    ref, scale = ref_ddpm(sched.betas, x.astype(np.float64), 0, eps, 0 * z, "posterior")
    f32(mean.numpy(), ref, scale=scale)
    with pytest.raises(ValueError, match="z must be given"):
        ddpm_step(sched, x, 1, eps, None)


def test_ddpm_step_variance_choices(sched, xs):
    x, eps, z = xs
    t = 7
    diff = (ddpm_step(sched, x, t, eps, z, variance="beta").x_prev
            - ddpm_step(sched, x, t, eps, z, variance="posterior").x_prev).numpy()
    expected = (np.sqrt(sched.betas[t]) - np.sqrt(tilde_of(sched.betas)[t])) * z
    np.testing.assert_allclose(diff, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(expected[z != 0]) > 0)


def test_ddpm_step_bad_inputs(sched, xs):
    x, eps, z = xs
    with pytest.raises(ValueError, match="code indices"):
        ddpm_step(sched, x, 20, eps, z)
    with pytest.raises(ValueError, match="code indices"):
        ddpm_step(sched, x, -1, eps, z)
    with pytest.raises(ValueError, match="integer scalar"):
        ddpm_step(sched, x, np.array([1, 2]), eps, z)
    with pytest.raises(ValueError, match="integer scalar"):
        ddpm_step(sched, x, 1.0, eps, z)
    with pytest.raises(ValueError, match="variance must be"):
        ddpm_step(sched, x, 1, eps, z, variance="learned")
    with pytest.raises(ValueError, match="float"):
        ddpm_step(sched, np.zeros((2, 4, 4, 1), np.int32), 1, eps, z)
    with pytest.raises(ValueError, match="shape"):
        ddpm_step(sched, x, 1, eps[:1], z)
    with pytest.raises(ValueError, match="shape"):
        ddpm_step(sched, x, 1, eps, z[..., :0])


# ------------------------------------------------------------------------- ddim_step
@pytest.mark.parametrize("t, t_prev", [(19, 15), (10, 9), (5, 0), (5, -1), (0, -1)])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_by_hand(sched, xs, t, t_prev, eta, f32):
    x, eps, z = xs
    got = ddim_step(sched, x, t, t_prev, eps, eta=eta, z=z).x_prev
    ref, scale, _ = ref_ddim(sched.betas, x.astype(np.float64), t, t_prev, eps, eta, z)
    f32(got.numpy(), ref, scale=scale, what=f"ddim t={t}->{t_prev} eta={eta}")


@pytest.mark.parametrize("t, t_prev, eta", [(19, 9, 0.0), (10, 3, 1.0), (5, -1, 0.0), (1, 0, 0.5)])
def test_ddim_step_clip_x0_by_hand(sched, xs, t, t_prev, eta, f32):
    x, eps, z = xs
    x = 3 * x
    got = ddim_step(sched, x, t, t_prev, eps, eta=eta, z=z, clip_x0=True).x_prev
    ref, scale, _ = ref_ddim(sched.betas, x.astype(np.float64), t, t_prev, eps, eta, z, clip_x0=True)
    # recomputing eps from the clipped x0 divides by sqrt(1 - alpha_bar_t): widen the scale
    f32(got.numpy(), ref, scale=scale + np.abs(x) / np.sqrt(1 - abars_of(sched.betas)[t]),
        what=f"ddim_step clip_x0 t={t}")
    if t_prev < 0:                              # the last step returns the clipped x0 itself
        assert np.all(np.abs(got.numpy()) <= 1.0)


def test_ddim_to_x0_is_predict_x0(sched, xs, f32):
    """Any t_prev < 0 means alpha_bar_prev = 1: the step returns x0_pred, with no noise for any eta."""
    x, eps, z = xs
    t = 12
    a_t = abars_of(sched.betas)[t]
    x0_ref = (x.astype(np.float64) - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    scale = (np.abs(x) + np.sqrt(1 - a_t) * np.abs(eps)) / np.sqrt(a_t)
    for eta, noise, t_prev in [(0.0, None, -1), (1.0, z, -1), (0.7, 3 * z, -1), (1.0, z, -8), (0.0, None, -100)]:
        got = ddim_step(sched, x, t, t_prev, eps, eta=eta, z=noise).x_prev
        f32(got.numpy(), x0_ref, scale=scale, what=f"eta={eta}")


def test_ddim_eta0_is_deterministic(sched, xs):
    x, eps, z = xs
    a = ddim_step(sched, x, 15, 8, eps, eta=0.0).x_prev
    b = ddim_step(sched, x, 15, 8, eps, eta=0.0, z=z).x_prev
    c = ddim_step(sched, x, 15, 8, eps, eta=0.0, z=-5 * z).x_prev
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(a.numpy(), c.numpy())


@pytest.mark.parametrize("t", [1, 6, 19])
def test_ddim_eta1_has_the_posterior_variance(sched, xs, t, f32):
    """eta = 1 and t_prev = t - 1: sigma^2 = beta_tilde_t, and the step *is* DDPM's (posterior)."""
    x, eps, z = xs
    ones = np.ones_like(x)
    with_z = ddim_step(sched, x, t, t - 1, eps, eta=1.0, z=ones).x_prev
    without = ddim_step(sched, x, t, t - 1, eps, eta=1.0, z=np.zeros_like(x)).x_prev
    sigma = (with_z - without).numpy()
    np.testing.assert_allclose(sigma, np.sqrt(tilde_of(sched.betas)[t]), rtol=1e-5, atol=1e-6)
    # DDIM(eta=1, t -> t-1) == Algorithm 2 with sigma_t^2 = beta_tilde_t, same noise
    ddim = ddim_step(sched, x, t, t - 1, eps, eta=1.0, z=z).x_prev.numpy()
    ddpm = ddpm_step(sched, x, t, eps, z, variance="posterior").x_prev.numpy()
    _, scale, _ = ref_ddim(sched.betas, x.astype(np.float64), t, t - 1, eps, 1.0, z)
    f32(ddim, ddpm, scale=scale, rtol=4e-6, what="ddim(eta=1) vs ddpm")


def test_ddim_step_bad_inputs(sched, xs):
    x, eps, z = xs
    with pytest.raises(ValueError, match="must be smaller"):
        ddim_step(sched, x, 5, 5, eps)
    with pytest.raises(ValueError, match="must be smaller"):
        ddim_step(sched, x, 5, 9, eps)
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        ddim_step(sched, x, 5, 4, eps, eta=-0.1, z=z)
    for big in (1.5, tf.constant(1.5)):          # a tensor with a value is checked too
        with pytest.raises(ValueError, match=r"eta must be a finite number in \[0, 1\]; got 1.5"):
            ddim_step(sched, x, 5, 4, eps, eta=big, z=z)
    with pytest.raises(ValueError, match="z must be given"):
        ddim_step(sched, x, 5, 4, eps, eta=0.5)
    with pytest.raises(ValueError, match="code indices"):
        ddim_step(sched, x, 20, 4, eps)
    with pytest.raises(ValueError, match="integer scalar"):
        ddim_step(sched, x, 5.0, 4, eps)
    with pytest.raises(ValueError, match="float"):
        ddim_step(sched, x.astype(np.int64), 5, 4, eps)
    with pytest.raises(ValueError, match="shape"):
        ddim_step(sched, x, 5, 4, eps[:, :2])
    with pytest.raises(ValueError, match="shape"):
        ddim_step(sched, x, 5, 4, eps, eta=1.0, z=z[:1])


# ---------------------------------------------------------------- sampling_timesteps
@pytest.mark.parametrize("T", [1, 2, 10, 50, 1000])
def test_sampling_timesteps_every_count(T):
    for steps in sorted({min(k, T) for k in (1, 2, 3, T // 3 or 1, T // 2 or 1, T - 1 or 1, T)}):
        ts, prev = sampling_timesteps(T, steps)
        assert ts.dtype == np.int32 and prev.dtype == np.int32
        assert len(ts) == len(prev) == steps
        assert ts[0] == T - 1 and prev[-1] == -1
        if steps > 1:
            assert ts[-1] == 0
        assert np.all(np.diff(ts) < 0), "strictly decreasing"
        np.testing.assert_array_equal(prev[:-1], ts[1:])
        assert ts.min() >= 0 and ts.max() <= T - 1


def test_sampling_timesteps_defaults_and_spacing():
    ts, prev = sampling_timesteps(10)
    np.testing.assert_array_equal(ts, np.arange(9, -1, -1))
    np.testing.assert_array_equal(prev, np.arange(8, -2, -1))
    np.testing.assert_array_equal(sampling_timesteps(10, 10)[0], ts)
    ts, _ = sampling_timesteps(1000, 5)
    np.testing.assert_array_equal(ts, np.round(np.linspace(999, 0, 5)).astype(int))   # even spacing


@pytest.mark.parametrize("steps", [0, -1, 11, 2.0, True, "5"])
def test_sampling_timesteps_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be an integer"):
        sampling_timesteps(10, steps)


# -------------------------------------------------------------------------- sample()
def respaced_betas(betas, ts):
    """Nichol & Dhariwal (2021), Sec. 4: beta'_i = 1 - alpha_bar_{t_i} / alpha_bar_{t_{i-1}}, float64,
    for the visited times sorted increasingly (alpha_bar before the first is 1)."""
    abar = abars_of(betas)
    kept = np.sort(ts)
    if len(kept) == len(betas):
        return np.asarray(betas, np.float64)
    prev = np.append(1.0, abar[kept][:-1])
    return 1.0 - abar[kept] / prev


def ref_chain(model, betas, shape, seed, method, steps=None, eta=0.0, variance="posterior",
              clip_x0=False):
    """Algorithm 2 / DDIM in float64 numpy, fed the same stateless noise as ``sample``."""
    T = len(betas)
    ts, ts_prev = sampling_timesteps(T, steps)
    step_betas, idx = respaced_betas(betas, ts), np.arange(len(ts))[::-1]

    def normal(i):
        return tf.random.stateless_normal(shape, seed=[seed, i]).numpy().astype(np.float64)

    x = normal(0)
    traj = [x]
    for i, (t, tp) in enumerate(zip(ts, ts_prev)):
        eps = model.np(x, t)
        z = normal(i + 1)
        if method == "ddpm":
            step = ref_ddpm_clipped if clip_x0 else ref_ddpm
            x, _ = step(step_betas, x, idx[i], eps, z, variance)   # the model saw the original t
        else:
            x, _, _ = ref_ddim(betas, x, t, tp, eps, eta, z, clip_x0=clip_x0)
        traj.append(x)
    return x, np.stack(traj)


@pytest.mark.parametrize("method, steps, eta, variance", [
    ("ddpm", None, 0.0, "posterior"),
    ("ddpm", None, 0.0, "beta"),
    ("ddpm", 7, 0.0, "posterior"),
    ("ddpm", 7, 0.0, "beta"),
    ("ddpm", 2, 0.0, "posterior"),
    ("ddpm", 1, 0.0, "posterior"),
    ("ddim", None, 0.0, "posterior"),
    ("ddim", 5, 0.0, "posterior"),
    ("ddim", 5, 1.0, "posterior"),
    ("ddim", 1, 0.3, "posterior"),
])
def test_sample_matches_numpy_chain(model, sched, method, steps, eta, variance):
    """The whole compiled loop against the numpy chain. Each of the <= 20 steps rounds at ~1e-7 of
    O(1) values and the chain is a contraction here, so rtol = atol = 1e-4 leaves a wide margin."""
    shape = (3, 4, 4, 1)
    x0, traj = sample(model, sched, shape, method=method, steps=steps, eta=eta, seed=11,
                      variance=variance, return_trajectory=True)
    ref_x0, ref_traj = ref_chain(model, sched.betas, shape, 11, method, steps, eta, variance)
    n = sched.timesteps if steps is None else steps
    assert x0.shape == shape and x0.dtype == tf.float32
    assert traj.shape == (n + 1, *shape)
    np.testing.assert_allclose(x0.numpy(), ref_x0, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(traj.numpy(), ref_traj, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method, steps, eta", [("ddpm", None, 0.0), ("ddpm", 6, 0.0),
                                                ("ddim", 5, 0.0), ("ddim", 5, 1.0)])
def test_sample_clip_x0_matches_numpy_chain(model, sched, method, steps, eta):
    shape = (3, 4, 4, 1)
    x0 = sample(model, sched, shape, method=method, steps=steps, eta=eta, seed=2, clip_x0=True)
    ref_x0, _ = ref_chain(model, sched.betas, shape, 2, method, steps, eta, clip_x0=True)
    np.testing.assert_allclose(x0.numpy(), ref_x0, rtol=1e-4, atol=1e-4)
    # the last step lands on a clipped x0 (DDIM) or on mu_tilde at paper t = 1, which is x0
    assert np.all(np.abs(x0.numpy()) <= 1.0 + 1e-6)
    plain = sample(model, sched, shape, method=method, steps=steps, eta=eta, seed=2)
    assert np.max(np.abs(plain.numpy())) > 1.0           # without clipping this model overshoots


def test_sample_from_given_x_T(model, sched):
    shape = (2, 4, 4, 1)
    x_T = tf.random.stateless_normal(shape, seed=[7, 0], alg="philox")
    a = sample(model, sched, shape, method="ddim", steps=5, seed=7).numpy()
    b = sample(model, sched, None, method="ddim", steps=5, seed=7, x_T=x_T).numpy()
    np.testing.assert_array_equal(a, b)            # the seed's own x_T gives the same images
    c = sample(model, sched, shape, method="ddim", steps=5, seed=7, x_T=2 * x_T.numpy()).numpy()
    assert np.max(np.abs(a - c)) > 0.1
    x0, traj = sample(model, sched, None, method="ddim", steps=5, seed=0, x_T=x_T,
                      return_trajectory=True)
    np.testing.assert_array_equal(traj.numpy()[0], x_T.numpy())
    with pytest.raises(ValueError, match="x_T has shape"):
        sample(model, sched, (3, 4, 4, 1), method="ddim", steps=5, x_T=x_T)
    with pytest.raises(ValueError, match="x_T must be a float"):
        sample(model, sched, None, x_T=np.zeros(shape, np.int32))


def test_sample_reproducible_and_seeded(model, sched):
    shape = (2, 8, 8, 1)
    a = sample(model, sched, shape, method="ddim", steps=4, seed=3).numpy()
    b = sample(model, sched, shape, method="ddim", steps=4, seed=3).numpy()
    c = sample(model, sched, shape, method="ddim", steps=4, seed=4).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 0.1
    d = sample(model, sched, shape, seed=3).numpy()              # ddpm
    e = sample(model, sched, shape, seed=3).numpy()
    np.testing.assert_array_equal(d, e)
    # seed=None draws a fresh seed each time
    f = sample(model, sched, shape, seed=None).numpy()
    g = sample(model, sched, shape, seed=None).numpy()
    assert np.max(np.abs(f - g)) > 0.1
    # the trajectory does not change the result; it starts at x_T and ends at x_0
    x0, traj = sample(model, sched, shape, method="ddim", steps=4, seed=3, return_trajectory=True)
    np.testing.assert_array_equal(x0.numpy(), a)
    assert traj.shape == (5, *shape)
    np.testing.assert_array_equal(traj.numpy()[-1], a)
    np.testing.assert_array_equal(traj.numpy()[0], tf.random.stateless_normal(shape, seed=[3, 0]).numpy())


@pytest.fixture(scope="module")
def jit_pair(model):
    s = linear_schedule(5, beta_start=1e-3, beta_end=0.2)
    a = sample(model, s, (2, 8, 8, 1), seed=5).numpy()
    b = sample(model, s, (2, 8, 8, 1), seed=5, jit_compile=True).numpy()
    c = sample(model, s, (2, 8, 8, 1), seed=5, jit_compile=True).numpy()
    return a, b, c


def test_sample_jit_compile_is_reproducible(jit_pair):
    _, b, c = jit_pair
    assert b.shape == (2, 8, 8, 1) and np.all(np.isfinite(b))
    np.testing.assert_array_equal(b, c)


def test_sample_jit_compile_deterministic_ddim_matches(model):
    """x_T is drawn outside the compiled loop, so XLA and plain DDIM with eta = 0 (no per-step
    noise) compute the same chain; only the order of float operations may differ."""
    s = linear_schedule(5, beta_start=1e-3, beta_end=0.2)
    a = sample(model, s, (2, 8, 8, 1), method="ddim", steps=3, seed=5).numpy()
    b = sample(model, s, (2, 8, 8, 1), method="ddim", steps=3, seed=5, jit_compile=True).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_sample_with_tiny_unet_ddim(tiny_unet):
    s = linear_schedule(1000)
    x0, traj = sample(tiny_unet, s, (2, 32, 32, 1), method="ddim", steps=3, seed=0,
                      return_trajectory=True)
    assert x0.shape == (2, 32, 32, 1) and x0.dtype == tf.float32
    assert traj.shape == (4, 2, 32, 32, 1)
    assert np.all(np.isfinite(traj.numpy()))
    again = sample(tiny_unet, s, (2, 32, 32, 1), method="ddim", steps=3, seed=0)
    np.testing.assert_array_equal(again.numpy(), x0.numpy())
    with pytest.raises(ValueError, match="channels"):
        sample(tiny_unet, s, (2, 32, 32, 3), method="ddim", steps=3, seed=0)


def test_respaced_ddpm_with_every_step_is_plain_ddpm(model, sched):
    """steps = T respaces to the same betas, bit for bit: the same images as Algorithm 2."""
    shape = (2, 4, 4, 1)
    plain, traj = sample(model, sched, shape, seed=4, return_trajectory=True)
    again, traj2 = sample(model, sched, shape, steps=sched.timesteps, seed=4, return_trajectory=True)
    np.testing.assert_array_equal(plain.numpy(), again.numpy())
    np.testing.assert_array_equal(traj.numpy(), traj2.numpy())
    fewer = sample(model, sched, shape, steps=10, seed=4)
    assert np.max(np.abs(fewer.numpy() - plain.numpy())) > 1e-3


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="ddim2"), "method must be"),
    (dict(method="DDPM"), "method must be"),
    (dict(variance="learned"), "variance must be"),
    (dict(method="ddim", eta=-0.5), "eta must be"),
    (dict(method="ddim", eta=1.01), r"eta must be a finite number in \[0, 1\]; got 1.01 \(above 1"),
    (dict(method="ddim", eta="0"), "eta must be"),
    (dict(method="ddim", eta=float("nan")), "eta must be a finite number"),
    (dict(method="ddim", eta=float("inf")), "eta must be a finite number"),
    (dict(method="ddpm", eta=float("nan")), "eta must be a finite number"),
    (dict(method="ddim", eta=True), "eta must be"),
    (dict(method="ddpm", steps=0), "steps must be"),
    (dict(method="ddpm", steps=21), "steps must be"),
    (dict(method="ddim", steps=0), "steps must be"),
    (dict(method="ddim", steps=21), "steps must be"),
    (dict(method="ddim", steps=2.5), "steps must be"),
    (dict(method="dpm_solver", steps=0), "steps must be"),
    (dict(method="dpm_solver", steps=21), "steps must be"),
    (dict(method="dpm_solver", steps=2.5), "steps must be"),
    (dict(method="dpm-solver"), 'method must be "ddpm", "ddim" or "dpm_solver"'),
    (dict(seed=1.5), "seed must be"),
    (dict(seed=True), "seed must be"),
    (dict(seed="0"), "seed must be"),
    (dict(shape=(4, 4, 1)), "shape must be"),
    (dict(shape=(0, 4, 4, 1)), "shape must be"),
    (dict(shape="abc"), "shape must be"),
])
def test_sample_bad_arguments(model, sched, kwargs, match):
    kw = dict(shape=(1, 4, 4, 1))
    kw.update(kwargs)
    shape = kw.pop("shape")
    with pytest.raises(ValueError, match=match):
        sample(model, sched, shape, **kw)


# ----------------------------------------------- shared tests of the three step functions
def _ddpm(sched, x, t, eps, z, **kw):
    return ddpm_step(sched, x, t, eps, z, **kw)


def _ddim(sched, x, t, eps, z, **kw):
    return ddim_step(sched, x, t, t - 3, eps, eta=0.5, z=z, **kw)


def _dpm_solver(sched, x, t, eps, z, **kw):
    """DPM-Solver++ to t - 3 at first order: it draws no noise, so z is not used. (A second-order
    step needs an earlier call at t_last > t, which t = T - 1 does not have; test_dpm_solver.py
    tests that one.)"""
    return dpm_solver_step(sched, x, t, t - 3, eps, **kw)


_ddpm.z_name = _ddim.z_name = "z"        # the name in the error for a z of the wrong shape
_dpm_solver.z_name = None
STEPPERS = {"ddpm": _ddpm, "ddim": _ddim, "dpm_solver": _dpm_solver}


@pytest.fixture(params=sorted(STEPPERS))
def stepper(request):
    return STEPPERS[request.param]


@pytest.mark.parametrize("t", [0, 3, 19])
def test_step_returns_x_prev_and_x0_pred(stepper, sched, xs, t, f32):
    """Every step returns Step(x_prev, x0_pred); x0_pred is eq. (4) solved for x_0 (Ho's pred_xstart)."""
    x, eps, z = xs
    out = stepper(sched, x, t, eps, z)
    assert isinstance(out, Step) and out._fields == ("x_prev", "x0_pred")
    x_prev, x0_pred = out
    assert x_prev.dtype == x0_pred.dtype == tf.float32 and x_prev.shape == x0_pred.shape == x.shape
    a_t = abars_of(sched.betas)[t]
    ref = (x.astype(np.float64) - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    f32(x0_pred.numpy(), ref, scale=(np.abs(x) + np.sqrt(1 - a_t) * np.abs(eps)) / np.sqrt(a_t))
    np.testing.assert_array_equal(x0_pred.numpy(), sched.predict_x0(x, t, eps).numpy())


def test_step_clip_x0_clips_x0_pred(stepper, sched, xs):
    x, eps, z = xs
    x0_pred = stepper(sched, 3 * x, 10, eps, z, clip_x0=True).x0_pred.numpy()
    assert np.all(np.abs(x0_pred) <= 1.0) and np.any(np.abs(x0_pred) == 1.0)


def test_step_inside_tf_function_matches_eager(stepper, sched, xs):
    x, eps, z = xs
    compiled = tf.function(lambda x, t, eps, z: stepper(sched, x, t, eps, z))
    for t in (0, 7, 19):
        a = stepper(sched, x, t, eps, z)
        b = compiled(tf.constant(x), tf.constant(t), tf.constant(eps), tf.constant(z))
        np.testing.assert_array_equal(a.x_prev.numpy(), b.x_prev.numpy())
        np.testing.assert_array_equal(a.x0_pred.numpy(), b.x0_pred.numpy())


@pytest.mark.parametrize("t, match", [
    (20, r"t must be code indices in \[0, 20\)"),
    (np.int64(25), "code indices"),
    (3.0, "integer scalar"),
    (np.array([3, 4]), "integer scalar"),
    (True, "integer scalar"),
])
def test_step_rejects_bad_t(stepper, sched, xs, t, match):
    x, eps, z = xs
    with pytest.raises(ValueError, match=match):
        stepper(sched, x, t, eps, z)


def test_step_rejects_bad_tensors(stepper, sched, xs):
    x, eps, z = xs
    with pytest.raises(ValueError, match="x_t must be a float"):
        stepper(sched, x.astype(np.int32), 5, eps, z)
    with pytest.raises(ValueError, match="eps must have the shape of x_t"):
        stepper(sched, x, 5, eps[:1], z)
    if stepper.z_name is not None:
        with pytest.raises(ValueError, match=f"{stepper.z_name} must have the shape of x_t"):
            stepper(sched, x, 5, eps, z[:1])


def test_step_accepts_numpy_integer_t(stepper, sched, xs):
    x, eps, z = xs
    a = stepper(sched, x, 9, eps, z).x_prev.numpy()
    np.testing.assert_array_equal(stepper(sched, x, np.int64(9), eps, z).x_prev.numpy(), a)
    np.testing.assert_array_equal(stepper(sched, x, np.array(9, np.int32), eps, z).x_prev.numpy(), a)


@pytest.mark.parametrize("eta", [float("nan"), float("inf"), -float("inf"), np.float32("nan")])
def test_ddim_step_rejects_non_finite_eta(sched, xs, eta):
    x, eps, z = xs
    with pytest.raises(ValueError, match="eta must be a finite number"):
        ddim_step(sched, x, 5, 4, eps, eta=eta, z=z)


def test_ddim_step_python_eta_is_float64(sched, xs, f32):
    """eta = 0.3 is not a float32 number; sigma(eta) uses the float64 value (eq. 16)."""
    x, eps, z = xs
    got = ddim_step(sched, x, 10, 4, eps, eta=0.3, z=z).x_prev
    ref, scale, _ = ref_ddim(sched.betas, x.astype(np.float64), 10, 4, eps, 0.3, z)
    f32(got.numpy(), ref, scale=scale)


# --------------------------------------------------------------------- the loops
@pytest.mark.parametrize("method, kw", [("ddpm", {}), ("ddpm", dict(steps=6)),
                                        ("ddpm", dict(variance="beta", clip_x0=True)),
                                        ("ddim", dict(steps=5, eta=0.5)), ("ddim", dict(steps=20)),
                                        ("dpm_solver", dict(steps=7)),
                                        ("dpm_solver", dict(steps=20, clip_x0=True))])
def test_sample_runs_the_public_loops(model, sched, method, kw):
    """sample() is ddpm_loop / ddim_loop / dpm_solver_loop compiled: the eager Python loop gives
    the same numbers."""
    shape = (2, 4, 4, 1)
    x_T = tf.random.stateless_normal(shape, seed=[9, 0], alg="philox")
    loop = {"ddpm": ddpm_loop, "ddim": ddim_loop, "dpm_solver": dpm_solver_loop}[method]
    x0, xs_, x0s = loop(model, sched, x_T, 9, trajectory=True, **kw)
    got, traj, x0_traj = sample(model, sched, shape, method=method, seed=9, return_trajectory=True,
                                return_x0_trajectory=True, **kw)
    n = kw.get("steps", sched.timesteps)
    assert traj.shape == (n + 1, *shape) and x0_traj.shape == (n, *shape)
    np.testing.assert_allclose(got.numpy(), x0.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(traj.numpy(), xs_.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(x0_traj.numpy(), x0s.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(loop(model, sched, x_T, 9, **kw).numpy(), x0.numpy())
    only_x0 = sample(model, sched, shape, method=method, seed=9, return_x0_trajectory=True, **kw)
    assert len(only_x0) == 2
    np.testing.assert_array_equal(only_x0[1].numpy(), x0_traj.numpy())


@pytest.mark.parametrize("method", ["ddim", "dpm_solver"])
def test_x0_trajectory_is_each_steps_prediction(model, sched, method):
    """The i-th entry is x0_pred of step i: eq. (4) solved for x_0 at the x_t of that step."""
    shape = (2, 4, 4, 1)
    _, traj, x0s = sample(model, sched, shape, method=method, steps=5, seed=1, return_trajectory=True,
                          return_x0_trajectory=True)
    if method == "ddim":
        ts, _ = sampling_timesteps(sched.timesteps, 5)
    else:
        ts, _ = dpm_solver_timesteps(sched, 5)
    for i, t in enumerate(ts):
        x = traj.numpy()[i]
        eps = model(x, np.full(2, t))
        np.testing.assert_allclose(x0s.numpy()[i], sched.predict_x0(x, int(t), eps).numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_compiled_loop_is_keyed_by_what_the_method_uses(sched):
    """sample() compiles one loop per setting the method uses: eta for DDIM, the variance for
    DDPM, neither for DPM-Solver++ (which ignores both: no recompilation)."""
    from ddpm_lib import sampler
    model = LinearEps()                                     # a fresh model: an empty cache
    shape = (2, 4, 4, 1)

    def compiled(method, **kw):
        sample(model, sched, shape, method=method, steps=3, seed=0, **kw)
        return sum(k[2] == method for k in sampler._CACHE[model])
    for method in ("dpm_solver", "ddpm", "ddim"):
        assert compiled(method) == 1
    assert compiled("dpm_solver", eta=0.5) == compiled("dpm_solver", variance="beta") == 1
    assert compiled("ddpm", eta=0.5) == 1 and compiled("ddpm", variance="beta") == 2
    assert compiled("ddim", variance="beta") == 1 and compiled("ddim", eta=0.5) == 2


def test_the_package_exports_guided_eps():
    """``from ddpm_lib import guided_eps``, and the package's module list mentions guidance."""
    import ddpm_lib
    from ddpm_lib.sampler import guided_eps
    assert "guided_eps" in ddpm_lib.__all__ and ddpm_lib.guided_eps is guided_eps
    doc = " ".join(ddpm_lib.__doc__.split())
    assert "classifier-free guidance (guided_eps)" in doc and "class-conditional" in doc


def test_sampling_timesteps_formula():
    """The docstring's formula: ts[i] = round((T - 1)(S - 1 - i) / (S - 1)), halves to even."""
    for T, S in [(1000, 50), (1000, 7), (20, 20), (20, 3), (7, 2)]:
        ts, prev = sampling_timesteps(T, S)
        i = np.arange(S)
        np.testing.assert_array_equal(ts, np.round((T - 1) * (S - 1 - i) / (S - 1)))
        assert len(set(ts.tolist())) == S and ts[0] == T - 1 and ts[-1] == 0
        np.testing.assert_array_equal(prev, np.append(ts[1:], -1))


# ------------------------------------------- exact noise predictor of Gaussian data
class GaussianOracle:
    """eps_theta(x_t, t) = E[eps | x_t] for data x_0 ~ N(mu, s^2) per pixel: with a = alpha_bar_t,
    x_t = sqrt(a) x_0 + sqrt(1 - a) eps is Gaussian and E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) mu)
    / (a s^2 + 1 - a), affine in x_t."""

    def __init__(self, sched, mu, s):
        a = sched.alpha_bars
        self.k = np.sqrt(1 - a) / (a * s ** 2 + 1 - a)
        self.c = self.k * np.sqrt(a) * mu

    def __call__(self, x, t, training=False):
        k = tf.gather(tf.constant(self.k, tf.float32), t)[:, None, None, None]
        c = tf.gather(tf.constant(self.c, tf.float32), t)[:, None, None, None]
        return k * x - c

    def np(self, x, t):
        return self.k[t] * x - self.c[t]


def gaussian_chain(oracle, betas, method, steps, eta, variance):
    """Mean and variance of x_0 after the sampler's chain, in float64: each step maps x to
    A x + B + C z (z ~ N(0, 1)), so m -> A m + B and v -> A^2 v + C^2, starting from N(0, 1).
    DPM-Solver++ (deterministic, two-step) maps x_T to a x_T + b as a whole: m = b, v = a^2."""
    if method == "dpm_solver":
        ts, ts_prev = dpm_solver_timesteps(Schedule(betas), steps)
        b = ref_dpm_solver_chain(betas, oracle.np, 0.0, ts, ts_prev)[0]
        a = ref_dpm_solver_chain(betas, oracle.np, 1.0, ts, ts_prev)[0] - b
        return b, a * a
    ts, ts_prev = sampling_timesteps(len(betas), steps)
    step_betas, idx = respaced_betas(betas, ts), np.arange(len(ts))[::-1]
    m, v = 0.0, 1.0

    def f(x, z, i):
        t = ts[i]
        eps = oracle.np(np.float64(x), t)
        if method == "ddpm":
            return ref_ddpm(step_betas, np.float64(x), idx[i], eps, np.float64(z), variance)[0]
        return ref_ddim(betas, np.float64(x), t, ts_prev[i], eps, eta, np.float64(z))[0]

    for i in range(len(ts)):
        b = f(0.0, 0.0, i)
        a, c = f(1.0, 0.0, i) - b, f(0.0, 1.0, i) - b
        m, v = a * m + b, a * a * v + c * c
    return m, v


@pytest.mark.parametrize("method, steps, eta, variance", [
    ("ddpm", None, 0.0, "posterior"),
    ("ddpm", None, 0.0, "beta"),
    ("ddpm", 10, 0.0, "posterior"),
    ("ddpm", 10, 0.0, "beta"),
    ("ddim", 10, 0.0, "posterior"),
    ("ddim", 10, 0.5, "posterior"),
    ("ddim", None, 1.0, "posterior"),
    ("dpm_solver", 10, 0.0, "posterior"),
])
def test_every_sampler_with_the_exact_eps_of_gaussian_data(method, steps, eta, variance):
    """N = 40,000 pixels; the sample mean is within 5 standard errors of the float64 chain's mean
    and the sample std within 5 of its standard errors (sqrt(v / (2N)) for a Gaussian)."""
    sched = linear_schedule(100, beta_start=1e-3, beta_end=0.1)
    mu, s = 0.3, 0.5
    oracle = GaussianOracle(sched, mu, s)
    x = sample(oracle, sched, (2500, 4, 4, 1), method=method, steps=steps, eta=eta,
               variance=variance, seed=0).numpy().ravel().astype(np.float64)
    m, v = gaussian_chain(oracle, sched.betas, method, steps, eta, variance)
    n = x.size
    assert abs(x.mean() - m) < 5 * np.sqrt(v / n), (x.mean(), m)
    assert abs(x.std() - np.sqrt(v)) < 5 * np.sqrt(v / (2 * n)), (x.std(), np.sqrt(v))
    if (method == "ddpm" and steps is None and variance == "posterior") or method == "dpm_solver":
        assert abs(np.sqrt(v) - s) < 0.05 and abs(m - mu) < 0.05      # both find the data


# ----------------------------------------------------------------- no global state
def test_importing_ddpm_lib_changes_no_global_state():
    import subprocess
    import sys
    code = (
        "import os, sys, logging\n"
        "import tensorflow as tf\n"
        "env = dict(os.environ); filters = list(tf.get_logger().filters)\n"
        "import ddpm_lib, ddpm_lib.sampler, ddpm_lib.trainer, ddpm_lib.cli, ddpm_lib.viz\n"
        "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())\n"
        "assert list(tf.get_logger().filters) == filters, tf.get_logger().filters\n"
        "print('ok')\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
