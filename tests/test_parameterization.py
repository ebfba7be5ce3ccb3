"""The conversions among eps, x0, v and the score (ddpm_lib.parameterization), against float64 numpy."""
import numpy as np
import pytest

from ddpm_lib import linear_schedule, cosine_schedule
from ddpm_lib import parameterization as P


@pytest.fixture(scope="module", params=["linear", "cosine"])
def sched(request):
    return linear_schedule(1000) if request.param == "linear" else cosine_schedule(1000)


def ref_all(sched, x0, noise, t):
    """x_t and the four parameterizations in float64 numpy, from their definitions."""
    a = sched.alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1))
    x0, noise = x0.astype(np.float64), noise.astype(np.float64)
    x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * noise
    return x_t, {"eps": noise, "x0": x0, "v": np.sqrt(a) * noise - np.sqrt(1 - a) * x0,
                 "score": -noise / np.sqrt(1 - a)}


@pytest.fixture(scope="module", params=["images", "points"])
def data(request, batch):
    x0, noise, t = batch
    if request.param == "points":                       # (batch, 2) toy points, same times
        x0, noise = x0.reshape(len(t), -1)[:, :2], noise.reshape(len(t), -1)[:, :2]
    return x0, noise, t


def coefficients(a, kind):
    """(c_x, c_eps) with kind = c_x x_t + c_eps eps, and (d_x, d_kind) with eps = d_x x_t + d_kind kind."""
    sa, sb = np.sqrt(a), np.sqrt(1 - a)
    from_eps = {"eps": (0 * a, 1 + 0 * a), "x0": (1 / sa, -sb / sa), "v": (-sb / sa, 1 / sa),
                "score": (0 * a, -1 / sb)}
    to_eps = {"eps": (0 * a, 1 + 0 * a), "x0": (1 / sb, -sa / sb), "v": (sb, sa), "score": (0 * a, -sb)}
    return from_eps[kind], to_eps[kind]


@pytest.mark.parametrize("source", P.PARAMETERIZATIONS)
@pytest.mark.parametrize("target", P.PARAMETERIZATIONS)
def test_convert_matches_float64_definitions(sched, data, source, target):
    x0, noise, t = data
    x_t, ref = ref_all(sched, x0, noise, t)
    x_t32, value32 = x_t.astype(np.float32), ref[source].astype(np.float32)
    out = P.convert(sched, x_t32, t, value32, source, target).numpy()
    assert out.shape == x0.shape
    # the float64 conversion of the same float32 inputs, through eps (v -> x0: directly)
    a = sched.alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1))
    x, val = x_t32.astype(np.float64), value32.astype(np.float64)
    (ct_x, ct_e), _ = coefficients(a, target)
    _, (cs_x, cs_v) = coefficients(a, source)
    if (source, target) == ("v", "x0"):
        ct_x, ct_e, cs_x, cs_v = np.sqrt(a), -np.sqrt(1 - a), 0 * a, 1 + 0 * a   # x0 = sqrt(a) x_t - sqrt(1-a) v
    eps64 = cs_x * x + cs_v * val
    expected = ct_x * x + ct_e * eps64
    # float32 rounding of each two-term step, the first one carried through the second
    scale = np.abs(ct_e) * (np.abs(cs_x * x) + np.abs(cs_v * val)) + np.abs(ct_x * x) + np.abs(ct_e * eps64)
    err = np.abs(out - expected)
    assert np.all(err <= 1e-6 * scale + 1e-6), (source, target, np.max(err - 1e-6 * scale))
    # and the float64 reference from the definitions, up to the rounding of the inputs
    np.testing.assert_allclose(expected, ref[target], rtol=0,
                               atol=1e-6 * float(np.max(scale)) + 1e-6)


@pytest.mark.parametrize("kind", ["x0", "v", "score"])
def test_round_trips(sched, data, kind):
    x0, noise, t = data
    x_t, _ = ref_all(sched, x0, noise, t)
    x_t = x_t.astype(np.float32)
    value = P.from_eps(sched, x_t, t, noise, kind)
    back = P.to_eps(sched, x_t, t, value, kind).numpy()
    a = sched.alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1))
    tol = 1e-5 * (1 + np.abs(x_t) / np.sqrt(a) + np.abs(noise)) / np.sqrt(np.minimum(a, 1 - a))
    assert np.all(np.abs(back - noise) <= tol), kind


def test_schedule_methods_are_the_same_conversions(sched, batch):
    x0, noise, t = batch
    x_t = sched.q_sample(x0, t, noise)
    np.testing.assert_array_equal(sched.predict_x0(x_t, t, noise).numpy(),
                                  P.eps_to_x0(sched, x_t, t, noise).numpy())
    np.testing.assert_array_equal(sched.predict_eps(x_t, t, x0).numpy(),
                                  P.x0_to_eps(sched, x_t, t, x0).numpy())
    np.testing.assert_array_equal(P.convert(sched, x_t, t, noise, "eps", "x0").numpy(),
                                  sched.predict_x0(x_t, t, noise).numpy())


def test_known_case_x0_zero():
    """x_0 = 0: x_t = sqrt(1 - a) eps, v = sqrt(a) eps, score = -x_t / (1 - a)."""
    s = linear_schedule(1000)
    eps = np.array([[1.0, -2.0], [0.5, 0.25]], np.float32)
    t = np.array([0, 499], np.int32)
    a = s.alpha_bars[t][:, None]
    x_t = (np.sqrt(1 - a) * eps).astype(np.float32)
    np.testing.assert_allclose(P.eps_to_v(s, x_t, t, eps), np.sqrt(a) * eps, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(P.eps_to_score(s, x_t, t, eps), -x_t / (1 - a), rtol=1e-5)
    np.testing.assert_allclose(P.v_to_x0(s, x_t, t, np.sqrt(a) * eps), 0.0, atol=1e-6)
    np.testing.assert_allclose(P.eps_to_x0(s, x_t, t, eps), 0.0, atol=1e-5)


def test_v_is_a_rotation_of_x0_and_eps(batch):
    """(x_t, v) = R(phi) (x0, eps) with cos(phi) = sqrt(a): the norms add up, ||x_t||^2 + ||v||^2 = ||x0||^2 + ||eps||^2."""
    s = linear_schedule(1000)
    x0, noise, t = batch
    x_t = s.q_sample(x0, t, noise)
    v = P.eps_to_v(s, x_t, t, noise).numpy()
    lhs = np.sum(x_t.numpy() ** 2 + v ** 2, axis=(1, 2, 3))
    rhs = np.sum(x0.astype(np.float64) ** 2 + noise.astype(np.float64) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(lhs, rhs, rtol=2e-4)


def test_bad_names_and_shapes(batch):
    s = linear_schedule(10)
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="source must be \"eps\", \"x0\", \"v\" or \"score\"; got 'noise'"):
        P.convert(s, x, 0, x, "noise", "x0")
    with pytest.raises(ValueError, match="target must be \"eps\", \"x0\", \"v\" or \"score\"; got 'mu'"):
        P.from_eps(s, x, 0, x, "mu")
    with pytest.raises(ValueError, match="must have the shape of x_t"):
        P.eps_to_v(s, x, 0, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="code indices"):
        P.eps_to_score(s, x, 10, x)
