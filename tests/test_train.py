"The AFD / SFT training loop (afd_nb.train) and its run state (afd_nb.run_state)."
import dataclasses, json, warnings
import numpy as np
import pytest, torch
from accelerate import Accelerator
from afd_nb.adapters import adapter_parameters
from afd_nb.run_state import latest_checkpoint, read_jsonl
from afd_nb.student import load_student
from afd_nb.teachers import CachedTeacher, PhysicsTeacher, load_teacher
from afd_nb.train import Trainer, TrainConfig, teacher_prompts

TINY = TrainConfig(iterations=4, batch_size=2, n_teacher_prompts=4, eval_every=0, ckpt_every=1)


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp('teacher_cache')


def student(name='causal_forcing'):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # "randomly initialised" while no pretrained student is shipped
        return load_student(name, 'tiny', device='cpu')   # CPU: the resume test is bit-exact there


def trainer(cache, out=None, cfg=TINY, name='causal_forcing', **kw):
    return Trainer(student(name), load_teacher('physics'), cfg, out, teacher_cache=cache, progress=False,
                   accelerator=Accelerator(cpu=True), **kw)


def fixed_batch(tr):
    idx = tr._draw_batch()
    emb, mask = tr.student.encode_prompts([tr.data.prompts[i] for i in idx])
    return idx, emb, mask


def test_config_errors_name_each_bad_value_and_the_allowed_ones():
    with pytest.raises(ValueError) as e:
        TrainConfig(method='ppo', baseline='median', batch_size=6, group_size=4, d_steps=-1, old_decay=2.0,
                    micro_batch=0, old_freeze=-2).validate()
    msg = str(e.value)
    for part in ("method='ppo': valid methods are afd, sft", "baseline='median': valid baselines are batch, prompt, prompt_global_std",
                 "d_steps=-1: must be an integer >= 0",
                 "old_decay=2.0: must be None (schedule) or in [0, 1]", "micro_batch=0: must be None or an integer >= 1",
                 "old_freeze=-2: must be an integer >= 0"):
        assert part in msg, msg
    with pytest.raises(ValueError, match="batch_size=6 must be a multiple of group_size=4"): TrainConfig(batch_size=6, group_size=4).validate()
    with pytest.raises(ValueError, match="method='ppo': valid methods are afd, sft, gan, dmd"): TrainConfig(method='ppo').validate()
    with pytest.raises(ValueError, match="reward='oracle': valid rewards are discriminator, world, world_law, darkness, random"):
        TrainConfig(reward='oracle').validate()
    with pytest.raises(ValueError, match="d_steps=0 leaves the discriminator untrained"): TrainConfig(d_steps=0).validate()
    TrainConfig(d_steps=0, reward='darkness').validate()
    with pytest.raises(ValueError, match="loss_space='pixel': valid loss_spaces are velocity, x0"): TrainConfig(loss_space='pixel').validate()
    with pytest.raises(ValueError, match="lora_targets='ffn': valid lora_targets are all, cross_attention"):
        TrainConfig(lora_targets='ffn').validate()
    with pytest.raises(ValueError, match="baseline='prompt_global_std' needs group_size >= 2"):
        TrainConfig(baseline='prompt_global_std').validate()
    with pytest.raises(ValueError, match="group_size >= 2"): TrainConfig(baseline='prompt').validate()
    TrainConfig(baseline='prompt', group_size=2).validate()
    for m in ('sft', 'gan', 'dmd'):   # only AFD weighs rollouts against a per-prompt baseline
        TrainConfig(method=m, baseline='prompt', batch_size=6, group_size=4).validate()


def test_afd_batches_are_groups_and_sft_batches_distinct_clips(cache):
    cfg = dataclasses.replace(TINY, batch_size=4, group_size=2, baseline='prompt')
    idx = trainer(cache, cfg=cfg)._draw_batch()
    assert len(idx) == 4 and idx[0] == idx[1] and idx[2] == idx[3] and idx[0] != idx[2]
    idx = trainer(cache, cfg=dataclasses.replace(cfg, method='sft'))._draw_batch()
    assert len(idx) == 4 and len(set(idx)) == 4


