"""ddpm_lib.losses: KL divergences, lambda_t (eq. 12), L_{t-1}, L_T and L_simple.

References are float64 numpy written here. Tolerances are stated per test; the float32 ones follow
from the cancellation in 0.5 * ((v1 + d^2) / v2 - 1 + log(v2 / v1)): a few units of 2**-24 of the
O(1) terms per element.
"""
import numpy as np
import pytest
import tensorflow as tf

from ddpm_lib.losses import loss_weights, normal_kl, prior_kl, simple_loss, vlb_term
from ddpm_lib.schedule import cosine_schedule, linear_schedule


from reference_formulas import ref_alpha_bars  # noqa: E402


def ref_kl(m1, v1, m2, v2):
    m1, v1, m2, v2 = (np.asarray(a, np.float64) for a in (m1, v1, m2, v2))
    return 0.5 * np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5


@pytest.fixture(scope="module", params=["linear", "cosine"])
def sched(request):
    return linear_schedule(1000) if request.param == "linear" else cosine_schedule(1000)


# ---------------------------------------------------------------------- normal_kl
def test_normal_kl_known_values():
    assert normal_kl(0.0, 1.0, 0.0, 1.0) == 0.0
    assert normal_kl(1.0, 1.0, 0.0, 1.0) == pytest.approx(0.5, rel=1e-15)
    assert normal_kl(0.0, 2.0, 0.0, 1.0) == pytest.approx(0.5 * (1 - np.log(2)), rel=1e-14)
    assert normal_kl(0.0, 1.0, 0.0, 2.0) == pytest.approx(0.5 * (np.log(2) - 0.5), rel=1e-14)
    # KL(N(0, 4) || N(3, 1)) = 1/2 (log(1/4) + (4 + 9)/1 - 1)
    assert normal_kl(0.0, 4.0, 3.0, 1.0) == pytest.approx(0.5 * (np.log(0.25) + 12), rel=1e-14)
    out = normal_kl(np.zeros(3), np.ones(3), np.arange(3.0), np.full(3, 2.0))
    assert out.dtype == np.float64 and out.shape == (3,)
    np.testing.assert_allclose(out, ref_kl(0, 1, np.arange(3.0), 2.0), rtol=1e-14)


@pytest.mark.parametrize("m1, v1, m2, v2", [(0.3, 0.5, -0.2, 1.5), (1.0, 2.0, 0.0, 0.7),
                                            (-0.4, 0.01, -0.35, 0.02)])
def test_normal_kl_monte_carlo(m1, v1, m2, v2):
    """KL = E_{x~p1}[log p1(x) - log p2(x)]; N = 200,000 draws, within 5 standard errors."""
    rng = np.random.default_rng(7)
    x = m1 + np.sqrt(v1) * rng.standard_normal(200_000)
    logp1 = -0.5 * np.log(2 * np.pi * v1) - (x - m1) ** 2 / (2 * v1)
    logp2 = -0.5 * np.log(2 * np.pi * v2) - (x - m2) ** 2 / (2 * v2)
    d = logp1 - logp2
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert abs(d.mean() - normal_kl(m1, v1, m2, v2)) < 5 * se


def test_normal_kl_tensors_float32(f32):
    rng = np.random.default_rng(0)
    m1, m2 = rng.standard_normal((2, 50))
    v1, v2 = rng.uniform(0.05, 2.0, (2, 50))
    got = normal_kl(tf.constant(m1, tf.float32), v1.astype(np.float32), m2.astype(np.float32),
                    tf.constant(v2, tf.float32))
    assert isinstance(got, tf.Tensor) and got.dtype == tf.float32
    m1, m2, v1, v2 = (np.float32(a).astype(np.float64) for a in (m1, m2, v1, v2))
    scale = np.abs(np.log(v2 / v1)) + (v1 + (m1 - m2) ** 2) / v2 + 1
    f32(got.numpy(), ref_kl(m1, v1, m2, v2), scale=scale, rtol=2e-6, what="normal_kl float32")


def test_normal_kl_is_asymmetric_and_nonnegative():
    a = normal_kl(0.0, 1.0, 1.0, 3.0)
    b = normal_kl(1.0, 3.0, 0.0, 1.0)
    assert a > 0 and b > 0 and abs(a - b) > 0.1


def test_normal_kl_bad_variance():
    with pytest.raises(ValueError, match="variances must be > 0"):
        normal_kl(0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="variances must be > 0"):
        normal_kl(np.zeros(2), np.ones(2), np.zeros(2), np.array([1.0, -1.0]))


