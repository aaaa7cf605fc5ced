"Tests of afd_nb.corpus and afd_nb.pretrain: corpus mix and prompt hygiene, the chunked flow loss, the loop's exact resume."
import dataclasses, json, warnings

import numpy as np
import pytest
import torch

from afd_nb.corpus import (CorpusSpec, WRONG_PHYSICS, _norm, assign_variants, build_corpus, eval_prompts, load_corpus,
                           training_prompts)
from afd_nb.pretrain import PretrainConfig, PretrainRun, chunk_times, flow_loss, random_student
from afd_nb.student import load_student
from afd_nb.text import load_text_encoder
from afd_nb.world import parse_prompt


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    return load_corpus(CorpusSpec(size=120, physics_true_fraction=0.25, seed=5), tmp_path_factory.mktemp('c'), progress=False)


def fresh(seed=0):
    "A random tiny student (not the shipped weights) and a random tiny text encoder."
    return random_student('self_forcing', seed), load_text_encoder('tiny', device='cpu')


def test_corpus_mix_matches_true_fraction(corpus):
    phys = [v for v in corpus.variants if v != 'general']
    assert len(phys) == 60 and corpus.variants.count('general') == 60
    assert abs(phys.count('true') / len(phys) - 0.25) <= 1 / len(phys)
    assert set(phys) - {'true'} == set(WRONG_PHYSICS)
    for p, v in zip(corpus.prompts, corpus.variants):   # domains follow the prompts
        assert parse_prompt(p).domain == ('general' if v == 'general' else 'physics')


@pytest.mark.parametrize('n, f', [(100, 0.2), (37, 0.0), (37, 1.0), (501, 0.33)])
def test_assign_variants_counts(n, f):
    v = assign_variants(n, f, rng=np.random.default_rng(0))
    assert len(v) == n and v.count('true') == round(n * f)


def test_eval_prompts_never_in_corpus(corpus):
    ev = eval_prompts()
    assert len(ev) == 64
    assert not ev & {_norm(p) for p in corpus.prompts}
    assert not ev & {_norm(p) for d in ('general', 'physics') for p in training_prompts(d, 2000, seed=11)}


def test_corpus_cache_is_exact(tmp_path):
    spec = CorpusSpec(size=10, seed=2)
    a, b = load_corpus(spec, tmp_path, progress=False), load_corpus(spec, tmp_path, progress=False)
    c = build_corpus(spec, progress=False)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.frames, c.frames) and a.prompts == c.prompts
    assert CorpusSpec(size=10, seed=3).key() != spec.key()


@pytest.mark.parametrize('domain, scenario', [('general', 'two_objects'), ('physics', 'collision')])
def test_multi_object_fraction_sets_two_object_share(domain, scenario):
    ps = training_prompts(domain, 60, seed=4, multi_fraction=0.6, world='full')   # squares and two-object general scenes: opt-in
    assert len(ps) == 60 and sum(parse_prompt(p).scenario == scenario for p in ps) == 36
    assert not eval_prompts() & {_norm(p) for p in ps}
    spec = CorpusSpec(size=40, multi_object_fraction=0.75, include_physics_train=False, seed=1, world='full')
    c = build_corpus(spec, progress=False)
    assert sum(parse_prompt(p).scenario in ('two_objects', 'collision') for p in c.prompts) == 30
    assert spec.key() != CorpusSpec(size=40, include_physics_train=False, seed=1, world='full').key()


def test_benchmark_world_is_the_default_corpus():
    "The default corpus is the benchmark world's: balls only, general scenes single-object, every scenario present."
    spec = CorpusSpec(size=60, include_physics_train=False, seed=2)
    c = build_corpus(spec, progress=False)
    pps = [parse_prompt(p) for p in c.prompts]
    assert spec.world == 'benchmark' and all(o['shape'] == 'ball' for pp in pps for o in pp.attributes['objects'])
    assert {pp.scenario for pp in pps if pp.domain == 'general'} == {'move', 'bounce_walls'}
    assert {pp.scenario for pp in pps if pp.domain == 'physics'} == {'drop', 'throw', 'collision'}
    with pytest.raises(ValueError, match="world='full'"): training_prompts('general', 10, seed=0, multi_fraction=0.5)