def test_gradients_reach_the_default_adapter_only(cache):
    tr = trainer(cache)
    idx, emb, mask = fixed_batch(tr)
    x0, y_S = tr.rollout(emb, mask)
    assert y_S.shape == (2, 3, 24, 32, 32) and x0.shape == (2, 96, 12, 8, 8)
    for out in (tr.afd_losses(x0, emb, mask, torch.tensor([0.8, 0.3])), tr.sft_losses(x0, emb, mask)):
        tr.opt.zero_grad(set_to_none=True)
        out['loss'].backward()
        named = dict(tr.student.transformer.named_parameters())
        with_grad = {n for n, p in named.items() if p.grad is not None and p.grad.abs().sum() > 0}
        default = {n for n in named if '.lora_' in n and '.default.' in n}
        # lora_A gets no gradient while lora_B = 0 (peft's init): the B half of every layer must have one
        assert with_grad and with_grad <= default and {n for n in default if 'lora_B' in n} <= with_grad
        assert all(p.grad is None for n, p in named.items() if n not in default)   # backbone and `old`
        assert all(p.grad is None for p in tr.student.text.parameters())
        assert all(p.grad is None for p in tr.D_raw.parameters())
        assert {id(p) for p in tr.params} == {id(named[n]) for n in default}


def test_resume_after_k_iterations_is_bit_identical(cache, tmp_path):
    full = trainer(cache, tmp_path/'full'); full.fit()
    trainer(cache, tmp_path/'cut').fit(stop_after=2)
    assert latest_checkpoint(tmp_path/'cut'/'checkpoints').name == 'step_000002'
    resumed = trainer(cache, tmp_path/'cut'); resumed.fit()
    assert resumed.resumed_from.name == 'step_000002' and resumed.step == full.step == 4
    for name in ('default', 'old'):
        a, b = (adapter_parameters(t.student.transformer, name) for t in (full, resumed))
        assert len(a) == len(b) and all(torch.equal(p, q) for p, q in zip(a, b))
    assert all(torch.equal(p, q) for p, q in zip(full.D_raw.parameters(), resumed.D_raw.parameters()))
    assert full.rng.get_state().equal(resumed.rng.get_state())
    keys = ('loss', 'nft', 'prior', 'd_loss', 'r_mean', 'grad_norm')
    strip = lambda rows: [{k: r[k] for k in keys} for r in rows]
    assert strip(read_jsonl(tmp_path/'full'/'metrics.jsonl')) == strip(read_jsonl(tmp_path/'cut'/'metrics.jsonl'))
    # the old adapter moved away from its start (the EMA runs) and differs from default once d > 0
    assert not all(torch.equal(p, q) for p, q in zip(*(adapter_parameters(full.student.transformer, n) for n in ('default', 'old'))))


def test_a_checkpoint_written_before_a_setting_existed_resumes_with_its_default(cache, tmp_path):
    trainer(cache, tmp_path, dataclasses.replace(TINY, iterations=1)).fit()
    f = latest_checkpoint(tmp_path/'checkpoints')/'state.json'
    state = json.loads(f.read_text())
    for k in ('reward', 'noise_draws'): del state['config'][k]   # as saved by an older version of the kit
    f.write_text(json.dumps(state))
    tr = trainer(cache, tmp_path, dataclasses.replace(TINY, iterations=2)); tr.fit()
    assert tr.resumed_from is not None and tr.step == 2
    with pytest.raises(ValueError, match="noise_draws: checkpoint 1, now 2"):
        trainer(cache, tmp_path, dataclasses.replace(TINY, iterations=3, noise_draws=2)).fit()


def test_noise_draws_repeat_each_rollout_in_the_student_step(cache):
    with pytest.raises(ValueError, match="noise_draws=0: must be an integer >= 1"): TrainConfig(noise_draws=0).validate()
    tr = trainer(cache, cfg=dataclasses.replace(TINY, iterations=1, noise_draws=3))
    sizes = []
    orig = tr.afd_losses
    tr.afd_losses = lambda x0, emb, mask, r, groups=None, **kw: (sizes.append(x0.shape[0]), orig(x0, emb, mask, r, groups, **kw))[1]
    row = tr.fit()[-1]
    assert sizes == [3 * TINY.batch_size] and np.isfinite(row['loss'])


def test_shared_noise_cancels_the_noise_of_identical_rollouts(cache):
    """Two copies of one rollout with weights r, 1 - r: at θ = θ_old the (E9) gradient is 2(2r-1)(v_old - v) per copy,
    so it cancels exactly when the copies share (t, ε) (common random numbers) and not when each draws its own."""
    tr = trainer(cache, cfg=dataclasses.replace(TINY, beta=1.0, prior_weight=0.0, shared_noise=True))
    idx, emb, mask = fixed_batch(tr)
    x0, _ = tr.rollout(emb[:1], mask[:1])
    x0, emb, mask, r = x0.repeat(2, 1, 1, 1, 1), emb[:1].repeat(2, 1, 1), mask[:1].repeat(2, 1), torch.tensor([0.8, 0.2])
    norms = {}
    for groups in (None, [0, 0]):
        tr.opt.zero_grad(set_to_none=True)
        tr.afd_losses(x0, emb, mask, r, groups)['loss'].backward()
        norms[groups is None] = torch.cat([p.grad.flatten() for p in tr.params if p.grad is not None]).norm().item()
    assert norms[True] > 1e-4 and norms[False] < 1e-6 * norms[True], norms
    with pytest.raises(ValueError, match="groups has 3 keys for 2 samples"): tr.afd_losses(x0, emb, mask, r, [0, 0, 1])


