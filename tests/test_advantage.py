"(E6)-(E7): advantages and NFT weights."
import pytest, torch
from afd_nb.advantage import advantages, nft_weights, advantage_stats


def test_weights_follow_E7():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(32, generator=g) * 4
    A = s - s.mean()
    expect = (A / (A.std(unbiased=False) + 1e-4)).clamp(-5, 5) / 10 + 0.5
    assert torch.allclose(nft_weights(s), expect)
    assert torch.allclose(nft_weights(s, clip=2.0), (A / (A.std(unbiased=False) + 1e-4)).clamp(-2, 2) / 4 + 0.5)


def test_prompt_baseline_removes_prompt_constant():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(12, generator=g)
    ids = [i % 3 for i in range(12)]
    shifted = s + torch.tensor([100., -50., 7.])[torch.tensor(ids)]   # a per-prompt constant, as in (E5)
    assert torch.allclose(advantages(shifted, "prompt", ids), advantages(s, "prompt", ids), atol=1e-4)
    assert torch.allclose(nft_weights(shifted, "prompt", ids), nft_weights(s, "prompt", ids), atol=1e-4)
    assert not torch.allclose(nft_weights(shifted), nft_weights(s), atol=1e-2)  # the batch baseline does not


def test_no_gradient_and_range():
    s = torch.randn(16, requires_grad=True)
    r = nft_weights(s)
    assert not r.requires_grad and r.min() >= 0 and r.max() <= 1
    st = advantage_stats(s, r)
    assert abs(st["r_mean"] - 0.5) < 1e-5 and 0 <= st["r_clipped"] <= 1


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="batch, prompt"): nft_weights(torch.zeros(3), baseline="group")
    with pytest.raises(ValueError, match="prompt_ids"): nft_weights(torch.zeros(3), baseline="prompt")
    with pytest.raises(ValueError, match="2 entries"): advantages(torch.zeros(3), "prompt", ["a", "b"])
