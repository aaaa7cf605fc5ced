"Sec. 3.4 theory helpers of afd_nb.theory: the exact Gaussian-mixture posterior, T2-T4 and the BT loss (E4)."
import math

import pytest
import torch

from afd_nb.theory import (GMM, LogisticReward, ProbitReward, exact_tilt, nft_loss_reference, nft_optimum,
                           bt_loss_reference, sample_tilted, tilt_alpha, tilted_log_prob, tilted_velocity,
                           train_bt_toy, train_nft_toy, velocity_from_score)

f64 = torch.float64


@pytest.fixture
def gmm():
    return GMM(weights=[0.3, 0.3, 0.4], means=[[-1.5, -0.5], [1.5, -0.5], [0.0, 1.5]],
               stds=[[0.4, 0.3], [0.5, 0.6], [0.35, 0.35]])   # anisotropic: covers the [K, D] case


def noised(gmm, n, t, gen):
    x0 = gmm.sample(n, gen, f64)
    return (1 - t) * x0 + t * torch.randn(n, gmm.dim, generator=gen, dtype=f64)


def test_nft_optimum_satisfies_first_order_condition():
    "T4: for any conditional law of (r, v), the gradient of the mean (E9) vanishes at nft_optimum, only there."
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        n, D = 64, 3
        r = torch.rand(n, generator=gen, dtype=f64)
        v = 2 * torch.randn(n, D, generator=gen, dtype=f64)
        alpha, v_old = r.mean(), v.mean(0)                     # alpha = E[r], v_old = E[v] (on-policy)
        v_plus = (r[:, None] * v).mean(0) / alpha             # (T2) v+ = E[r v] / E[r]
        beta = float(torch.empty(1).uniform_(0.05, 2.0, generator=gen))
        v_star = nft_optimum(v_old[None], v_plus[None], alpha[None], beta)[0]
        def grad(vt):
            vt = vt.clone().requires_grad_(True)
            loss = nft_loss_reference(vt.expand(n, D), v_old.expand(n, D), v, r, beta).mean()
            return torch.autograd.grad(loss, vt)[0]
        assert grad(v_star).abs().max() < 1e-10
        # the loss is a quadratic with Hessian 2 beta I: the gradient anywhere is 2 beta (v_theta - v*)
        other = v_star + torch.randn(D, generator=gen, dtype=f64)
        assert torch.allclose(grad(other), 2 * beta * (other - v_star), atol=1e-10)


def test_nft_loss_matches_its_formula():
    "(E8)-(E9) written out for beta = 1 (v+ = v_theta, v- = 2 v_old - v_theta) and for video-shaped tensors."
    gen = torch.Generator().manual_seed(1)
    vt, vo, v = (torch.randn(5, 2, generator=gen) for _ in range(3))
    r = torch.rand(5, generator=gen)
    want = r * ((vt - v)**2).sum(1) + (1 - r) * ((2 * vo - vt - v)**2).sum(1)
    assert torch.allclose(nft_loss_reference(vt, vo, v, r, 1.0), want, atol=1e-6)
    # beta scales: L(beta) * beta is a quadratic in beta; at r = 1, v_theta = v_old it equals |v_old - v|^2 / beta
    assert torch.allclose(nft_loss_reference(vo, vo, v, torch.ones(5), 0.25), ((vo - v)**2).sum(1) / 0.25, atol=1e-5)
    x = torch.randn(2, 3, 4, 5, 6, generator=gen)
    assert nft_loss_reference(x, x, x + 1, torch.rand(2), 0.1).shape == (2,)
    with pytest.raises(ValueError, match='beta'): nft_loss_reference(vt, vo, v, r, 0.0)
    with pytest.raises(ValueError, match='one weight per sample'): nft_loss_reference(vt, vo, v, r[:3], 1.0)


def test_bt_loss_matches_its_formula():
    "(E4) per pair -log sigmoid(d_T - d_S), stable for large margins, and the mean equals discriminator.bt_loss."
    gen = torch.Generator().manual_seed(2)
    dT, dS = torch.randn(100, generator=gen, dtype=f64), torch.randn(100, generator=gen, dtype=f64)
    assert torch.allclose(bt_loss_reference(dT, dS), -torch.log(torch.sigmoid(dT - dS)), atol=1e-12)
    big = bt_loss_reference(torch.tensor([0.0, 200.0]), torch.tensor([200.0, 0.0]))
    assert torch.allclose(big, torch.tensor([200.0, 0.0]))
    assert math.isclose(float(bt_loss_reference(torch.zeros(1), torch.zeros(1))), math.log(2), rel_tol=1e-6)
    try: from afd_nb.discriminator import bt_loss
    except ImportError: return
    assert torch.allclose(bt_loss_reference(dT, dS).mean(), bt_loss(dT, dS), atol=1e-12)


