"""ddpm_lib.schedule against independent float64 numpy computations.

Index convention: code t = 0..T-1 is the paper's t = 1..T; alpha_bars_prev[0] = alpha_bar_0 = 1.
Tolerances: float64 arrays vs numpy float64: rtol 1e-12. float32 tensor results vs a float64
reference: |err| <= 1e-6 * (sum of |terms|) + 1e-6 (see conftest.assert_f32_close).
"""
import math

import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib.schedule import Schedule, cosine_schedule, extract, linear_schedule, respace


# ----------------------------------------------------------------------------- references
def ref_linear_betas(T, start=1e-4, end=0.02):
    return start + (end - start) * np.arange(T, dtype=np.float64) / max(T - 1, 1)


def ref_cosine_betas(T, s=0.008, max_beta=0.999):
    """Nichol & Dhariwal (2021) eq. (17): alpha_bar(t) = f(t)/f(0), beta_t = 1 - a(t)/a(t-1), clipped."""
    u = np.arange(T + 1, dtype=np.float64)
    f = np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2
    abar = f / f[0]
    return np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)


from reference_formulas import ref_alpha_bars  # noqa: E402


def ref_derived(betas):
    """Every derived quantity, from betas, with explicit loops (no cumprod)."""
    betas = np.asarray(betas, np.float64)
    alphas = 1.0 - betas
    abar = ref_alpha_bars(betas)
    abar_prev = np.array([1.0] + list(abar[:-1]))
    return dict(
        alphas=alphas, alpha_bars=abar, alpha_bars_prev=abar_prev,
        posterior_variance=(1 - abar_prev) / (1 - abar) * betas,
        posterior_mean_coef1=np.sqrt(abar_prev) * betas / (1 - abar),
        posterior_mean_coef2=np.sqrt(alphas) * (1 - abar_prev) / (1 - abar),
    )


SCHEDULES = {
    "linear": lambda: linear_schedule(1000),
    "cosine": lambda: cosine_schedule(1000),
}


@pytest.fixture(scope="module", params=["linear", "cosine"])
def sched(request):
    return SCHEDULES[request.param]()


def col(v, ndim=4):
    return np.asarray(v, np.float64).reshape([-1] + [1] * (ndim - 1))


# ------------------------------------------------------------------- schedule arrays
def test_linear_betas():
    s = linear_schedule(1000)
    np.testing.assert_allclose(s.betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-12)
    np.testing.assert_allclose(s.betas, ref_linear_betas(1000), rtol=1e-12)
    assert s.betas.dtype == np.float64 and s.timesteps == 1000
    assert s.betas[0] == pytest.approx(1e-4, rel=1e-15) and s.betas[-1] == pytest.approx(0.02, rel=1e-15)


def test_linear_custom_range_and_single_step():
    s = linear_schedule(10, beta_start=0.001, beta_end=0.3)
    np.testing.assert_allclose(s.betas, ref_linear_betas(10, 0.001, 0.3), rtol=1e-12)
    one = linear_schedule(1, beta_start=0.05, beta_end=0.05)
    assert one.timesteps == 1 and one.alpha_bars_prev[0] == 1.0
    np.testing.assert_allclose(one.posterior_variance, [0.0], atol=0)


@pytest.mark.parametrize("T", [10, 100, 1000, 4000])
def test_cosine_betas(T):
    s = cosine_schedule(T)
    # math.cos vs np.cos may differ by an ulp, and 1 - f(t)/f(t-1) cancels: compare absolutely
    np.testing.assert_allclose(s.betas, ref_cosine_betas(T), rtol=1e-12, atol=1e-14)
    # f(T) = cos(pi/2)^2 ~ 0, so the last beta is clipped at max_beta
    assert s.betas[-1] == 0.999