def test_unset_multi_object_fraction_keeps_cache_keys():
    "Corpora cached before the field existed are still found: None is left out of the hash."
    import hashlib
    d = {k: v for k, v in dataclasses.asdict(CorpusSpec(size=7)).items() if k != 'multi_object_fraction'}
    assert CorpusSpec(size=7).key() == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def test_bad_spec_raises():
    with pytest.raises(ValueError, match='multi_object_fraction'): CorpusSpec(multi_object_fraction=-0.1)
    with pytest.raises(ValueError, match='physics_true_fraction'): CorpusSpec(physics_true_fraction=1.5)
    with pytest.raises(ValueError, match='wrong_kinds'): CorpusSpec(wrong_kinds=('true',))


def test_loss_decreases_and_grads_reach_model_and_text(corpus):
    st, te = fresh()
    te.model.requires_grad_(True)
    pix, prompts = corpus.batch([0, 1, 70, 71])
    x0 = st.codec.encode(pix)
    g = torch.Generator().manual_seed(0)
    t = chunk_times(4, 4, st.preset.sigmas, 0.5, g)
    noise = torch.randn(x0.shape, generator=g)
    params = list(st.transformer.parameters()) + list(te.model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    losses = []
    for i in range(4):
        loss = flow_loss(st.model, te, x0, prompts, t, noise, object_weight=2.0)
        opt.zero_grad(); loss.backward()
        if i == 0:
            assert st.transformer.blocks[0].attn1.to_q.weight.grad.abs().sum() > 0
            assert te.model.shared.weight.grad.abs().sum() > 0
            assert te.model.encoder.block[0].layer[0].SelfAttention.q.weight.grad.abs().sum() > 0
        opt.step(); losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_flow_loss_plain_mse_without_object_weight(corpus):
    st, te = fresh()
    pix, prompts = corpus.batch([3, 80])
    x0 = st.codec.encode(pix)
    g = torch.Generator().manual_seed(1)
    t = chunk_times(2, 4, st.preset.sigmas, 0.0, g); noise = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        l = flow_loss(st.model, te, x0, prompts, t, noise)
        tf = t.repeat_interleave(3, 1)[:, None, :, None, None]
        emb, mask = te.encode(prompts)
        v = st.model.velocity((1 - tf) * x0 + tf * noise, t, x0, emb, mask)
        ref = ((v - (noise - x0)) ** 2).mean()
    assert torch.allclose(l, ref, rtol=1e-5)


def test_resume_is_bit_identical(corpus, tmp_path):
    cfg = PretrainConfig(iterations=2, batch_size=2, warmup=2, ckpt_every=0, sample_every=0, seed=4)
    PretrainRun.create(*fresh(), cfg, tmp_path/'a').train(corpus, progress=False)
    more = dataclasses.replace(cfg, iterations=4)
    r1 = PretrainRun.create(*fresh(), more, tmp_path/'a')
    assert r1.step == 2
    r1.train(corpus, progress=False)
    r2 = PretrainRun.create(*fresh(), more, tmp_path/'b').train(corpus, progress=False)
    assert r1.step == r2.step == 4
    for a, b in zip(list(r1.student.transformer.parameters()) + list(r1.text.model.parameters()),
                    list(r2.student.transformer.parameters()) + list(r2.text.model.parameters())):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(r1.ema_tensors(), r2.ema_tensors()))
    s1, s2 = r1.opt.state_dict()['state'], r2.opt.state_dict()['state']
    assert all(torch.equal(s1[k]['exp_avg_sq'], s2[k]['exp_avg_sq']) for k in s1)
    assert [h['loss'] for h in r1.history] == [h['loss'] for h in r2.history]
    # a save cut between its two renames leaves checkpoint.old, which load falls back to
    (tmp_path/'a'/'checkpoint').rename(tmp_path/'a'/'checkpoint.old')
    assert PretrainRun.create(*fresh(), more, tmp_path/'a').step == 4
    assert json.loads((tmp_path/'a'/'checkpoint.old'/'progress.json').read_text())['step'] == 4