def test_checkpoint_holds_peft_adapters_optimisers_rng_and_state(cache, tmp_path):
    tr = trainer(cache, tmp_path, dataclasses.replace(TINY, iterations=1)); tr.fit()
    ck = latest_checkpoint(tmp_path/'checkpoints')
    names = {p.name for p in ck.iterdir()}
    assert {'adapter_default', 'adapter_old', 'discriminator.safetensors', 'optimizer_student.pt',
            'optimizer_discriminator.pt', 'rng_0.pt', 'state.json', 'metrics.jsonl'} <= names
    assert (ck/'adapter_default'/'adapter_model.safetensors').exists() and (ck/'adapter_default'/'adapter_config.json').exists()
    state = json.loads((ck/'state.json').read_text())
    assert state['step'] == 1 and state['config']['method'] == 'afd' and len(state['prompts']) == 4
    assert not any(k.startswith('text_encoder.') for k in __import__('safetensors.torch').torch.load_file(ck/'discriminator.safetensors'))
    assert (tmp_path/'curves.png').stat().st_size > 0 and not list((tmp_path/'checkpoints').glob('.tmp-*'))


def _repeat_steps(tr, loss_fn, n=4):
    "Loss on one fixed batch (same t and noise each time) over n student steps."
    state, out = tr.rng.get_state(), []
    for _ in range(n):
        tr.rng.set_state(state)
        o = loss_fn()
        out.append(float(o['loss'].detach()))
        tr.student_step(o['loss'])
    return out


def test_afd_and_sft_steps_decrease_their_loss_on_a_fixed_batch(cache):
    cfg = dataclasses.replace(TINY, lr=3e-3, prior_weight=1e-4)
    tr = trainer(cache, cfg=cfg)
    idx, emb, mask = fixed_batch(tr)
    x0, _ = tr.rollout(emb, mask)
    r = torch.tensor([0.9, 0.2])
    afd = _repeat_steps(tr, lambda: tr.afd_losses(x0, emb, mask, r))
    assert all(np.isfinite(afd)) and afd[-1] < afd[0], afd
    y_T = tr.data.videos(idx)
    xT = tr.student.codec.encode(y_T)
    sft = _repeat_steps(tr, lambda: tr.sft_losses(xT, emb, mask))
    assert all(np.isfinite(sft)) and sft[-1] < sft[0], sft


def test_sft_iteration_has_no_rollouts_and_logs_finite_metrics(cache):
    tr = trainer(cache, cfg=dataclasses.replace(TINY, method='sft', iterations=1), name='self_forcing')
    row = tr.fit()[-1]
    assert row['method'] == 'sft' and row['iteration'] == 1 and 'd_loss' not in row
    assert all(np.isfinite(row[k]) for k in ('loss', 'fm', 'prior', 'grad_norm', 'time_s'))


@pytest.mark.parametrize('reward, key', [('world', None), ('world_law', 'law_ok')])
def test_oracle_reward_weights_follow_the_world_score(cache, reward, key):
    """reward='world': the weights (E7) are a monotone map of the world's exact physics_score of each rollout;
    'world_law': of its per-clip law_ok alone (1: the world's gravity and first bounce; 0 without a fit)."""
    from afd_nb.evaluate import world_scores
    tr = trainer(cache, cfg=dataclasses.replace(TINY, reward=reward, batch_size=4))
    idx, emb, mask = fixed_batch(tr)
    prompts = [tr.data.prompts[i] for i in idx]
    y_T = tr.data.videos(idx)
    y = torch.cat([y_T[:2], torch.ones_like(y_T[2:])])   # two teacher clips (true law), two blank (white) clips
    r, stats, _ = tr.weights(y, prompts, idx)
    w = world_scores(y, prompts, tr.fmt['fps'], key=key)
    assert (w[:2] > 0.9).all() and (w[2:] == 0).all() and abs(stats['world_mean'] - float(w.mean())) < 1e-6
    assert (r[:2] > 0.5).all() and (r[2:] < 0.5).all() and 'd_world_corr' in stats


