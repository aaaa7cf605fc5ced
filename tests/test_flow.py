"(E1)-(E3), the few-step and Euler samplers, per-frame times and the exact mixture velocity of afd_nb.flow."
import numpy as np, pytest, torch
from afd_nb.flow import (expand_t, add_noise, velocity_target, x0_from_velocity, noise_from_velocity, shift_time,
                         warp_timesteps, timesteps_to_sigmas, few_step_sample, euler_sample, sample_train_t,
                         gmm_velocity, gmm_posterior, gmm_sample, gmm_moments)

D64 = torch.float64


def test_e1_e2_values_and_inverse():
    x0, eps = torch.tensor([[2.0, -4.0]]), torch.tensor([[1.0, 1.0]])
    assert torch.allclose(add_noise(x0, eps, 0.25), torch.tensor([[1.75, -2.75]]))
    assert torch.equal(add_noise(x0, eps, 0.0), x0) and torch.equal(add_noise(x0, eps, 1.0), eps)
    v = velocity_target(x0, eps)
    assert torch.equal(v, torch.tensor([[-1.0, 5.0]]))
    for t in [0.0, 0.3, 1.0]:
        xt = add_noise(x0, eps, t)
        assert torch.allclose(x0_from_velocity(xt, v, t), x0) and torch.allclose(noise_from_velocity(xt, v, t), eps)
    with pytest.raises(ValueError, match='differ in shape'): add_noise(x0, eps[:, :1], 0.5)


def test_e3_shift_and_warp():
    assert shift_time(0.75, 5) == pytest.approx(0.9375) and shift_time(0.5, 5) == pytest.approx(5 / 6)
    assert shift_time(0.25, 1.0) == 0.25
    w = warp_timesteps([1000, 750, 500, 250], 5)
    assert w.dtype == D64 and torch.allclose(w, torch.tensor([1000, 937.5, 2500 / 3, 625], dtype=D64))
    assert timesteps_to_sigmas([1000, 750, 500, 250], 5) == pytest.approx([1.0, 0.9375, 0.833333, 0.625], abs=1e-6)
    # σ is monotone and its inverse is the shift 1/s
    t = torch.linspace(0, 1, 101, dtype=D64)
    assert torch.all(torch.diff(shift_time(t, 3.0)) > 0)
    assert torch.allclose(shift_time(shift_time(t, 3.0), 1 / 3.0), t)
    with pytest.raises(ValueError): warp_timesteps([1200], 5)
    with pytest.raises(ValueError): shift_time(0.5, 0.0)


def test_per_frame_time_broadcast():
    x = torch.zeros(2, 3, 5, 4, 4)
    t = torch.arange(10, dtype=torch.float32).reshape(2, 5) / 10
    e = expand_t(t, x)
    assert e.shape == x.shape
    for b in range(2):
        for f in range(5): assert torch.all(e[b, :, f] == t[b, f])
    x0, eps = torch.randn(2, 3, 5, 4, 4), torch.randn(2, 3, 5, 4, 4)
    xt = add_noise(x0, eps, t)
    assert torch.allclose(xt[1, :, 3], (1 - t[1, 3]) * x0[1, :, 3] + t[1, 3] * eps[1, :, 3])
    assert torch.all(expand_t(torch.tensor([0.2, 0.7]), x)[1] == 0.7)
    for bad, xx in [(t, torch.zeros(2, 3, 4, 4)), (t.T, x), (torch.rand(3), x), (torch.rand(2, 5, 1), x)]:
        with pytest.raises(ValueError, match='does not fit'): expand_t(bad, xx)


@pytest.mark.parametrize('sigmas', [[1.0], [1.0, 0.5], [1.0, 0.9375, 0.8333, 0.625], [0.8, 0.2, 0.05]])
def test_sampler_exact_on_point_mass(sigmas):
    # x0 = c a.s.  =>  v(x_t, t) = (x_t - c) / t; every x̂0 equals c, and every ODE path is a straight line
    c = torch.tensor([[1.5, -2.0, 0.25]], dtype=D64)
    field = lambda x, t: (x - c) / expand_t(t, x)
    z = torch.randn(32, 3, dtype=D64, generator=torch.Generator().manual_seed(0))
    out = few_step_sample(field, z, sigmas, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out, c.expand_as(out), atol=1e-12)
    assert torch.allclose(euler_sample(field, z, len(sigmas), shift=2.0), c.expand_as(out), atol=1e-12)


def gaussian_field(mu, s):
    return lambda x, t: gmm_velocity(x, t, [1.0], mu[None], s)


def test_euler_transports_gaussian_and_converges():
    # for N(mu, s² I) the exact ODE maps ε to mu + s ε (x_t = (1-t) mu + sqrt((1-t)² s² + t²) ε); Euler error is O(1/n)
    mu, s = torch.tensor([1.0, -0.5], dtype=D64), 0.3
    z = torch.randn(256, 2, dtype=D64, generator=torch.Generator().manual_seed(0))
    exact = mu + s * z
    errs = [(euler_sample(gaussian_field(mu, s), z, n) - exact).abs().max().item() for n in (25, 50, 100, 200)]
    assert errs[-1] < 0.015  # measured 0.009 at 200 steps (0.07 at 25)
    assert all(e1 < e0 for e0, e1 in zip(errs, errs[1:]))
    assert errs[0] / errs[-1] > 6  # 8x the steps: first order gives ~8x smaller error


