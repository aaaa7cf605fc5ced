"afd_nb.evaluate: per-domain scoring of clips."
import numpy as np, pytest
from afd_nb.evaluate import evaluate_clips, score_clip, FOUND_FRACTION
from afd_nb.video import Clip
from afd_nb.world import sample_prompts, scene_from_prompt, render, physics_variant


def _clips(domain, n, kind=None, seed=3):
    out = []
    for p in sample_prompts(domain, n, seed=seed):
        sc = scene_from_prompt(p, 0)
        out.append(Clip(render(physics_variant(sc, kind) if kind else sc, 32, 8.0, 24), 8.0, p))
    return out


def test_teacher_clips_score_high_and_wrong_physics_low():
    good, bad = _clips('physics', 3), _clips('physics', 3, 'no_gravity')
    rg, rb = evaluate_clips(good), evaluate_clips(bad)
    assert rg.summary['physics']['physics_score']['mean'] > 0.95 and rg.summary['physics']['found']['mean'] == 1
    assert rb.summary['physics']['physics_score']['mean'] < 0.5
    assert set(rg.headline()) >= {'physics/physics_score', 'physics/found'}


def test_general_domain_and_missing_object():
    clips = _clips('general', 2)
    res = evaluate_clips(clips)
    assert res.summary['general']['general_score']['mean'] > 0.95 and res.summary['general']['object_ok']['mean'] == 1
    blank = Clip(np.full_like(clips[0].frames, 255), 8.0, clips[0].prompt)   # nothing drawn
    r = score_clip(blank)
    assert r['found'] == 0 and r['general_score'] == 0
    assert FOUND_FRACTION == 0.9
    with pytest.raises(ValueError, match="2 clips but 1 prompts"): evaluate_clips(clips, prompts=clips[0].prompt[:1].split())


def test_a_clip_whose_scoring_raises_scores_zero(monkeypatch):
    "A clip whose scoring raises (the world's fit on a degenerate track) counts as a 0 instead of ending the evaluation."
    import afd_nb.evaluate as ev
    gen, phy = sample_prompts('general', 2, seed=3), sample_prompts('physics', 1, seed=3)
    clips = [Clip(render(scene_from_prompt(p, 0), 32, 8.0, 24), 8.0, p) for p in gen + phy]
    real = ev.score_clip
    def flaky(clip, prompt=None):
        if (prompt or clip.prompt) == gen[0]: raise RuntimeError('more than 10000 events')
        return real(clip, prompt)
    monkeypatch.setattr(ev, 'score_clip', flaky)
    res = evaluate_clips(clips)
    assert [r['scoring_error'] for r in res.reports] == [1.0, 0.0, 0.0]
    assert res.reports[0]['general_score'] == 0.0 and res.reports[0]['object_ok'] == 0.0
    assert res.summary['general']['scoring_error']['mean'] == 0.5 and res.summary['physics']['physics_score']['mean'] > 0.9
    assert res.headline()['general/scoring_error'] == 0.5 and 'physics/scoring_error' not in res.headline()
    import torch
    pix = torch.stack([torch.from_numpy(c.frames).permute(3, 0, 1, 2) for c in clips]).float() / 127.5 - 1
    with pytest.warns(UserWarning, match=r"1 of 3 clips could not be scored and count as 0 .*10000 events"):
        w = ev.world_scores(pix, gen + phy, 8.0)
    assert w[0] == 0 and w[2] > 0.9
    with pytest.raises(RuntimeError, match='10000 events'): evaluate_clips(clips, strict=True)
    with pytest.raises(ValueError, match='cannot parse'): evaluate_clips(clips[:1], prompts=['a dog barks'])


def test_paired_delta_of_teacher_against_wrong_physics():
    "Right physics before, no gravity after (same prompts): the paired change is the drop of every clip, with its SE."
    from afd_nb.evaluate import paired_delta
    good, bad = evaluate_clips(_clips('physics', 4)), evaluate_clips(_clips('physics', 4, 'no_gravity'))
    d = paired_delta(good, bad, 'physics_score')
    per = np.array([b['physics_score'] - g['physics_score'] for g, b in zip(good.reports, bad.reports)])
    assert d['n'] == 4 and d['mean'] == pytest.approx(per.mean()) and d['mean'] < -0.4
    assert d['se'] == pytest.approx(per.std(ddof=1) / 2)
    assert paired_delta(good, good, 'physics_score') == {'mean': 0.0, 'se': 0.0, 'n': 4, 'prompts': 4}
    with pytest.raises(ValueError, match="same prompts in the same order"):
        paired_delta(good, evaluate_clips(_clips('physics', 4, seed=9)), 'physics_score')