def test_world_score_argument_replaces_the_oracle(cache):
    "Trainer(world_score=f): reward='world' weights follow f (here each clip's darkness), called once per batch."
    calls = []
    def darkness(pixels, prompts, fps):
        calls.append((tuple(pixels.shape), len(prompts), fps)); return (1 - pixels.float()).mean((1, 2, 3, 4))
    tr = trainer(cache, cfg=dataclasses.replace(TINY, reward='world', batch_size=4), world_score=darkness)
    idx, emb, mask = fixed_batch(tr)
    y = tr.data.videos(idx)
    y = torch.cat([y[:2], -torch.ones_like(y[2:])])   # two teacher clips, two black clips
    r, stats, _ = tr.weights(y, [tr.data.prompts[i] for i in idx], idx)
    assert calls == [(tuple(y.shape), 4, tr.fmt['fps'])]
    assert (r[2:] > 0.5).all() and (r[:2] < 0.5).all() and abs(stats['world_mean'] - float(darkness(y, [], 0).mean())) < 1e-6


def test_teacher_is_asked_once_then_served_from_the_cache(tmp_path):
    calls = []
    class Counting(PhysicsTeacher):
        def sample(self, prompts, seed):
            calls.append(len(prompts)); return super().sample(prompts, seed)
    cfg = dataclasses.replace(TINY, iterations=0)
    for _ in range(2): Trainer(student(), Counting(), cfg, None, teacher_cache=tmp_path, progress=False, accelerator=Accelerator(cpu=True))
    assert calls == [4]


def test_errors_name_the_problem(cache, tmp_path):
    s = student(); s.add_adapters()
    with pytest.raises(ValueError, match="already has adapters"):
        Trainer(s, load_teacher('physics'), TINY, None, teacher_cache=cache, accelerator=Accelerator(cpu=True))
    with pytest.raises(ValueError, match="n_teacher_prompts=999 but only 64 prompts"):
        teacher_prompts(load_teacher('physics'), 999)
    trainer(cache, tmp_path, dataclasses.replace(TINY, iterations=1)).fit()
    with pytest.raises(ValueError, match=r"other settings \(beta: checkpoint 0.1, now 0.5\)"):
        trainer(cache, tmp_path, dataclasses.replace(TINY, beta=0.5))
    trainer(cache, tmp_path, dataclasses.replace(TINY, iterations=2, eval_every=0))   # RESUMABLE keys may change
    with pytest.raises(ValueError, match=r"teacher: checkpoint 'physics:64x64@16fps:48f', now 'physics:48x48@16fps:48f'"):
        Trainer(student(), PhysicsTeacher(size=48), dataclasses.replace(TINY, iterations=2), tmp_path,
                teacher_cache=cache, progress=False, accelerator=Accelerator(cpu=True))
    from afd_nb.train import TeacherClips
    with pytest.raises(ValueError, match="at least one prompt"):
        TeacherClips(load_teacher('physics'), [], 0, dict(size=(32, 32), fps=8.0, num_frames=24), cache)


def test_a_discriminator_with_its_own_pixel_format_trains_and_resumes(cache, tmp_path):
    "The VideoScorer interface: a (tiny) VideoAlign discriminator at 16x16, 4 fps, 12 frames; clips are conformed to it."
    from afd_nb.videoalign import VideoAlignRewardModel, VideoAlignDiscriminator
    def D(): return VideoAlignDiscriminator(VideoAlignRewardModel.tiny(output_dim=3), lora_r=4, lora_alpha=8,
                                            pixel_format=dict(size=(16, 16), fps=4.0, num_frames=12))
    cfg = dataclasses.replace(TINY, iterations=1)
    a = trainer(cache, tmp_path, cfg, discriminator=D())
    row = a.fit()[-1]
    assert a.d_fmt['size'] == (16, 16) and a.d_data is not a.data and np.isfinite(row['d_loss'])
    b = trainer(cache, tmp_path, cfg, discriminator=D())
    from afd_nb.train import disc_parameters
    assert b.resumed_from is not None
    assert all(torch.equal(p, q) for p, q in zip(disc_parameters(a.D_raw), disc_parameters(b.D_raw)))


def test_world_reward_scores_the_rollouts_in_the_students_own_format(cache):
    "With a D of its own pixel format, the world's oracle still scores the rollouts as the student made them."
    from afd_nb.videoalign import VideoAlignRewardModel, VideoAlignDiscriminator
    D = VideoAlignDiscriminator(VideoAlignRewardModel.tiny(output_dim=3), lora_r=4, lora_alpha=8,
                                pixel_format=dict(size=(16, 16), fps=4.0, num_frames=12))
    calls = []
    def darkness(pixels, prompts, fps):
        calls.append((tuple(pixels.shape[2:]), fps)); return (1 - pixels.float()).mean((1, 2, 3, 4))
    tr = trainer(cache, cfg=dataclasses.replace(TINY, reward='world', iterations=1), discriminator=D, world_score=darkness)
    tr.fit()
    assert calls == [((24, 32, 32), 8.0)]   # not D's 12 frames of 16x16 at 4 fps


