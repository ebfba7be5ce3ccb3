"""The Gaussian mixture of ddpm_lib.mixture: density, score, noised marginals and Tweedie's eps*."""
import numpy as np
import pytest

from ddpm_lib import linear_schedule
from ddpm_lib.mixture import GaussianMixture


@pytest.fixture(scope="module")
def mix():
    return GaussianMixture([0.5, 0.3, 0.2], [[-1.0, -0.4], [0.9, 0.5], [0.1, 1.1]],
                           [[[0.05, 0.03], [0.03, 0.04]], [[0.02, 0.0], [0.0, 0.06]], [[0.01, 0.0], [0.0, 0.01]]])


@pytest.fixture(scope="module")
def sched():
    return linear_schedule(1000)


def test_single_gaussian_log_prob():
    m = GaussianMixture([1.0], [[0.5, -1.0]], [[[2.0, 0.5], [0.5, 1.0]]])
    x = np.array([[0.0, 0.0], [1.0, -2.0]])
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    r = x - np.array([0.5, -1.0])
    ref = -0.5 * (2 * np.log(2 * np.pi) + np.log(np.linalg.det(cov))
                  + np.einsum("ni,ij,nj->n", r, np.linalg.inv(cov), r))
    np.testing.assert_allclose(m.log_prob(x), ref, rtol=1e-13)


def test_density_integrates_to_one(mix):
    g = np.linspace(-4, 4, 801)
    xx, yy = np.meshgrid(g, g)
    p = np.exp(mix.log_prob(np.stack([xx.ravel(), yy.ravel()], 1)))
    assert abs(p.sum() * (g[1] - g[0]) ** 2 - 1) < 1e-6


@pytest.mark.parametrize("alpha_bar", [1.0, 0.9, 0.3, 0.01])
def test_score_is_the_gradient_of_log_prob(mix, alpha_bar):
    q = mix.diffuse(alpha_bar)
    x = np.random.default_rng(0).normal(size=(50, 2)) * 1.5
    h = 1e-5
    fd = np.stack([(q.log_prob(x + h * e) - q.log_prob(x - h * e)) / (2 * h) for e in np.eye(2)], 1)
    np.testing.assert_allclose(q.score(x), fd, rtol=1e-6, atol=1e-6)


def test_sample_moments(mix):
    x = mix.sample(200_000, seed=1)
    se = np.sqrt(np.diag(mix.cov()) / len(x))
    assert np.all(np.abs(x.mean(0) - mix.mean()) < 5 * se)
    np.testing.assert_allclose(np.cov(x.T), mix.cov(), atol=0.01)
    np.testing.assert_allclose(mix.mean(), [-0.21, 0.17], rtol=1e-12)


@pytest.mark.parametrize("t", [0, 99, 499, 999])
def test_diffuse_is_the_forward_marginal(mix, sched, t):
    """x_t = sqrt(a) x0 + sqrt(1 - a) eps, sampled, has the moments and the component layout of diffuse(a)."""
    a = sched.alpha_bars[t]
    rng = np.random.default_rng(t)
    x0 = mix.sample(100_000, seed=t + 1)
    x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * rng.standard_normal(x0.shape)
    q = mix.diffuse(a)
    se = np.sqrt(np.diag(q.cov()) / len(x_t))
    assert np.all(np.abs(x_t.mean(0) - q.mean()) < 5 * se)
    np.testing.assert_allclose(np.cov(x_t.T), q.cov(), atol=0.01)
    # the log-likelihood of the noised samples under q(x_t) is its (negative) entropy: compare
    # against samples drawn from q directly
    ll_noised, ll_direct = q.log_prob(x_t), q.log_prob(q.sample(100_000, seed=7))
    assert abs(ll_noised.mean() - ll_direct.mean()) < 5 * np.sqrt(2 * ll_direct.var() / len(x_t))


def test_diffuse_ends():
    m = GaussianMixture([0.4, 0.6], [[1.0, 0.0], [-1.0, 2.0]], [0.1, 0.2])
    np.testing.assert_array_equal(m.diffuse(1.0).means, m.means)
    np.testing.assert_allclose(m.diffuse(1.0).covs, m.covs)
    z = m.diffuse(0.0)
    np.testing.assert_allclose(z.means, 0.0)
    np.testing.assert_allclose(z.covs, np.broadcast_to(np.eye(2), (2, 2, 2)))


@pytest.mark.parametrize("t", [99, 299, 699])
def test_optimal_eps_is_the_posterior_mean_of_the_noise(mix, sched, t):
    """Tweedie: eps*(x_t) equals E[eps | x_t], estimated by self-normalized importance sampling
    over x0 ~ q(x0) with weights q(x_t | x0), without using any score."""
    a = sched.alpha_bars[t]
    x_t = mix.diffuse(a).sample(4, seed=3)
    eps_star = mix.optimal_eps(sched, x_t, t)
    assert eps_star.dtype == np.float32 and eps_star.shape == (4, 2)
    prior = mix.sample(400_000, seed=4)
    for i in range(4):
        e = (x_t[i] - np.sqrt(a) * prior) / np.sqrt(1 - a)
        logw = -0.5 * np.sum(e ** 2, axis=1)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        mc = w @ e
        se = np.sqrt(w @ (e - mc) ** 2 * np.sum(w ** 2))     # delta-method standard error
        assert np.all(np.abs(eps_star[i] - mc) < 6 * se + 1e-4), (t, i, eps_star[i], mc, se)


def test_optimal_eps_minimizes_l_simple(mix, sched):
    """E||eps - f(x_t)||^2 = E||eps - eps*||^2 + E||eps* - f||^2: any other f is worse by exactly
    its squared distance to eps* (up to Monte Carlo error)."""
    t = 299
    a = sched.alpha_bars[t]
    rng = np.random.default_rng(5)
    x0 = mix.sample(200_000, seed=6)
    eps = rng.standard_normal(x0.shape)
    x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * eps
    eps_star = mix.optimal_eps(sched, x_t, t).astype(np.float64)
    l_star = np.mean(np.sum((eps - eps_star) ** 2, 1))
    for f in (0.9 * eps_star, eps_star + 0.1, x_t / np.sqrt(1 - a)):
        l_f = np.mean(np.sum((eps - f) ** 2, 1))
        gap = np.mean(np.sum((f - eps_star) ** 2, 1))
        assert l_f > l_star
        assert abs((l_f - l_star) - gap) < 0.02 * gap + 2e-3


def test_bad_inputs(mix):
    with pytest.raises(ValueError, match="means must have shape"):
        GaussianMixture([1.0], [0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="weights must be 2 positive"):
        GaussianMixture([1.0, -1.0], [[0.0], [1.0]], 1.0)
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match="alpha_bar must lie in"):
        mix.diffuse(1.5)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        mix.score(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="n must be a positive integer"):
        mix.sample(0)
