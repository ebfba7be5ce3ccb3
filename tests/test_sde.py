"""The VP SDE, its reverse SDE, the probability-flow ODE and Langevin dynamics (ddpm_lib.sde)."""
import numpy as np
import pytest

from ddpm_lib import linear_schedule, cosine_schedule
from ddpm_lib.mixture import GaussianMixture
from ddpm_lib.sampler import ddim_step, sampling_timesteps
from ddpm_lib.sde import VPSDE, euler_maruyama, langevin, probability_flow


@pytest.fixture(scope="module")
def mix():
    return GaussianMixture([0.5, 0.3, 0.2], [[-1.0, -0.4], [0.9, 0.5], [0.1, 1.1]],
                           [[[0.05, 0.03], [0.03, 0.04]], [[0.02, 0.0], [0.0, 0.06]], [[0.01, 0.0], [0.0, 0.01]]])


@pytest.fixture(scope="module")
def sde():
    return VPSDE.from_schedule(linear_schedule(1000))


def exact_score(mix, sde):
    return lambda x, s: mix.diffuse(float(sde.alpha_bar(s))).score(x)


def fractions(mix, x):
    return np.bincount(mix.responsibilities(x).argmax(1), minlength=len(mix.weights)) / len(x)


def test_from_schedule_and_alpha_bar(sde):
    assert (sde.beta_min, sde.beta_max) == pytest.approx((0.1, 20.0), rel=1e-12)
    np.testing.assert_allclose(sde.alpha_bar(1.0), np.exp(-0.1 - 9.95), rtol=1e-14)
    np.testing.assert_allclose(sde.alpha_bar(0.0), 1.0)
    s = np.array([0.0, 0.01, 0.3, 1.0])
    np.testing.assert_allclose(sde.time_of(sde.alpha_bar(s)), s, atol=1e-12)
    # d/ds log alpha_bar = -beta(s)
    h = 1e-6
    np.testing.assert_allclose((np.log(sde.alpha_bar(0.4 + h)) - np.log(sde.alpha_bar(0.4 - h))) / (2 * h),
                               -sde.beta(0.4), rtol=1e-7)
    with pytest.raises(ValueError, match="linear schedule"):
        VPSDE.from_schedule(cosine_schedule(1000))


def test_ddpm_chain_approaches_the_sde():
    """alpha_bar_t of the linear schedule with T beta_t -> beta(s) approaches alpha_bar(s = t / T),
    at first order: the largest gap halves when T doubles (8.1e-4 at T = 1000)."""
    sde = VPSDE()
    gaps = []
    for T in (1000, 2000, 4000):
        s = linear_schedule(T, 0.1 / T, 20.0 / T)
        gaps.append(np.max(np.abs(s.alpha_bars - sde.alpha_bar(np.arange(1, T + 1) / T))))
    assert 7e-4 < gaps[0] < 9e-4
    np.testing.assert_allclose(np.array(gaps[:-1]) / gaps[1:], 2.0, rtol=0.02)


def test_pf_ode_is_exact_for_a_gaussian():
    """Data N(0, c I): q_s = N(0, v(s) I), v = a c + 1 - a, and the PF-ODE scales x by sqrt(v(s1) / v(s0))."""
    c = 0.25
    sde = VPSDE()
    g = GaussianMixture([1.0], [[0.0, 0.0]], c)
    x = np.random.default_rng(0).standard_normal((100, 2))
    out = probability_flow(sde, exact_score(g, sde), x, np.linspace(1.0, 0.0, 201), method="heun")
    v1 = sde.alpha_bar(1.0) * c + 1 - sde.alpha_bar(1.0)
    np.testing.assert_allclose(out, x * np.sqrt(c / v1), rtol=1e-4)
    out_euler = probability_flow(sde, exact_score(g, sde), x, np.linspace(1.0, 0.0, 201))
    assert np.max(np.abs(out_euler - out)) > 10 * np.max(np.abs(out - x * np.sqrt(c / v1)))   # Heun is 2nd order
    back = probability_flow(sde, exact_score(g, sde), out, np.linspace(0.0, 1.0, 201), method="heun")
    np.testing.assert_allclose(back, x, rtol=1e-4)      # and it runs forwards too (encoding)