@pytest.mark.slow
@pytest.mark.parametrize('args, message', [
    (['-p', 'student', 'wan'], "unknown student 'wan'; valid students: self_forcing, causal_forcing"),
    (['-p', 'method', 'ppo'], "unknown method 'ppo'; valid methods: afd, sft"),
    (['-p', 'teacher', 'nope'], "unknown teacher 'nope'; valid teachers: physics, samples, folder:<path>"),
    (['-p', 'size', 'real'], "size='real' needs the causal_forcing checkpoint: set `causal_forcing_ckpt`"),
    (['-p', 'teacher', 'samples'], "n_teacher_prompts=64 but only 8 prompts are available"),
    (['-p', 't_shift', '-2'], "t_shift=-2: 0 (the preset's shift) or a number > 0"),
])
def test_the_main_job_stops_in_its_first_cell_with_a_clear_message(tmp_path, args, message):
    "papermill nbs/train_afd.ipynb with a bad value fails before loading anything, naming the problem."
    import subprocess, sys
    from afd_nb.core import repo_root
    env = dict(__import__('os').environ, AFD_CAUSAL_FORCING_CKPT='')
    p = subprocess.run([sys.executable, '-m', 'papermill', str(repo_root()/'nbs'/'train_afd.ipynb'), str(tmp_path/'o.ipynb'),
                        *args, '-p', 'out_dir', str(tmp_path/'run')], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode != 0 and message in p.stdout + p.stderr, (p.stdout + p.stderr)[-2000:]
    assert not (tmp_path/'run').exists()


def test_a_run_does_not_resume_on_other_student_weights(cache, tmp_path):
    trainer(cache, tmp_path, dataclasses.replace(TINY, iterations=1)).fit()
    s = student(); s.source = '/elsewhere/pretrained'   # e.g. a pretrained student shipped after a random-student run
    with pytest.raises(ValueError, match="student_source: checkpoint '.*', now '/elsewhere/pretrained'"):
        Trainer(s, load_teacher('physics'), TINY, tmp_path, teacher_cache=cache, accelerator=Accelerator(cpu=True))


# --- issue 26: an update that follows a reward -------------------------------------------------------------------

def _captured_grads(tr, x0, emb, mask, r):
    "The accumulated gradient of each optimizer step of `_student_updates`, captured instead of stepping."
    grads = []
    tr.opt.step = lambda: grads.append([p.grad.clone() for p in tr.params])
    tr._student_updates(x0, emb, mask, r)
    return grads


def test_accumulation_over_micro_batches_gives_the_one_pass_gradient(cache):
    "4 rollouts x 2 draws in passes of 1, 3 or all 8 rows: one optimizer step with the same gradient."
    out = {}
    for micro in (None, 1, 3):
        tr = trainer(cache, cfg=dataclasses.replace(TINY, batch_size=4, noise_draws=2, micro_batch=micro))
        idx, emb, mask = fixed_batch(tr)
        x0, _ = tr.rollout(emb, mask)
        out[micro] = _captured_grads(tr, x0, emb, mask, torch.tensor([0.9, 0.2, 0.6, 0.4]))
    assert len(out[None]) == len(out[1]) == len(out[3]) == 1
    assert max(float(g.abs().max()) for g in out[None][0]) > 0
    for micro in (1, 3):
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(out[None][0], out[micro][0])), micro


def test_minibatches_are_separate_steps_and_old_policy_moves_once_after_them(cache):
    """minibatch_size 1 of a batch of 2: two optimizer steps; θ_old is the same at both and becomes
    d θ_old + (1 - d) θ after the second (d = old_decay); the schedule counts optimizer steps."""
    tr = trainer(cache, cfg=dataclasses.replace(TINY, minibatch_size=1, old_decay=0.25, lr=1e-3))
    old0 = [p.clone() for p in adapter_parameters(tr.student.transformer, 'old')]
    seen, step = [], tr.opt.step
    def spy(*a, **k):
        seen.append([p.clone() for p in adapter_parameters(tr.student.transformer, 'old')]); return step(*a, **k)
    tr.opt.step = spy
    row = tr.iteration()
    theta = [p.detach() for p in adapter_parameters(tr.student.transformer, 'default')]
    assert len(seen) == 2 and all(torch.equal(a, b) for s in seen for a, b in zip(s, old0))
    assert not all(torch.equal(a, b) for a, b in zip(old0, theta))
    assert all(torch.allclose(o, 0.25 * a + 0.75 * b) for o, a, b in zip(adapter_parameters(tr.student.transformer, 'old'), old0, theta))
    assert row['old_decay'] == 0.25
    sched = trainer(cache, cfg=dataclasses.replace(TINY, minibatch_size=1, old_decay_rate=0.1, old_decay_flat=1))
    assert sched.cfg.steps_per_iteration == 2 and sched.iteration()['old_decay'] == pytest.approx(0.1)   # (2 - 1) * 0.1