def test_few_step_on_gaussian_moments():
    # exact statements: E[output] = mu; Var follows g_j = a_j s²/V_j, q_{j+1} = a_{j+1}² g_j² q_j + σ_{j+1}², Var = g_J² q_J
    mu, s, sig = torch.tensor([2.0, -1.0], dtype=D64), 0.5, [1.0, 0.75, 0.5, 0.25]
    z = torch.randn(100_000, 2, dtype=D64, generator=torch.Generator().manual_seed(0))
    out = few_step_sample(gaussian_field(mu, s), z, sig, generator=torch.Generator().manual_seed(1))
    q = 1.0
    for j, sj in enumerate(sig):
        g = (1 - sj) * s**2 / ((1 - sj)**2 * s**2 + sj**2)
        if j + 1 < len(sig): q = (1 - sig[j + 1])**2 * g**2 * q + sig[j + 1]**2
    var = g**2 * q
    assert var < s**2  # each x̂0 is a posterior mean: the few-step law is too narrow
    n = z.shape[0]
    assert torch.all((out.mean(0) - mu).abs() < 5 * (var / n) ** 0.5)
    assert torch.all((out.var(0) / var - 1).abs() < 5 * (2 / n) ** 0.5)


def test_one_step_collapses_to_mixture_mean():
    W, MU, S = [0.2, 0.8], [[-1.0, 0.0], [3.0, 1.0]], [0.5, 0.2]
    z = torch.randn(64, 2, dtype=D64, generator=torch.Generator().manual_seed(0))
    out = few_step_sample(lambda x, t: gmm_velocity(x, t, W, MU, S), z, [1.0])
    assert torch.allclose(out, gmm_moments(W, MU, S)[0].expand_as(out), atol=1e-12)


def test_gmm_velocity_matches_monte_carlo():
    W, MU, S = [0.5, 0.3, 0.2], [[-2.0, 0.0, 1.0], [2.0, 1.0, 0.0], [0.0, -2.5, -1.0]], [0.4, 0.3, 0.5]
    xq = torch.tensor([[0.5, 0.5, 0.0], [-1.0, -1.0, 0.5]], dtype=D64)
    x0 = gmm_sample(300_000, W, MU, S, torch.Generator().manual_seed(0), dtype=D64)
    t = torch.tensor([0.4, 0.8], dtype=D64)
    exact = gmm_velocity(xq, t, W, MU, S)
    for i in range(2):
        ti = t[i].item()
        logw = -((xq[i] - (1 - ti) * x0) ** 2).sum(-1) / (2 * ti**2)
        r = torch.softmax(logw, 0)
        v_mc = (r[:, None] * ((xq[i] - (1 - ti) * x0) / ti - x0)).sum(0)
        assert (v_mc - exact[i]).abs().max() < 0.03
    gam = gmm_posterior(xq, t, W, MU, S)
    assert gam.shape == (2, 3) and torch.allclose(gam.sum(1), torch.ones(2, dtype=D64))
    with pytest.raises(ValueError, match='means'): gmm_velocity(xq, 0.5, W, [[0.0, 0.0]], S)


def test_sampler_input_checks_and_train_t():
    f = lambda x, t: x
    with pytest.raises(ValueError, match='timesteps_to_sigmas'): few_step_sample(f, torch.zeros(2, 2), [1000, 500])
    with pytest.raises(ValueError): euler_sample(f, torch.zeros(2, 2), 0)
    t = sample_train_t(10_000, torch.Generator().manual_seed(0), shift=1.0)
    assert t.shape == (10_000,) and (0 < t).all() and (t < 1).all() and abs(t.median().item() - 0.5) < 0.03
    t5 = sample_train_t(10_000, torch.Generator().manual_seed(0), shift=5.0)
    assert torch.allclose(t5, shift_time(t, 5.0))
    with pytest.raises(ValueError, match='uniform'): sample_train_t(4, dist='beta')


def test_few_step_eta0_is_the_ode_and_keeps_the_spread():
    # eta 0 keeps each step's own noise: on N(mu, s² I) it follows the exact ODE map ε -> mu + s ε as the σ list
    # gets finer, and at 4 steps it keeps more of the law's spread than fresh noise (whose x̂0 are posterior means)
    mu, s = torch.tensor([1.0, -0.5], dtype=D64), 0.3
    z = torch.randn(20_000, 2, dtype=D64, generator=torch.Generator().manual_seed(0))
    f = gaussian_field(mu, s)
    errs = [(few_step_sample(f, z, [1 - i / n for i in range(n)], eta=0.0) - (mu + s * z)).abs().max().item()
            for n in (25, 200)]
    assert errs[1] < 0.015 and errs[1] < errs[0] / 4
    sig = [1.0, 0.75, 0.5, 0.25]
    sd0 = few_step_sample(f, z, sig, eta=0.0).std(0)
    sd1 = few_step_sample(f, z, sig, torch.Generator().manual_seed(1), eta=1.0).std(0)
    assert torch.all(sd1 < sd0) and torch.all(sd0 <= s * 1.02)