# ------------------------------------------------------------------- loss_weights
def test_loss_weights_posterior(sched):
    betas = sched.betas
    abar = ref_alpha_bars(betas)
    abar_prev = np.append(1.0, abar[:-1])
    tilde = (1 - abar_prev) / (1 - abar) * betas
    w = loss_weights(sched, "posterior")
    assert w.shape == (1000,) and np.isnan(w[0]) and np.all(np.isfinite(w[1:]))
    ref = betas[1:] ** 2 / (2 * tilde[1:] * (1 - betas[1:]) * (1 - abar[1:]))
    np.testing.assert_allclose(w[1:], ref, rtol=1e-12)
    # simplified by hand: beta_t^2 / (2 beta_tilde_t alpha_t (1 - abar_t)) = beta_t / (2 alpha_t (1 - abar_{t-1}))
    np.testing.assert_allclose(w[1:], betas[1:] / (2 * (1 - betas[1:]) * (1 - abar_prev[1:])), rtol=1e-10)
    assert np.array_equal(loss_weights(sched), w, equal_nan=True)        # default is "posterior"


def test_loss_weights_beta(sched):
    betas = sched.betas
    abar = ref_alpha_bars(betas)
    w = loss_weights(sched, "beta")
    assert np.all(np.isfinite(w))
    # sigma^2 = beta: lambda_t = beta_t / (2 alpha_t (1 - abar_t))
    np.testing.assert_allclose(w, betas / (2 * (1 - betas) * (1 - abar)), rtol=1e-12)


def test_loss_weights_downweight_small_t_is_undone_by_l_simple():
    # Sec. 3.4: relative to the bound, L_simple (weight 1) down-weights the small-t terms
    w = loss_weights(linear_schedule(1000))
    assert w[1] > 50 * w[-1]


# ------------------------------------------------------------------------- vlb_term
@pytest.fixture(scope="module")
def vlb_inputs():
    rng = np.random.default_rng(3)
    t = np.array([1, 2, 5, 50, 400, 999], np.int32)
    x0 = rng.uniform(-1, 1, (len(t), 6, 6, 1)).astype(np.float32)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    eps_pred = (eps + 0.5 * rng.standard_normal(x0.shape)).astype(np.float32)
    return x0, eps, eps_pred, t


def test_vlb_term_is_weighted_squared_error(sched, vlb_inputs):
    """Eq. (12): with sigma^2 = beta_tilde, L_{t-1} = lambda_t ||eps - eps_theta||^2 exactly.

    The library computes the KL from (x0, x_t) and (x_t, eps_pred) in float32; the mean difference
    is rounded at ~1e-7 against a difference of >= 4e-3 here, so rtol 1e-4 is generous.
    """
    x0, eps, eps_pred, t = vlb_inputs
    xt = sched.q_sample(x0, t, eps)
    got = vlb_term(sched, x0, xt, t, eps_pred, variance="posterior")
    assert got.shape == (len(t),) and got.dtype == tf.float32
    lam = loss_weights(sched, "posterior")[t]
    ref = lam * np.sum((eps.astype(np.float64) - eps_pred) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4)
    # a perfect prediction has zero KL
    zero = vlb_term(sched, x0, xt, t, eps).numpy()
    np.testing.assert_allclose(zero, 0.0, atol=1e-5 * 36)


def test_vlb_term_beta_variance(sched, vlb_inputs):
    """sigma^2 = beta: KL(N(mu_tilde, beta_tilde) || N(mu_theta, beta)) in float64 numpy."""
    x0, eps, eps_pred, t = vlb_inputs
    xt = sched.q_sample(x0, t, eps).numpy().astype(np.float64)
    b = sched.betas[t].reshape(-1, 1, 1, 1)
    abar = ref_alpha_bars(sched.betas)
    a_t, a_prev = abar[t].reshape(-1, 1, 1, 1), np.append(1.0, abar)[t].reshape(-1, 1, 1, 1)
    mu_q = (np.sqrt(a_prev) * b / (1 - a_t)) * x0 + (np.sqrt(1 - b) * (1 - a_prev) / (1 - a_t)) * xt
    var_q = (1 - a_prev) / (1 - a_t) * b
    mu_p = (xt - b / np.sqrt(1 - a_t) * eps_pred) / np.sqrt(1 - b)
    ref = ref_kl(mu_q, var_q, mu_p, b).sum(axis=(1, 2, 3))
    got = vlb_term(sched, x0, xt.astype(np.float32), t, eps_pred, variance="beta").numpy()
    # per element the float32 error is a few 1e-7 of the O(1) terms: 36 elements -> 36 * 1e-6
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=36e-6)