def test_old_freeze_keeps_the_base_old_policy_for_its_iterations(cache):
    tr = trainer(cache, cfg=dataclasses.replace(TINY, old_freeze=1, lr=1e-3))
    old0 = [p.clone() for p in adapter_parameters(tr.student.transformer, 'old')]
    assert tr.iteration()['old_decay'] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(adapter_parameters(tr.student.transformer, 'old'), old0))
    assert tr.iteration()['old_decay'] < 1
    assert not all(torch.equal(a, b) for a, b in zip(adapter_parameters(tr.student.transformer, 'old'), old0))


def test_metrics_hold_the_time_of_each_part(cache, tmp_path):
    tr = trainer(cache, tmp_path, dataclasses.replace(TINY, iterations=1, eval_every=1, eval_prompts=1))
    tr.fit()
    rows = read_jsonl(tmp_path/'metrics.jsonl')
    train, ev = [r for r in rows if r['kind'] == 'train'], [r for r in rows if r['kind'] == 'eval']
    keys = ('time_rollout', 'time_d', 'time_reward', 'time_student')
    assert all(train[0][k] > 0 for k in keys) and sum(train[0][k] for k in keys) <= train[0]['time_s']
    assert len(ev) == 2 and all(r['time_eval'] > 0 for r in ev)


def test_rollouts_go_in_calls_of_rollout_batch_prompts(cache):
    tr = trainer(cache, cfg=dataclasses.replace(TINY, batch_size=4, rollout_batch=3))
    idx, emb, mask = fixed_batch(tr)
    calls, orig = [], tr.student.model.rollout
    tr.student.model.rollout = lambda e, **kw: (calls.append(e.shape[0]), orig(e, **kw))[1]
    x0, y_S = tr.rollout(emb, mask)
    assert calls == [3, 1] and x0.shape[0] == y_S.shape[0] == 4


def test_sigmas_each_trains_every_chunk_at_each_level_once(cache):
    tr = trainer(cache, cfg=dataclasses.replace(TINY, t_dist='sigmas_each'))
    S, b = tr.student.preset.sigmas, tr.student.model.block_size
    t, noise = tr._draw_t_noise(torch.zeros(3, 96, 12, 8, 8), draws=len(S))
    assert t.shape == (3 * len(S), 12) and noise.shape == (3 * len(S), 96, 12, 8, 8)
    per = t.view(3, len(S), 12)[:, :, ::b]   # [sample, draw, chunk]
    assert all(sorted(per[i, :, k].tolist()) == sorted(torch.tensor(S).tolist()) for i in range(3) for k in range(per.shape[2]))


def test_train_levels_keeps_the_noisiest_levels(cache):
    "train_levels=N: every chunk trains at the sampler's first N levels only, each once per N draws; N too large is refused."
    tr = trainer(cache, cfg=dataclasses.replace(TINY, t_dist='sigmas_each', train_levels=2))
    S, b = tr.student.preset.sigmas, tr.student.model.block_size
    t, _ = tr._draw_t_noise(torch.zeros(3, 96, 12, 8, 8), draws=4)
    per = t.view(3, 4, 12)[:, :, ::b]
    assert all(sorted(per[i, :, k].tolist()) == sorted(list(S[:2]) * 2) for i in range(3) for k in range(per.shape[2]))
    tr.cfg.train_levels = len(S) + 1
    with pytest.raises(ValueError, match='train_levels'): tr._draw_t_noise(torch.zeros(1, 96, 12, 8, 8))


def test_check_rewards_darkness_random_and_law_logging(cache):
    "reward='darkness' ranks a black clip above a white one; 'random' draws U(0, 1) from the training RNG; d_steps=0 leaves D alone."
    tr = trainer(cache, cfg=dataclasses.replace(TINY, reward='darkness', batch_size=4, d_steps=0))
    idx, emb, mask = fixed_batch(tr)
    y = torch.cat([torch.ones(2, 3, 24, 32, 32), -torch.ones(1, 3, 24, 32, 32), torch.zeros(1, 3, 24, 32, 32)])
    r, stats, _ = tr.weights(y, [tr.data.prompts[i] for i in idx], idx)
    assert stats['world_mean'] == pytest.approx((0 + 0 + 1 + 0.5) / 4) and 'd_world_corr' not in stats
    assert r[2] > r[3] > 0.5 > r[0] == r[1]
    d0 = [p.clone() for p in tr.D_raw.parameters()]
    row = tr.iteration()
    assert 'd_loss' not in row and all(torch.equal(a, b) for a, b in zip(d0, tr.D_raw.parameters()))
    rnd = trainer(cache, cfg=dataclasses.replace(TINY, reward='random', batch_size=4, log_law=2))
    state = rnd.rng.get_state()
    s1, e1 = rnd._scores(y, ['p'] * 4)
    rnd.rng.set_state(state); s2, _ = rnd._scores(y, ['p'] * 4)
    assert torch.equal(s1, s2) and ((s1 >= 0) & (s1 <= 1)).all() and len(set(s1.tolist())) == 4 and 'law_ok' not in e1
    rows = [rnd.iteration() for _ in range(2)]
    assert 'law_ok' not in rows[0] and 0 <= rows[1]['law_ok'] <= 1 and 'd_world_corr' in rows[1]


