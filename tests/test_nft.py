"(E8)-(E11): the NFT loss, its (T4) minimiser, the prior and the old-policy schedule."
import pytest, torch
from afd_nb.nft import implicit_policies, nft_loss, prior_loss, afd_loss, old_policy_decay, ema_, level_draws


def _rand(*shape, g):
    return torch.randn(*shape, generator=g)


def test_nft_loss_matches_E9_on_random_tensors():
    g = torch.Generator().manual_seed(0)
    shape = (5, 16, 3, 4, 4)
    vt, vo, v = _rand(*shape, g=g), _rand(*shape, g=g), _rand(*shape, g=g)
    r = torch.rand(5, generator=g)
    for beta in (0.1, 1.0, 2.5):
        vp = (1 - beta) * vo + beta * vt
        vn = (1 + beta) * vo - beta * vt
        e9 = (r * (vp - v).pow(2).flatten(1).mean(1) + (1 - r) * (vn - v).pow(2).flatten(1).mean(1)) / beta
        assert torch.allclose(nft_loss(vt, vo, v, r, beta), e9, rtol=1e-5, atol=1e-6)


def test_nft_minimiser_is_T4():
    "Minimising (E9) over a free v_θ shared by samples with E[v] = v_old gives v_old + (2/β) α (v⁺ - v_old)."
    g = torch.Generator().manual_seed(3)
    N, D = 400, 4
    for beta in (0.1, 1.0):
        v_old = _rand(D, g=g)
        v = v_old + _rand(N, D, g=g)
        v = v - v.mean(0) + v_old
        r = torch.sigmoid(v[:, 1] - v[:, 2])
        # (E9) is quadratic in v_θ: solve its normal equation exactly
        vt = torch.zeros(D, requires_grad=True)
        loss = nft_loss(vt.expand(N, D), v_old.expand(N, D), v, r, beta).mean()
        grad0, = torch.autograd.grad(loss, vt, create_graph=True)
        H = torch.stack([torch.autograd.grad(grad0[i], vt, retain_graph=True)[0] for i in range(D)])
        v_min = -torch.linalg.solve(H, grad0.detach())
        alpha, v_plus = r.mean(), (r[:, None] * v).sum(0) / r.sum()
        assert torch.allclose(v_min, v_old + 2 / beta * alpha * (v_plus - v_old), atol=1e-4)


def test_gradient_and_detach():
    vt = torch.randn(3, 8, requires_grad=True)
    vo = torch.randn(3, 8, requires_grad=True)
    nft_loss(vt, vo, torch.randn(3, 8), torch.rand(3), 0.1).sum().backward()
    assert vt.grad is not None and vo.grad is None       # v_old is the sampling policy: no gradient
    vp, vn = implicit_policies(vt, vo, 0.3)
    assert torch.allclose((vp + vn) / 2, vo)              # v_old is the midpoint of the implicit policies


def test_prior_and_afd_sum():
    g = torch.Generator().manual_seed(5)
    vt, vr = _rand(2, 10, g=g), _rand(2, 10, g=g)
    assert torch.allclose(prior_loss(vt, vr), (vt - vr).pow(2).mean(1))
    out = afd_loss(vt, _rand(2, 10, g=g), vr, _rand(2, 10, g=g), torch.rand(2, generator=g), 0.1, 0.5)
    assert abs(float(out["loss"]) - (out["nft"] + 0.5 * out["prior"])) < 1e-5


def test_old_policy_schedule_and_ema():
    assert [old_policy_decay(s) for s in (0, 1, 250, 499, 500, 10**6)] == [0, 0.001, 0.25, 0.499, 0.5, 0.5]
    a, b = [torch.full((2,), 2.0)], [torch.full((2,), 4.0)]
    ema_(a, b, 0.75)
    assert torch.allclose(a[0], torch.full((2,), 2.5))
    with pytest.raises(ValueError): old_policy_decay(-1)
    with pytest.raises(ValueError, match="beta"): nft_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1), 0)


def test_old_policy_schedule_with_a_flat_phase_is_diffusionnfts_return_decay():
    "decay_type 2 (OCR): d = 0 for 75 steps, then +0.0075 per step, capped at 0.999."
    d = lambda s: old_policy_decay(s, rate=0.0075, max_decay=0.999, flat=75)
    assert [d(s) for s in (0, 74, 75)] == [0.0, 0.0, 0.0]
    assert d(76) == pytest.approx(0.0075) and d(175) == pytest.approx(0.75) and d(10**4) == 0.999


def test_level_draws_are_stratified_over_the_levels():
    levels = [1.0, 0.9375, 0.8333, 0.625]
    t = level_draws(6, 4, 8, levels, torch.Generator().manual_seed(0)).view(6, 8, 4)   # [sample, draw, chunk]
    for i in range(6):
        for c in range(4):
            for half in (t[i, :4, c], t[i, 4:, c]):   # each block of 4 draws visits every level once
                assert sorted(half.tolist()) == sorted(torch.tensor(levels).tolist())
    assert level_draws(2, 3, 1, levels).shape == (2, 3)
    with pytest.raises(ValueError, match="draws must be >= 1"): level_draws(2, 3, 0, levels)


def test_x0_space_errors_are_t_squared_velocity_errors():
    "x0_space: ‖x̂0± - x0‖² with x̂0 = x_t - t v, i.e. t² (per frame) times the velocity error; the prior likewise."
    g = torch.Generator().manual_seed(7)
    shape = (3, 4, 2, 3, 3)
    vt, vo, v, vr = (_rand(*shape, g=g) for _ in range(4))
    r, t = torch.rand(3, generator=g), torch.rand(3, 2, generator=g)
    w = t[:, None, :, None, None] ** 2
    for beta in (0.1, 1.0):
        vp, vn = (1 - beta) * vo + beta * vt, (1 + beta) * vo - beta * vt
        want = (r * (w * (vp - v) ** 2).flatten(1).mean(1) + (1 - r) * (w * (vn - v) ** 2).flatten(1).mean(1)) / beta
        assert torch.allclose(nft_loss(vt, vo, v, r, beta, t=t, x0_space=True), want, atol=1e-6)
    assert torch.allclose(prior_loss(vt, vr, t), (w * (vt - vr) ** 2).flatten(1).mean(1))
    out = afd_loss(vt, vo, vr, v, r, 0.1, 0.5, x0_space=True, t=t)
    assert out['prior'] == pytest.approx(float(prior_loss(vt, vr, t).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="x0_space=True needs t"): nft_loss(vt, vo, v, r, 0.1, x0_space=True)