def test_vlb_term_bad_inputs(vlb_inputs):
    s = linear_schedule(1000)
    x0, eps, eps_pred, t = vlb_inputs
    with pytest.raises(ValueError, match="t >= 1"):
        vlb_term(s, x0, x0, np.zeros(len(t), np.int32), eps_pred)
    with pytest.raises(ValueError, match="variance must be"):
        vlb_term(s, x0, x0, t, eps_pred, variance="learned")
    with pytest.raises(ValueError, match="t must be code indices in"):
        vlb_term(s, x0, x0, t + 1, eps_pred)
    with pytest.raises(ValueError, match="integer"):
        vlb_term(s, x0, x0, t.astype(np.float32), eps_pred)


# -------------------------------------------------------------------------- prior_kl
def test_prior_kl_is_small_for_the_paper_schedule():
    s = linear_schedule(1000)
    x0 = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 1)).astype(np.float32)
    x0[0] = 1.0                                       # the worst case |x0| = 1
    got = prior_kl(s, x0).numpy()
    a = np.prod(1 - np.linspace(1e-4, 0.02, 1000))   # alpha_bar_T ~ 4.04e-5
    ref = ref_kl(np.sqrt(a) * x0.astype(np.float64), 1 - a, 0.0, 1.0).sum(axis=(1, 2, 3))
    assert got.shape == (4,)
    # float32: each pixel's KL (~2e-5) comes from cancelling O(1) terms, error <~ 3e-7 per pixel
    np.testing.assert_allclose(got, ref, atol=64 * 3e-7)
    per_dim = got / 64
    assert np.all(per_dim < 2.1e-5) and np.all(per_dim > -1e-6)


def test_prior_kl_matches_numpy_for_a_short_chain():
    s = linear_schedule(10)                            # alpha_bar_T ~ 0.9: L_T is large
    x0 = np.random.default_rng(1).uniform(-1, 1, (3, 4, 4, 2)).astype(np.float32)
    a = np.prod(1 - np.linspace(1e-4, 0.02, 10))
    ref = ref_kl(np.sqrt(a) * x0.astype(np.float64), 1 - a, 0.0, 1.0).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(prior_kl(s, x0).numpy(), ref, rtol=1e-5)
    assert np.all(ref > 1.0)
    with pytest.raises(ValueError, match="x0 must be a float tensor or array; got dtype uint8"):
        prior_kl(s, np.zeros((1, 4, 4, 1), np.uint8))


def test_normal_kl_tensors_keep_float64_and_refuse_a_zero_variance():
    m = tf.constant([0.5, -1.0], tf.float64)
    got = normal_kl(m, 0.3, 0.0, 1.0)
    assert got.dtype == tf.float64
    np.testing.assert_allclose(got.numpy(), ref_kl(np.array([0.5, -1.0]), 0.3, 0.0, 1.0), rtol=1e-14)
    with pytest.raises(ValueError, match="variances must be > 0"):
        normal_kl(tf.zeros(2), tf.constant([1.0, 0.0]), 0.0, 1.0)


# ------------------------------------------------------------------------ simple_loss
def test_simple_loss(f32):
    rng = np.random.default_rng(5)
    eps = rng.standard_normal((3, 4, 4, 1)).astype(np.float32)
    pred = rng.standard_normal((3, 4, 4, 1)).astype(np.float32)
    sq = (eps.astype(np.float64) - pred) ** 2
    np.testing.assert_allclose(simple_loss(eps, pred).numpy(), sq.mean(), rtol=1e-6)
    per = simple_loss(eps, pred, per_example=True)
    assert per.shape == (3,) and per.dtype == tf.float32
    np.testing.assert_allclose(per.numpy(), sq.mean(axis=(1, 2, 3)), rtol=1e-6)
    # a bfloat16 prediction (mixed precision) is cast to float32
    out = simple_loss(eps, tf.cast(pred, tf.bfloat16))
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), sq.mean(), rtol=2e-2)
    assert simple_loss(eps, eps).numpy() == 0.0


def test_simple_loss_shape_mismatch():
    with pytest.raises(ValueError, match="eps_pred must have the shape of eps"):
        simple_loss(np.zeros((2, 4, 4, 1), np.float32), np.zeros((2, 4, 4, 3), np.float32))