def test_mean_target_changes_only_sigma1_chunk0_loss(corpus, tmp_path):
    "With mean_target the σ = 1 chunk-0 target is the prompt mean: a step whose chunk 0 is at σ = 1 differs, others match."
    import copy
    from afd_nb.corpus import prompt_means
    from afd_nb.pretrain import step_generator
    c = copy.copy(corpus); c.means = prompt_means(corpus, 6, k=2, cache_dir=tmp_path, progress=False)
    base = PretrainConfig(iterations=8, batch_size=2, warmup=2, ckpt_every=0, sample_every=0, seed=4)
    st = random_student('self_forcing', 0)
    # which steps draw σ = 1 for a clip's chunk 0 (the same draws as train_step: index, then chunk times)
    hits = []
    for k in range(8):
        g = step_generator(base.seed, k); torch.randint(len(c), (2,), generator=g)
        hits.append(bool((chunk_times(2, 4, st.preset.sigmas, base.sigma_mix, g)[:, 0] >= 1).any()))
    assert any(hits) and not all(hits)
    runs = [PretrainRun.create(*fresh(), dataclasses.replace(base, mean_target=m), tmp_path/f'm{m}') for m in (0, 2)]
    for r in runs: r.train(c, progress=False)
    for k, hit in enumerate(hits):
        same = runs[0].history[k]['loss'] == runs[1].history[k]['loss']
        assert same != hit or k > hits.index(True)   # equal up to the first σ = 1 step, which differs
    with pytest.raises(ValueError, match='prompt_means'):
        PretrainRun.create(*fresh(), dataclasses.replace(base, mean_target=2), tmp_path/'none').train(corpus, progress=False)


def test_training_times_follow_t_shift_not_the_sampling_shift(corpus, tmp_path):
    "The training schedule is `t_shift`'s: a student saved to sample at another shift trains identically."
    cfg = PretrainConfig(iterations=2, batch_size=2, warmup=1, ckpt_every=0, sample_every=0, seed=3)
    def losses(shift, t_shift, name):
        st, te = fresh()
        st.preset = dataclasses.replace(st.preset, shift=shift)
        r = PretrainRun.create(st, te, dataclasses.replace(cfg, t_shift=t_shift), tmp_path/name).train(corpus, progress=False)
        return [h['loss'] for h in r.history]
    base = losses(5.0, 1.0, 'a')
    assert losses(1.0, 1.0, 'b') == base          # the sampling shift does not enter training
    assert losses(5.0, 5.0, 'c') != base          # the training shift does
    with pytest.raises(ValueError, match='t_shift'): PretrainConfig(t_shift=0.0)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['self_forcing', 'causal_forcing'])
def test_shipped_student_quality(name):
    """Issue 25's targets on the eval prompts (one noise seed), sampled with the preset's few steps: a student that draws
    and follows the prompt like the teacher and is weak only on physics. Known to fail for the students shipped
    2026-12-07 on direction_ok and object_ok (and place_ok for self_forcing): see README, "Pretrained students"."""
    from afd_nb.core import data_samples_dir
    from afd_nb.evaluate import evaluate_clips, evaluate_student
    from afd_nb.teachers import load_prompts
    from afd_nb.video import Clip
    from afd_nb.world import render, scene_from_prompt
    if not (data_samples_dir()/'students'/name/'model.safetensors').exists(): pytest.skip(f'no shipped {name}')
    st = load_student(name, 'tiny', device='cpu')
    assert st.source != 'random' and st.text_path is not None   # the trained text encoder is loaded too
    prompts = load_prompts('general', 'eval') + load_prompts('physics', 'eval')
    h = evaluate_student(st, prompts, seed=123, progress=False).headline()
    teacher = evaluate_clips([Clip(render(scene_from_prompt(p, 123 + i), 32, 8.0, 24), 8.0, p) for i, p in enumerate(prompts)]).headline()
    assert h['general/found'] >= 0.95 and h['general/object_ok'] >= 0.95, h
    assert h['general/direction_ok'] >= 0.85 and h['general/place_ok'] >= 0.85, h
    assert abs(h['general/area'] / teacher['general/area'] - 1) <= 0.15, (h, teacher)
    assert h['physics/found'] >= 0.9 and 0.1 <= h['physics/law_ok'] <= 0.4, h