def test_x0_loss_space_weighs_each_frame_by_t_squared(cache):
    "loss_space='x0' (both anchors): the same rollout, t and noise give the velocity loss's terms times t² per frame."
    tr = trainer(cache, cfg=dataclasses.replace(TINY, loss_space='x0', t_dist='sigmas', prior_weight=1.0))
    idx, emb, mask = fixed_batch(tr)
    x0, _ = tr.rollout(emb, mask)
    t, noise = tr._draw_t_noise(x0)
    r = torch.tensor([0.7, 0.3])
    x0_out = tr.afd_losses(x0, emb, mask, r, t=t, noise=noise)
    tr.cfg.loss_space = 'velocity'
    t_one = torch.full_like(t, float(t.max()))   # with one t everywhere the two differ by exactly t²
    a = tr.afd_losses(x0, emb, mask, r, t=t_one, noise=noise)
    tr.cfg.loss_space = 'x0'
    b = tr.afd_losses(x0, emb, mask, r, t=t_one, noise=noise)
    assert b['nft'] == pytest.approx(a['nft'] * float(t.max()) ** 2, rel=1e-4) and np.isfinite(x0_out['nft'])


def test_anchor_rollouts_add_the_reference_prior_to_the_same_step(cache):
    """anchor_prompts: each step's gradient is that of the reward's loss plus anchor_weight × ∇(E10) on the anchor
    rollouts, at their own (t, ε) drawn after the main rows'; asking for more anchors than prompts is refused."""
    cfg = dataclasses.replace(TINY, anchor_prompts=2, anchor_weight=3.0, t_dist='sigmas_each', train_levels=2, grad_clip=0.0)
    tr = trainer(cache, cfg=cfg, anchors=['a red ball moves to the right', 'a blue ball moves to the left', 'a ball'])
    with torch.no_grad():   # move the adapter off the reference, else (E10) and its gradient are 0
        for p in adapter_parameters(tr.student.transformer, 'default'): p.add_(0.05 * torch.randn_like(p))
    idx, emb, mask = fixed_batch(tr)
    x0, _ = tr.rollout(emb, mask)
    xa, ea, ma = tr._anchor_rollouts()
    assert xa.shape[0] == 2 and xa.shape[1:] == x0.shape[1:]
    r, state, grads = torch.tensor([0.8, 0.3]), tr.rng.get_state(), []
    tr.opt.step = lambda: grads.append([p.grad.clone() for p in tr.params])
    row = tr._student_updates(x0, emb, mask, r, None, (xa, ea, ma))
    tr.rng.set_state(state)
    tr._student_updates(x0, emb, mask, r)                      # the main rows alone, same draws
    t, noise = tr._draw_t_noise(xa, None, cfg.noise_draws)      # the anchors' draws come next
    out = tr.anchor_losses(xa, ea, ma, t=t, noise=noise)
    tr.acc.backward(out['loss'])
    g_anchor = [p.grad.clone() for p in tr.params]
    assert row['anchor'] == pytest.approx(out['anchor'], rel=1e-5) and float(out['loss'].detach()) == pytest.approx(3.0 * out['anchor'], rel=1e-5)
    assert max(float(g.abs().max()) for g in g_anchor) > 0
    assert all(torch.allclose(a, b + c, rtol=1e-4, atol=1e-8) for a, b, c in zip(grads[0], grads[1], g_anchor))
    with pytest.raises(ValueError, match='anchor_prompts=2 but only 1 anchor prompts'):
        trainer(cache, cfg=cfg, anchors=['a ball'])


def test_lora_targets_cross_attention_trains_only_the_cross_attention(cache):
    tr = trainer(cache, cfg=dataclasses.replace(TINY, lora_targets='cross_attention'))
    names = [n for n, p in tr.student.transformer.named_parameters() if p.requires_grad]
    assert names and all('.attn2.' in n and '.lora_' in n and '.default.' in n for n in names)
    full = trainer(cache)
    assert len(full.params) > len(tr.params)