def test_velocity_closed_forms_agree(gmm):
    "v = E[eps - x0 | x_t] = (x_t - E[x0|x_t]) / t = -(x_t + t score) / (1 - t), and equals afd_nb.flow's for isotropic stds."
    gen = torch.Generator().manual_seed(3)
    for t in (0.05, 0.4, 0.9):
        x = noised(gmm, 50, t, gen)
        v = gmm.velocity(x, t)
        assert torch.allclose(v, (x - gmm.posterior_mean(x, t)) / t, atol=1e-10)
        xr = x.clone().requires_grad_(True)
        score = torch.autograd.grad(gmm.log_prob(xr, t).sum(), xr)[0]
        assert torch.allclose(velocity_from_score(x, t, score), v, atol=1e-10)
    assert torch.allclose(gmm.velocity(x[:3], 0.0), -x[:3], atol=1e-12)    # t = 0: eps is independent of x0
    assert torch.allclose(gmm.velocity(x[:3], 1.0), x[:3] - gmm.weights @ gmm.means, atol=1e-12)
    flow = pytest.importorskip('afd_nb.flow')
    iso = GMM(gmm.weights, gmm.means, [0.4, 0.5, 0.35])
    ts = torch.rand(50, generator=gen, dtype=f64)
    assert torch.allclose(iso.velocity(x, ts), flow.gmm_velocity(x, ts, iso.weights, iso.means, [0.4, 0.5, 0.35]), atol=1e-10)


def test_posterior_sampling_reproduces_posterior_mean(gmm):
    "Exact draws x0 ~ p_old(x0 | x_t) (component, then Gaussian) have the exact posterior mean, and agree with brute-force IS."
    gen = torch.Generator().manual_seed(4)
    n = 20000
    for t in (0.2, 0.6):
        x = noised(gmm, 8, t, gen)
        draws = gmm.sample_x0_given_xt(x, t, n, gen)
        z = (draws.mean(1) - gmm.posterior_mean(x, t)) / (draws.std(1) / n**0.5)
        assert z.abs().max() < 5, z
        # brute force: prior draws weighted by the likelihood q(x_t | x0) = N(x_t; (1 - t) x0, t^2 I)
        x0 = gmm.sample(200_000, gen, f64)
        w = (-((x[:, None] - (1 - t) * x0)**2).sum(-1) / (2 * t * t)).softmax(1)
        assert torch.allclose(w @ x0, gmm.posterior_mean(x, t), atol=0.05)
    with pytest.raises(ValueError, match='t must lie'): gmm.posterior(x, 1.5)


def test_t3_identity_and_tilted_density(gmm):
    "T3 from closed forms: alpha v+ + (1 - alpha) v- = v_old; T1: p+ integrates to 1 and p+_t = alpha p_old_t / Z."
    gen = torch.Generator().manual_seed(5)
    reward = ProbitReward([1.2, 0.8], -0.3)
    x = noised(gmm, 100, 0.5, gen)
    ex = exact_tilt(gmm, reward, x, 0.5)
    mix = ex.alpha[:, None] * ex.v_plus + (1 - ex.alpha[:, None]) * ex.v_minus
    assert torch.allclose(mix, gmm.velocity(x, 0.5), atol=1e-10)
    Z = tilt_alpha(gmm, reward, torch.zeros(1, 2, dtype=f64), 1.0)
    assert torch.allclose(tilted_log_prob(gmm, reward, x, 0.5), (ex.alpha / Z).log() + gmm.log_prob(x, 0.5), atol=1e-10)
    g1 = torch.linspace(-6, 6, 301, dtype=f64)
    X = torch.cartesian_prod(g1, g1)
    assert abs(float(tilted_log_prob(gmm, reward, X).exp().sum() * (g1[1] - g1[0])**2) - 1) < 1e-4
    plus, minus = sample_tilted(gmm, reward, 100_000, gen)
    assert abs(len(plus) / 1e5 - float(Z)) < 5 * (0.25 / 1e5)**0.5


