"(E6)-(E7): advantages and NFT weights."
import pytest, torch
from afd_nb.advantage import advantages, nft_weights, advantage_stats, darkness_reward


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


def test_prompt_global_std_divides_per_prompt_advantages_by_the_raw_score_spread():
    "The anchors' rule (flow_grpo's global_std): A = s - mean of the prompt's scores, Â = A / (std of all raw s + 1e-4)."
    s, ids = torch.tensor([0., 2., 10., 12., 5., 5.]), ['a', 'a', 'b', 'b', 'c', 'c']
    A = torch.tensor([-1., 1., -1., 1., 0., 0.])
    raw_std = float(((s - s.mean()) ** 2).mean().sqrt())
    assert torch.allclose(advantages(s, 'prompt_global_std', ids), A)
    assert torch.allclose(nft_weights(s, 'prompt_global_std', ids), (A / (raw_std + 1e-4)).clamp(-5, 5) / 10 + 0.5)
    assert torch.allclose(nft_weights(s, 'prompt', ids), (A / (A.std(unbiased=False) + 1e-4)).clamp(-5, 5) / 10 + 0.5)
    assert nft_weights(s, 'prompt_global_std', ids)[4] == 0.5   # a prompt whose rollouts tie carries no signal
    with pytest.raises(ValueError, match='baseline="prompt_global_std" needs prompt_ids'): nft_weights(s, 'prompt_global_std')


def test_darkness_reward_of_known_clips():
    white, black, grey = torch.ones(1, 3, 4, 8, 8), -torch.ones(1, 3, 4, 8, 8), torch.zeros(1, 3, 4, 8, 8)
    half = white.clone(); half[..., :4] = -1.0   # half the columns black
    assert torch.allclose(darkness_reward(torch.cat([white, black, grey, half])), torch.tensor([0.0, 1.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"\[B, 3, F, H, W\]"): darkness_reward(torch.zeros(3, 4, 8, 8))