def test_cosine_clipping_and_alpha_bar_curve():
    s = cosine_schedule(50, s=0.008, max_beta=0.3)
    ref = ref_cosine_betas(50, max_beta=0.3)
    np.testing.assert_allclose(s.betas, ref, rtol=1e-12, atol=1e-14)
    assert np.sum(s.betas == 0.3) >= 2 and s.betas.max() == 0.3
    # without clipping, alpha_bar_t = f(t)/f(0) exactly (Nichol & Dhariwal eq. 17)
    s2 = cosine_schedule(1000)
    u = np.arange(1, 1001)
    f = np.cos((u / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2 / math.cos(0.008 / 1.008 * np.pi / 2) ** 2
    unclipped = ref_cosine_betas(1000, max_beta=1.0) < 0.999
    np.testing.assert_allclose(s2.alpha_bars[unclipped], f[unclipped], rtol=1e-9)


def test_derived_arrays(sched):
    ref = ref_derived(sched.betas)
    for name, value in ref.items():
        np.testing.assert_allclose(getattr(sched, name), value, rtol=1e-12, atol=0, err_msg=name)
    abar = ref["alpha_bars"]
    np.testing.assert_allclose(sched.one_minus_alpha_bars, 1 - abar, rtol=1e-12)
    np.testing.assert_allclose(sched.sqrt_alpha_bars, np.sqrt(abar), rtol=1e-12)
    np.testing.assert_allclose(sched.sqrt_one_minus_alpha_bars, np.sqrt(1 - abar), rtol=1e-12)
    np.testing.assert_allclose(sched.sqrt_recip_alpha_bars, 1 / np.sqrt(abar), rtol=1e-12)
    np.testing.assert_allclose(sched.sqrt_recipm1_alpha_bars, np.sqrt(1 / abar - 1), rtol=1e-12)
    np.testing.assert_allclose(sched.sqrt_recip_alphas, 1 / np.sqrt(ref["alphas"]), rtol=1e-12)
    np.testing.assert_allclose(sched.eps_coef, sched.betas / np.sqrt(1 - abar), rtol=1e-12)
    for name in ref:
        assert getattr(sched, name).dtype == np.float64 and getattr(sched, name).shape == (1000,)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_lambdas(name):
    """lambda_t = log(alpha_t / sigma_t) (Lu et al. 2022) = half the log signal-to-eps ratio
    log(alpha_bar_t / (1 - alpha_bar_t)) / 2: float64, decreasing in t."""
    s = linear_schedule(1000) if name == "linear" else cosine_schedule(1000)
    abar = ref_derived(s.betas)["alpha_bars"]
    assert s.lambdas.dtype == np.float64 and s.lambdas.shape == (1000,)
    np.testing.assert_allclose(s.lambdas, 0.5 * np.log(abar / (1 - abar)), rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(s.lambdas) < 0)


def test_boundary_values(sched):
    assert sched.alpha_bars_prev[0] == 1.0          # alpha_bar_0 = 1 exactly
    assert sched.posterior_variance[0] == 0.0        # beta_tilde_1 = 0
    assert sched.posterior_mean_coef1[0] == pytest.approx(1.0, rel=1e-12)
    assert sched.posterior_mean_coef2[0] == 0.0
    assert np.all(np.diff(sched.alpha_bars) < 0) and np.all(sched.alpha_bars > 0)
    # beta_tilde_t <= beta_t (Sec. 3.2: the two extreme choices of sigma_t^2)
    assert np.all(sched.posterior_variance <= sched.betas)
    assert "T=1000" in repr(sched)


def test_linear_alpha_bar_T():
    # the paper's schedule ends with alpha_bar_T ~ 4.04e-5 (x_T is almost pure eps)
    s = linear_schedule(1000)
    assert s.alpha_bars[-1] == pytest.approx(np.prod(1 - np.linspace(1e-4, 0.02, 1000)), rel=1e-10)
    assert 4.0e-5 < s.alpha_bars[-1] < 4.1e-5


# --------------------------------------------------------------- tensor methods (float32)
def test_q_mean_variance_and_q_sample(sched, batch, f32):
    x0, eps, t = batch
    abar = ref_derived(sched.betas)["alpha_bars"][t]
    mean, var = sched.q_mean_variance(x0, t)
    f32(mean.numpy(), col(np.sqrt(abar)) * x0, what="q mean")
    f32(var.numpy(), col(1 - abar), what="q variance")
    assert var.shape == (len(t), 1, 1, 1) and mean.dtype == tf.float32
    xt = sched.q_sample(x0, t, eps)
    a, b = col(np.sqrt(abar)) * x0, col(np.sqrt(1 - abar)) * eps
    f32(xt.numpy(), a + b, scale=np.abs(a) + np.abs(b), what="q_sample")
    assert xt.dtype == tf.float32 and xt.shape == x0.shape


def test_predict_x0(sched, batch, f32):
    x0, eps, t = batch
    xt = sched.q_sample(x0, t, eps).numpy()
    abar = ref_derived(sched.betas)["alpha_bars"][t]
    a, b = col(1 / np.sqrt(abar)) * xt, col(np.sqrt(1 / abar - 1)) * eps
    pred = sched.predict_x0(xt, t, eps).numpy()
    f32(pred, a - b, scale=np.abs(a) + np.abs(b), what="predict_x0")
    # and it inverts q_sample (error amplified by 1/sqrt(alpha_bar) at large t)
    f32(pred, x0, scale=np.abs(a) + np.abs(b), rtol=4e-6, what="predict_x0(q_sample)")


def test_predict_eps(sched, batch, f32):
    x0, eps, t = batch
    xt = sched.q_sample(x0, t, eps).numpy()
    abar = ref_derived(sched.betas)["alpha_bars"][t]
    a, b = col(1 / np.sqrt(abar)) * xt, x0
    c = col(np.sqrt(1 / abar - 1))
    eps = sched.predict_eps(xt, t, x0).numpy()
    f32(eps, (a - b) / c, scale=(np.abs(a) + np.abs(b)) / c, what="predict_eps")
    # it inverts predict_x0 exactly up to rounding
    x0_back = sched.predict_x0(xt, t, eps).numpy()
    f32(x0_back, x0, scale=np.abs(a) + np.abs(b), rtol=4e-6, what="predict_x0(predict_eps)")


def test_q_posterior(sched, batch, f32):
    x0, eps, t = batch
    xt = sched.q_sample(x0, t, eps).numpy()
    ref = ref_derived(sched.betas)
    c1, c2 = ref["posterior_mean_coef1"][t], ref["posterior_mean_coef2"][t]
    mean, var = sched.q_posterior(x0, xt, t)
    a, b = col(c1) * x0, col(c2) * xt
    f32(mean.numpy(), a + b, scale=np.abs(a) + np.abs(b), what="posterior mean")
    f32(var.numpy(), col(ref["posterior_variance"][t]), what="posterior variance")
    # code t = 0: q(x_0 | x_1, x_0) is a point mass at x_0
    np.testing.assert_allclose(mean.numpy()[0], x0[0], rtol=1e-6, atol=1e-6)
    assert var.numpy()[0].item() == 0.0


def test_rank2_inputs_and_scalar_t(f32):
    s = linear_schedule(100)
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((3, 5)).astype(np.float32)
    eps = rng.standard_normal((3, 5)).astype(np.float32)
    xt = s.q_sample(x0, np.array([7, 7, 7]), eps)
    assert xt.shape == (3, 5)
    a, b = np.sqrt(s.alpha_bars[7]) * x0, np.sqrt(1 - s.alpha_bars[7]) * eps
    f32(xt.numpy(), a + b, scale=np.abs(a) + np.abs(b))
    np.testing.assert_array_equal(s.q_sample(x0, 7, eps).numpy(), xt.numpy())
    np.testing.assert_array_equal(s.q_sample(x0, np.int64(7), eps).numpy(), xt.numpy())


def test_extract_shapes_and_values():
    s = linear_schedule(10)
    g = extract(s.betas, tf.constant([0, 9]), ndim=4)
    assert g.shape == (2, 1, 1, 1) and g.dtype == tf.float32
    np.testing.assert_array_equal(g.numpy().ravel(), s.betas[[0, 9]].astype(np.float32))
    assert extract(s.betas, tf.constant(3)).shape == ()
    assert extract(s.betas, 3, dtype=tf.float64).numpy() == s.betas[3]     # float64: exact
    assert extract(s.alpha_bars, [1, 2], ndim=2).shape == (2, 1)



def test_extract_at_x0_reads_any_negative_time_as_x0():
    """at_x0: a sampler's last step goes to x_0 (code time -1, or t - k < 0 after respacing)."""
    s = linear_schedule(10)
    g = extract(s.alpha_bars, tf.constant([-20, -1, 0, 9]), dtype=tf.float64, at_x0=1.0)
    assert g.shape == (4, 1, 1, 1)
    np.testing.assert_array_equal(g.numpy().ravel(), [1.0, 1.0, s.alpha_bars[0], s.alpha_bars[9]])
    assert extract(s.lambdas, -3, dtype=tf.float64, at_x0=np.inf).numpy() == np.inf
    assert extract(s.lambdas, 4, dtype=tf.float64, at_x0=np.inf).numpy() == s.lambdas[4]

def test_methods_work_inside_tf_function(f32):
    s = linear_schedule(50)

    @tf.function
    def f(x0, t, eps):
        return s.q_sample(x0, t, eps)

    x0 = np.ones((2, 8, 8, 1), np.float32)
    eps = np.zeros_like(x0)
    out = f(x0, tf.constant([0, 49]), eps).numpy()
    f32(out[:, 0, 0, 0], np.sqrt([s.alpha_bars[0], s.alpha_bars[49]]))


# ------------------------------------------------ closed form vs. the iterated chain
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_closed_form_matches_iterated_chain_monte_carlo(name):
    """q(x_t|x_0) in closed form (eq. 4) vs. sampling q(x_s|x_{s-1}) (eq. 2) step by step.

    N = 10,000 chains per starting value; each mean is checked within 5 standard errors
    (sd/sqrt(N)) and each variance within 5 standard errors (var*sqrt(2/(N-1))). With a fixed
    seed the test is deterministic; under the null a 5-SE miss has probability ~6e-7 per check.
    """
    s = SCHEDULES[name]()
    rng = np.random.default_rng(1234)
    x0 = np.array([-1.0, -0.3, 0.5, 1.0])
    N = 10_000
    check_at = {0, 9, 99, 499, 999}
    x = np.repeat(x0[:, None], N, axis=1)
    x0_t = tf.constant(x0[:, None], tf.float32)
    for i in range(s.timesteps):
        x = np.sqrt(1 - s.betas[i]) * x + np.sqrt(s.betas[i]) * rng.standard_normal(x.shape)
        if i in check_at:
            mean, var = s.q_mean_variance(x0_t, np.full(4, i, np.int32))
            mean, var = mean.numpy()[:, 0].astype(np.float64), var.numpy()[:, 0].astype(np.float64)
            emp_mean, emp_var = x.mean(axis=1), x.var(axis=1, ddof=1)
            se_mean = np.sqrt(var / N)
            se_var = var * np.sqrt(2.0 / (N - 1))
            assert np.all(np.abs(emp_mean - mean) < 5 * se_mean + 1e-6), (i, emp_mean, mean)
            assert np.all(np.abs(emp_var - var) < 5 * se_var + 1e-6), (i, emp_var, var)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_closed_form_matches_moment_recursion(name):
    """Exact moments of the iterated chain: m_t = sqrt(alpha_t) m_{t-1}, v_t = alpha_t v_{t-1} + beta_t."""
    s = SCHEDULES[name]()
    m, v = 1.0, 0.0
    for i in range(s.timesteps):
        m = np.sqrt(1 - s.betas[i]) * m
        v = (1 - s.betas[i]) * v + s.betas[i]
        assert m == pytest.approx(s.sqrt_alpha_bars[i], rel=1e-10)
        assert v == pytest.approx(s.one_minus_alpha_bars[i], rel=1e-10, abs=1e-15)


# --------------------------------------------------------- the posterior by Bayes' rule
@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("t", [1, 2, 10, 300, 999])
def test_posterior_matches_bayes_rule_on_a_grid(name, t, f32):
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0), normalised numerically (1-D).

    The unnormalised density is evaluated on a grid of 200,001 points spanning both factors'
    centres +- 12 sd (the posterior's sd is below both); mean and variance by the trapezoid rule,
    whose error is far below float32 resolution.
    """
    s = SCHEDULES[name]()
    b = s.betas[t]
    abar_prev = np.prod(1 - s.betas[:t])          # alpha_bar_{t-1} (paper), recomputed
    abar = abar_prev * (1 - b)
    x0 = 0.6
    xt = np.sqrt(abar) * x0 + np.sqrt(1 - abar) * (-0.8)   # a plausible x_t
    # the two factors as functions of y = x_{t-1}
    c_prior, sd_prior = np.sqrt(abar_prev) * x0, np.sqrt(1 - abar_prev)
    c_lik, sd_lik = xt / np.sqrt(1 - b), np.sqrt(b / (1 - b))
    # the posterior mean lies between the two centres and its sd is below both factors' sds
    pad = 12 * min(sd_prior, sd_lik)
    lo, hi = min(c_prior, c_lik) - pad, max(c_prior, c_lik) + pad
    y = np.linspace(lo, hi, 200_001)
    logp = (-(xt - np.sqrt(1 - b) * y) ** 2 / (2 * b)
            - (y - c_prior) ** 2 / (2 * (1 - abar_prev)))
    p = np.exp(logp - logp.max())
    z = np.trapezoid(p, y)
    mean = np.trapezoid(y * p, y) / z
    var = np.trapezoid((y - mean) ** 2 * p, y) / z

    got_mean, got_var = s.q_posterior(np.array([[x0]], np.float32), np.array([[xt]], np.float32),
                                      np.array([t]))
    f32(got_mean.numpy().ravel(), [mean], scale=abs(x0) + abs(xt), what="posterior mean")
    np.testing.assert_allclose(got_var.numpy().ravel(), [var], rtol=1e-5)


# --------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("t, match", [
    (np.array([-1, 0]), r"t must be code indices in \[0, 1000\).*got \[-1\]"),
    (np.array([0, 1000]), r"t must be code indices in \[0, 1000\).*got \[1000\]"),
    (np.array([0, 1, 2]), r"t must have shape \(2,\)"),
    (np.array([[0, 1]]), "shape"),
    (np.array([0.0, 1.0]), "cast it"),
    (np.array([0.5, 1.0]), "integer"),
    (np.array(["a", "b"]), "integer"),
])
def test_bad_t(t, match):
    s = linear_schedule(1000)
    x0 = np.zeros((2, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match=match):
        s.q_sample(x0, t, x0)


def test_bad_shapes():
    s = linear_schedule(100)
    x0 = np.zeros((2, 8, 8, 1), np.float32)
    t = np.array([1, 2])
    with pytest.raises(ValueError, match="must have the shape of"):
        s.q_sample(x0, t, np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="must have the shape of"):
        s.q_posterior(x0, np.zeros((2, 4, 4, 1), np.float32), t)
    with pytest.raises(ValueError, match="must have the shape of"):
        s.predict_x0(x0, t, np.zeros((3, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="leading batch axis"):
        s.q_mean_variance(np.float32(1.0), 0)


@pytest.mark.parametrize("T", [0, -3])
def test_timesteps_below_one(T):
    with pytest.raises(ValueError, match="timesteps must be a positive integer"):
        linear_schedule(T)
    with pytest.raises(ValueError, match="timesteps must be a positive integer"):
        cosine_schedule(T)


@pytest.mark.parametrize("T", [2.5, 10.0, "10", True, np.bool_(True), None])
def test_timesteps_not_an_integer(T):
    with pytest.raises(ValueError, match="integer"):
        linear_schedule(T)
    with pytest.raises(ValueError, match="integer"):
        cosine_schedule(T)


@pytest.mark.parametrize("betas", [[0.1, 0.0], [0.1, 1.0], [0.1, -0.01], [0.2, 1.5],
                                   [0.1, np.nan], [np.inf]])
def test_betas_outside_open_unit_interval(betas):
    with pytest.raises(ValueError, match=r"open interval \(0, 1\)"):
        Schedule(betas)


@pytest.mark.parametrize("betas", [[], [[0.1, 0.2]], 0.1])
def test_betas_wrong_shape(betas):
    with pytest.raises(ValueError, match="1-D"):
        Schedule(betas)


def test_bad_linear_and_cosine_arguments():
    with pytest.raises(ValueError, match="must not exceed"):
        linear_schedule(10, beta_start=0.02, beta_end=1e-4)
    for start, end in [(0.0, 0.02), (1e-4, 1.0), (-1e-4, 0.02)]:
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            linear_schedule(10, beta_start=start, beta_end=end)
    with pytest.raises(ValueError, match="s must be"):
        cosine_schedule(10, s=-0.1)
    for mb in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="max_beta"):
            cosine_schedule(10, max_beta=mb)


def test_timesteps_accepts_numpy_integers():
    assert linear_schedule(np.int64(10)).timesteps == 10
    assert cosine_schedule(np.int32(10)).timesteps == 10


# --------------------------------------------------------------------------- respacing
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_respace_every_time_is_the_same_schedule(name):
    s = linear_schedule(50) if name == "linear" else cosine_schedule(50)
    r = respace(s, np.arange(49, -1, -1))
    np.testing.assert_array_equal(r.betas, s.betas)            # bit for bit
    np.testing.assert_array_equal(r.alpha_bars, s.alpha_bars)


@pytest.mark.parametrize("ts", [[0, 10, 25, 49], [49, 30, 1, 0], [5, 20, 49], [49], [0]])
def test_respace_alpha_bars_are_the_visited_ones(ts):
    """beta'_i = 1 - alpha_bar_{t_i} / alpha_bar_{t_{i-1}} (Nichol & Dhariwal 2021, Sec. 4), so the
    new alpha_bar'_i equals the old alpha_bar_{t_i}: float64 products, rtol 1e-12."""
    s = linear_schedule(50, beta_start=1e-3, beta_end=0.2)
    ref_abar = ref_derived(s.betas)["alpha_bars"]
    r = respace(s, np.array(ts))
    kept = np.sort(ts)
    assert r.timesteps == len(ts)
    np.testing.assert_allclose(r.alpha_bars, ref_abar[kept], rtol=1e-12)
    prev = np.append(1.0, ref_abar[kept][:-1])
    np.testing.assert_allclose(r.betas, 1 - ref_abar[kept] / prev, rtol=1e-12)


@pytest.mark.parametrize("ts", [[], [[1, 2]], [0.0, 3.0], [-1, 3], [3, 50], [3, 3, 7]])
def test_respace_bad_times(ts):
    with pytest.raises(ValueError, match="ts must be"):
        respace(linear_schedule(50), np.array(ts))


def test_extract_refuses_a_time_outside_the_schedule():
    """A concrete t outside [0, T) is one clear error (tf.gather would fail deep on CPU and read
    0 on GPU); t < 0 is allowed only with at_x0, the value at x_0."""
    s = linear_schedule(10)
    with pytest.raises(ValueError, match=r"code indices in \[0, 10\) \(code t = paper t - 1\); got \[10\]"):
        extract(s.alpha_bars, [3, 10])
    with pytest.raises(ValueError, match=r"code indices in \[0, 10\).*got \[-1\]"):
        extract(s.alpha_bars, -1)
    assert float(extract(s.alpha_bars, -1, at_x0=1.0)) == 1.0
    with pytest.raises(ValueError, match=r"code indices < 10"):
        extract(s.alpha_bars, 10, at_x0=1.0)