def test_tilted_velocity_matches_closed_form(gmm):
    "T2: the exact-posterior Monte Carlo v+, v-, alpha agree with the closed form of a probit reward."
    gen = torch.Generator().manual_seed(6)
    reward = ProbitReward([1.2, 0.8], -0.3)
    x = noised(gmm, 40, 0.4, gen)
    ex, mc = exact_tilt(gmm, reward, x, 0.4), tilted_velocity(gmm, reward, x, 0.4, 20000, gen)
    ok = (ex.alpha > 0.1) & (ex.alpha < 0.9)
    assert ok.sum() > 10
    assert (mc.v_plus - ex.v_plus)[ok].abs().max() < 0.1 and (mc.v_minus - ex.v_minus)[ok].abs().max() < 0.1
    assert (mc.alpha - ex.alpha).abs().max() < 0.02
    with pytest.raises(ValueError, match='t > 0'): tilted_velocity(gmm, reward, x, 0.0)


def test_tilted_velocity_matches_importance_sampling(gmm):
    "T2 with a logistic reward (no closed form): posterior Monte Carlo vs brute-force self-normalised IS over the prior."
    gen = torch.Generator().manual_seed(7)
    reward = LogisticReward([2.0, 1.3], -0.5)
    t = 0.6
    x = noised(gmm, 12, t, gen)
    mc = tilted_velocity(gmm, reward, x, t, 40000, gen)
    x0 = gmm.sample(400_000, gen, f64)
    q = (-((x[:, None] - (1 - t) * x0)**2).sum(-1) / (2 * t * t)).softmax(1)     # [N, S] posterior weights
    r, v = reward(x0), (x[:, None] - x0) / t                                      # v = eps - x0
    alpha = q @ r
    v_plus = ((q * r)[..., None] * v).sum(1) / alpha[:, None]
    v_minus = ((q * (1 - r))[..., None] * v).sum(1) / (1 - alpha)[:, None]
    ok = (alpha > 0.1) & (alpha < 0.9)
    assert ok.sum() > 4
    assert (mc.alpha - alpha).abs().max() < 0.02
    assert (mc.v_plus - v_plus)[ok].abs().max() < 0.1 and (mc.v_minus - v_minus)[ok].abs().max() < 0.1


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match='sum 1'): GMM([0.5, 0.6], [[0.0], [1.0]], [1.0, 1.0])
    with pytest.raises(ValueError, match=r'\[K\]'): GMM([1.0], [[0.0, 1.0]], [1.0, 1.0, 1.0])
    g = GMM([1.0], [[0.0, 0.0]], [1.0])
    with pytest.raises(TypeError, match='ProbitReward'): tilted_log_prob(g, LogisticReward([1.0, 0.0], 0.0), torch.zeros(1, 2))
    with pytest.raises(ValueError, match='t < 1'): velocity_from_score(torch.zeros(2, 2), 1.0, torch.zeros(2, 2))


@pytest.mark.slow
def test_trained_nets_reach_t4_and_t5():
    "T4/T5 with small networks (the notebook's check, shorter): about 15 s on 2 cores."
    gmm = GMM([0.3, 0.3, 0.4], [[-1.5, -0.5], [1.5, -0.5], [0.0, 1.5]], [0.4, 0.5, 0.35])
    reward = ProbitReward([1.2, 0.8], -0.3)
    gen = torch.Generator().manual_seed(8)
    t = torch.tensor([0.3, 0.6], dtype=f64).repeat_interleave(200)
    x = (1 - t[:, None]) * gmm.sample(400, gen, f64) + t[:, None] * torch.randn(400, 2, generator=gen, dtype=f64)
    ex = exact_tilt(gmm, reward, x, t)
    keep = ex.alpha > 0.05
    v_star = nft_optimum(gmm.velocity(x, t), ex.v_plus, ex.alpha, 1.0)[keep]
    net, _ = train_nft_toy(gmm, reward, 1.0, steps=2000)
    with torch.no_grad(): v_net = net(x.float(), t.float()).double()[keep]
    assert (v_net - v_star).norm(dim=1).mean() / v_star.norm(dim=1).mean() < 0.15
    D, _ = train_bt_toy(lambda n, g: 1 + 0.7 * torch.randn(n, 1, generator=g), lambda n, g: torch.randn(n, 1, generator=g))
    y = torch.linspace(-1.5, 2.2, 100)[:, None]
    ell = torch.distributions.Normal(1.0, 0.7).log_prob(y[:, 0]) - torch.distributions.Normal(0.0, 1.0).log_prob(y[:, 0])
    with torch.no_grad(): d = D(y)[:, 0]
    assert ((d - d.mean()) - (ell - ell.mean())).abs().max() < 0.3