@pytest.mark.parametrize("how", ["ode", "sde"])
def test_samplers_with_the_exact_score_give_the_mixture(mix, sde, how):
    x1 = mix.diffuse(float(sde.alpha_bar(1.0))).sample(4000, seed=1)
    grid = np.linspace(1.0, 0.0, 401)
    if how == "ode":
        x = probability_flow(sde, exact_score(mix, sde), x1, grid, method="heun")
    else:
        x = euler_maruyama(sde, exact_score(mix, sde), x1, grid, seed=2)
    se = np.sqrt(np.diag(mix.cov()) / len(x))
    assert np.all(np.abs(x.mean(0) - mix.mean()) < 5 * se), x.mean(0)
    np.testing.assert_allclose(np.cov(x.T), mix.cov(), atol=0.04)
    np.testing.assert_allclose(fractions(mix, x), mix.weights, atol=0.03)


def test_ddim_approaches_the_pf_ode(mix):
    """DDIM (eta = 0) with the exact eps* is a discretization of the PF-ODE: the gap to an accurate
    ODE solution from the same x_T shrinks as the number of steps grows."""
    sched = linear_schedule(1000)
    sde = VPSDE.from_schedule(sched)
    x_T = np.random.default_rng(0).standard_normal((200, 2))
    s_T = float(sde.time_of(sched.alpha_bars[-1]))        # the same noise level as code t = T - 1
    ref = probability_flow(sde, exact_score(mix, sde), x_T, np.linspace(s_T, 0.0, 2001), method="heun")
    gaps = []
    for steps in (10, 100, 1000):
        x = x_T.astype(np.float32)
        for t, t_prev in zip(*sampling_timesteps(1000, steps)):
            x = ddim_step(sched, x, int(t), int(t_prev), mix.optimal_eps(sched, x, int(t))).x_prev.numpy()
        gaps.append(np.sqrt(np.mean(np.sum((x - ref) ** 2, 1))))
    assert gaps[0] > 3 * gaps[1] > 9 * gaps[2], gaps
    assert gaps[2] < 0.01, gaps


def test_langevin_stationary_variance():
    """For N(m, s^2) the chain x <- x + h/2 score + sqrt(h) z is stationary at N(m, s^2 / (1 - h / (4 s^2)))."""
    m, s2, h = 0.5, 0.2, 0.02
    g = GaussianMixture([1.0], [[m]], s2)
    x = langevin(g.score, np.zeros((20_000, 1)), h, 400, seed=0)
    var = s2 / (1 - h / (4 * s2))
    assert abs(x.mean() - m) < 5 * np.sqrt(var / len(x))
    assert abs(x.var() - var) < 5 * var * np.sqrt(2 / len(x))


def test_trajectories_and_bad_inputs(mix, sde):
    x = np.zeros((3, 2))
    out, xs = probability_flow(sde, exact_score(mix, sde), x, [1.0, 0.5, 0.0], trajectory=True)
    assert xs.shape == (3, 3, 2) and np.array_equal(xs[-1], out) and np.array_equal(xs[0], x)
    _, xs = euler_maruyama(sde, exact_score(mix, sde), x, [1.0, 0.0], trajectory=True)
    assert xs.shape == (2, 3, 2)
    with pytest.raises(ValueError, match="s_grid must decrease"):
        euler_maruyama(sde, exact_score(mix, sde), x, [0.0, 1.0])
    with pytest.raises(ValueError, match="at least 2"):
        probability_flow(sde, exact_score(mix, sde), x, [1.0])
    with pytest.raises(ValueError, match="method must be"):
        probability_flow(sde, exact_score(mix, sde), x, [1.0, 0.0], method="rk4")
    with pytest.raises(ValueError, match="step_size must be"):
        langevin(mix.score, x, 0.0, 10)
    with pytest.raises(ValueError, match="alpha_bar must lie in"):
        sde.time_of(0.0)
