"(E4) Bradley-Terry loss, the discriminator's conditioning, and calibration."
import pytest, torch
from afd_nb.discriminator import bt_loss, bt_accuracy, bt_calibration, bt_train_step, PhysicsDiscriminator


def test_bt_loss_matches_E4():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, generator=g) * 3, torch.randn(64, generator=g) * 3
    assert torch.allclose(bt_loss(a, b), -torch.log(torch.sigmoid(a - b)).mean(), atol=1e-6)
    assert torch.isfinite(bt_loss(torch.tensor([-500.]), torch.tensor([500.])))   # stable where σ underflows
    assert torch.allclose(bt_loss(a + 7, b + 7), bt_loss(a, b))                     # only differences matter (E5)
    with pytest.raises(ValueError, match="prompt-paired"): bt_loss(torch.zeros(3), torch.zeros(4))


def test_bt_optimum_is_log_ratio_on_two_point_laws():
    "(T5) discrete case: teacher and student laws on 3 outcomes; BT-optimal scores are log p_T/p_S + const."
    pT, pS = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.2, 0.3, 0.5])
    d = torch.zeros(3, requires_grad=True)
    opt = torch.optim.LBFGS([d], max_iter=200, line_search_fn="strong_wolfe")
    def closure():   # exact expectation of (E4) over independent pairs
        opt.zero_grad()
        l = (pT[:, None] * pS[None, :] * torch.nn.functional.softplus(d[None, :] - d[:, None])).sum()
        l.backward(); return l
    opt.step(closure)
    target = torch.log(pT / pS)
    assert torch.allclose(d.detach() - d.detach().mean(), target - target.mean(), atol=1e-3)


def test_discriminator_conditioning_and_gradients():
    torch.manual_seed(0)
    D = PhysicsDiscriminator(text_dim=8, width=8)
    v = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    t1, t2 = torch.randn(2, 8), torch.randn(2, 8)
    assert not torch.allclose(D.score(v, text=t1), D.score(v, text=t2))   # the prompt changes the score
    opt = torch.optim.SGD(D.parameters(), lr=0.1)
    out = bt_train_step(D, opt, v, v.flip(2), text=t1)
    assert set(out) == {"d_loss", "d_acc", "d_margin"}
    assert all(p.grad is not None for p in D.parameters())
    with pytest.raises(ValueError, match=r"\[B, 3, F, H, W\]"): D.score(v[:, :2])
    with pytest.raises(ValueError, match="text encoder"): D.score(v, ["a red ball"])


def test_calibration_of_a_calibrated_scorer():
    "Scores that are true log-odds give observed frequencies equal to predicted ones (within sampling error)."
    g = torch.Generator().manual_seed(1)
    n = 20000
    margin = torch.randn(n, generator=g) * 2                       # D(teacher) - D(student)
    is_teacher_first = torch.rand(n, generator=g) < torch.sigmoid(margin)
    d_t = torch.where(is_teacher_first, margin, -margin)             # re-labelled so σ(d_t - d_s) is calibrated
    pred, obs, cnt = bt_calibration(d_t / 2, -d_t / 2, bins=6)
    for p, o, c in zip(pred, obs, cnt):
        if c > 500: assert abs(p - o) < 0.05, (p, o, c)
    assert abs(bt_accuracy(torch.tensor([1., 0.]), torch.tensor([0., 1.])) - 0.5) < 1e-9