def test_grad_checkpointing_gives_the_same_step(cache, monkeypatch):
    "Recomputing each block in the backward changes memory, not the gradient (lora_B made nonzero: lora_A's count too)."
    grads, calls, inner = [], [], torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', lambda *a, **kw: calls.append(1) or inner(*a, **kw))
    for ckpt in (False, True):
        tr = trainer(cache, cfg=dataclasses.replace(TINY, grad_checkpointing=ckpt, grad_clip=0.0))
        assert tr.student.transformer.gradient_checkpointing == ckpt
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for n, p in tr.student.transformer.named_parameters():
                if '.lora_B.default.' in n: p.copy_(torch.randn(p.shape, generator=g) * 1e-2)
        idx, emb, mask = fixed_batch(tr)
        x0 = tr.rollout(emb, mask, decode=False)[0]   # the same seed: the same rollouts and (t, ε) in both runs
        n_before = len(calls)
        tr.afd_losses(x0, emb, mask, torch.linspace(0.2, 0.8, len(idx)))['loss'].backward()
        assert (len(calls) > n_before) == ckpt          # the blocks went through torch.utils.checkpoint only when asked
        grads.append(torch.cat([p.grad.flatten() for p in tr.params]))
    assert (grads[0] != 0).float().mean() > 0.5   # lora_A and lora_B both get gradients
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-9)


def test_teacher_rerender_redraws_the_teacher_clips_with_the_reference_student(cache):
    from afd_nb.adapters import current_view
    tr = trainer(cache, cfg=dataclasses.replace(TINY, teacher_rerender=0.625))
    idx, emb, mask = fixed_batch(tr)
    y_T = tr.data.videos(idx)
    with torch.no_grad():   # move θ off the reference: the re-draw must not depend on it
        for p in adapter_parameters(tr.student.transformer, 'default'): p.add_(0.1)
    a, b = tr.rerender_teacher(y_T, emb, mask), tr.rerender_teacher(y_T, emb, mask)
    assert a.shape == y_T.shape and torch.equal(a, b) and current_view(tr.student.transformer) == 'default'
    assert (a - y_T).abs().mean() > 0.01            # redrawn, not copied
    tr.step += 1
    assert not torch.equal(tr.rerender_teacher(y_T, emb, mask), a)   # new noise each iteration
    tr.step -= 1
    with tr.student.view('ref'):   # exactly the reference student's SDEdit rollout from σ 0.625 with that noise
        g = torch.Generator().manual_seed(0x5DED17 + tr.cfg.seed * 1_000_003)
        ref = tr.student.model.rollout(emb, generator=g, text_mask=mask, init=tr.student.codec.encode(y_T), sigmas=[0.625])
    assert torch.allclose(a, tr.student.codec.decode(ref).clamp(-1, 1), atol=1e-6)
    seen, d_update = {}, tr.d_update   # the iteration hands D the re-drawn clips of its batch
    tr.d_update = lambda y_T, y_S, ps: seen.update(y_T=y_T, ps=ps) or d_update(y_T, y_S, ps)
    tr._draw_batch = lambda: idx
    row = tr.iteration()
    assert torch.equal(seen['y_T'], a) and row['time_rerender'] > 0 and np.isfinite(row['d_loss'])
    with pytest.raises(ValueError, match='teacher_rerender'): TrainConfig(teacher_rerender=1.0).validate()


def test_the_job_parameter_block_is_the_config_source():
    "Every parameter of nbs/train_afd.ipynb's block is a name job_params knows; the config built from it equals the block."
    import pathlib
    from afd_nb.trainer import JOB_ONLY, JOB_NONE, JOB_RENAMED, job_params
    nb = json.loads((pathlib.Path(__file__).parents[1]/'nbs'/'train_afd.ipynb').read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    block = {}
    exec(''.join(cell['source']), block)
    block = {k: v for k, v in block.items() if not k.startswith('_')}
    assert job_params(dict(block, Path=None, np=None)) == block   # nothing in the block is left out, nothing else taken
    block.update(teacher_rerender=0.625, inspect_every=40)   # the job resolves their automatic -1 before building the config
    cfg = TrainConfig.from_job(block).to_dict()
    for k, v in block.items():
        if k in JOB_ONLY: continue
        assert cfg[JOB_RENAMED.get(k, k)] == (None if JOB_NONE.get(k, object()) == v else v), k
    with pytest.raises(ValueError, match="unknown parameter.s. d_learning_rate; valid parameters: .*d_lr"):
        TrainConfig.from_job(dict(block, d_learning_rate=1.0))
