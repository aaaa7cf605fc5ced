"The paper's adversarial baselines (afd_nb.baselines) in the training loop: GAN and score-free DMD."
import dataclasses, warnings
import pytest, torch
import torch.nn.functional as F
from accelerate import Accelerator
from afd_nb.adapters import adapter_parameters
from afd_nb.baselines import (FakeScore, dmd_classifier_loss, dmd_critic_losses, dmd_generator_loss, dmd_noised, frozen,
                              gan_generator_loss, train_rollout)
from afd_nb.discriminator import bt_loss
from afd_nb.run_state import latest_checkpoint, read_jsonl
from afd_nb.student import load_student
from afd_nb.teachers import load_teacher
from afd_nb.train import Trainer, TrainConfig

TINY = TrainConfig(iterations=3, batch_size=2, n_teacher_prompts=4, eval_every=0, ckpt_every=1)


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp('teacher_cache')


def trainer(cache, method, out=None, **cfg):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        st = load_student('causal_forcing', 'tiny', device='cpu')
    return Trainer(st, load_teacher('physics'), dataclasses.replace(TINY, method=method, **cfg), out, teacher_cache=cache,
                   progress=False, accelerator=Accelerator(cpu=True))


def batch(tr):
    idx = tr._draw_batch()
    prompts = [tr.data.prompts[i] for i in idx]
    return prompts, *tr.student.encode_prompts(prompts), tr.data.videos(idx)


def grads(module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_losses_on_random_tensors_are_method_md():
    g = torch.Generator().manual_seed(0)
    d_s, d_t = torch.randn(16, generator=g), torch.randn(16, generator=g)
    # GAN: the student's clip should win its Bradley-Terry pair, (E4) with the roles swapped
    assert torch.allclose(gan_generator_loss(d_s, d_t), -torch.log(torch.sigmoid(d_s - d_t)).mean())
    assert torch.allclose(gan_generator_loss(d_s, d_t), bt_loss(d_s, d_t)) and gan_generator_loss(d_t + 5, d_t) < 0.01
    # score-free DMD: the head calls teacher 1, student 0; the generator wants its rollouts called 1
    l_t, l_s = torch.randn(16, generator=g), torch.randn(16, generator=g)
    want = -(torch.log(torch.sigmoid(l_t)).mean() + torch.log(1 - torch.sigmoid(l_s)).mean())
    assert torch.allclose(dmd_classifier_loss(l_t, l_s), want, atol=1e-6)
    assert torch.allclose(dmd_generator_loss(l_s), -torch.log(torch.sigmoid(l_s)).mean(), atol=1e-6)


def test_gan_generator_gradient_reaches_the_default_adapter_only(cache):
    tr = trainer(cache, 'gan')
    prompts, emb, mask, y_T = batch(tr)
    y_S = tr.student.codec.decode(train_rollout(tr, emb, mask)).clamp(-1, 1)
    assert y_S.requires_grad and y_S.shape == y_T.shape
    with frozen(list(tr.D_raw.parameters())):
        loss = gan_generator_loss(tr.D_raw.score(y_S, prompts), tr.D_raw.score(y_T, prompts).detach())
    loss.backward()
    named = dict(tr.student.transformer.named_parameters())
    default = {n for n in named if '.lora_' in n and '.default.' in n}
    got = grads(tr.student.transformer)
    assert got and got <= default and {n for n in default if 'lora_B' in n} <= got
    assert not grads(tr.D_raw) and all(p.requires_grad for p in tr.D_raw.parameters() if p in set(tr.d_opt.param_groups[0]['params']))
    assert all(p.grad is None for p in tr.student.text.parameters())


def test_fake_score_starts_as_the_student_and_its_critic_trains_only_itself(cache):
    tr = trainer(cache, 'dmd')
    fs = tr.D_raw
    assert isinstance(fs, FakeScore) and fs.model is not tr.student.model
    prompts, emb, mask, y_T = batch(tr)
    x_S = train_rollout(tr, emb, mask)
    t, _, x_t = dmd_noised(tr, x_S.detach())
    assert ((t >= 0.02) & (t <= 0.98)).all() and t.shape == (2, x_S.shape[2])
    with torch.no_grad():   # the fake score is the base student until it trains (LoRA B = 0)
        v_fake, logit = fs(x_t, t, x_S.detach(), emb, mask)
        with tr.student.view('ref'): v_student = tr.student.model.velocity(x_t, t, x_S.detach(), emb, mask).float()
    assert torch.equal(v_fake, v_student) and logit.shape == (2,)
    x_T = tr.student.codec.encode(y_T).float()
    out = dmd_critic_losses(tr, x_T, x_S.detach(), emb, mask)
    out['loss'].backward()
    trainable = {n for n, p in fs.named_parameters() if p.requires_grad}
    assert grads(fs) <= trainable and {n for n in trainable if n.startswith('head.')} <= grads(fs)
    assert any('.lora_B.default.' in n for n in grads(fs)) and not grads(tr.student.transformer)
    assert all(p.grad is None for n, p in fs.named_parameters() if n not in trainable)   # the copy's backbone stays


def test_dmd_generator_gradient_reaches_the_default_adapter_only(cache):
    tr = trainer(cache, 'dmd')
    prompts, emb, mask, y_T = batch(tr)
    x_S = train_rollout(tr, emb, mask)
    with frozen(list(tr.D_raw.parameters())):
        t, _, x_t = dmd_noised(tr, x_S)
        dmd_generator_loss(tr.D_raw(x_t, t, x_S, emb, mask)[1]).backward()
    default = {n for n, _ in tr.student.transformer.named_parameters() if '.lora_' in n and '.default.' in n}
    got = grads(tr.student.transformer)
    assert got and got <= default and not grads(tr.D_raw)
    assert all(p.requires_grad for p in tr.D_raw.trainable_parameters())   # unfrozen again


@pytest.mark.parametrize('method', ['gan', 'dmd'])
def test_resume_after_k_iterations_is_bit_identical(cache, tmp_path, method):
    full = trainer(cache, method, tmp_path/'full'); full.fit()
    trainer(cache, method, tmp_path/'cut').fit(stop_after=1)
    assert latest_checkpoint(tmp_path/'cut'/'checkpoints').name == 'step_000001'
    resumed = trainer(cache, method, tmp_path/'cut'); resumed.fit()
    assert resumed.step == full.step == 3
    a, b = (adapter_parameters(t.student.transformer, 'default') for t in (full, resumed))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, adapter_parameters(trainer(cache, method).student.transformer, 'default')))
    sa, sb = full.D_raw.state_dict(), resumed.D_raw.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    keys = ('loss', 'd_loss', 'grad_norm')
    strip = lambda rows: [{k: r[k] for k in keys} for r in rows]
    rows = read_jsonl(tmp_path/'full'/'metrics.jsonl')
    assert strip(rows) == strip(read_jsonl(tmp_path/'cut'/'metrics.jsonl')) and all(r['method'] == method for r in rows)


def test_baselines_need_a_trained_critic(cache):
    for m in ('gan', 'dmd'):
        with pytest.raises(ValueError, match="d_steps=0 leaves the discriminator untrained"): TrainConfig(method=m, d_steps=0).validate()
    with pytest.raises(ValueError, match="pass no discriminator"):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore'); st = load_student('causal_forcing', 'tiny', device='cpu')
        Trainer(st, load_teacher('physics'), dataclasses.replace(TINY, method='dmd'), discriminator=torch.nn.Linear(2, 2),
                teacher_cache=cache, progress=False, accelerator=Accelerator(cpu=True))


def test_discriminator_ablations_nonpaired_loss_d_init_and_stale_d(cache, tmp_path):
    "d_loss='nonpaired' trains D by binary cross-entropy; d_init starts D from a saved state; d_lr=0 leaves it there."
    from safetensors.torch import save_file
    from afd_nb.discriminator import nonpaired_loss
    from afd_nb.train import disc_state
    tr = trainer(cache, 'afd', d_loss='nonpaired', d_steps=1)
    prompts, emb, mask, y_T = batch(tr)
    _, y_S = tr.rollout(emb, mask)
    with torch.no_grad(): d_t, d_s = tr.D_raw(y_T, prompts).float(), tr.D_raw(y_S, prompts).float()
    row = tr.d_update(y_T, y_S, prompts)   # the logged loss is the step's, before its update
    assert abs(row['d_loss'] - float(F.softplus(-d_t).mean() + F.softplus(d_s).mean())) < 1e-5
    assert abs(row['d_loss'] - float(bt_loss(d_t, d_s))) > 1e-3
    state = {k: v + 0.01 for k, v in disc_state(tr.D_raw).items()}
    save_file(state, tmp_path/'d.safetensors')
    stale = trainer(cache, 'afd', d_init=str(tmp_path/'d.safetensors'), d_lr=0.0)
    assert all(torch.equal(state[k], v) for k, v in disc_state(stale.D_raw).items())
    stale.fit(iterations=1)
    assert all(torch.equal(state[k], v) for k, v in disc_state(stale.D_raw).items())   # lr 0: D stays as loaded
    with pytest.raises(ValueError, match='does not fit'):
        save_file({'nope': torch.zeros(1)}, tmp_path/'bad.safetensors')
        trainer(cache, 'afd', d_init=str(tmp_path/'bad.safetensors'))


def test_training_rollout_gradient_is_the_same_with_gradient_checkpointing(cache):
    "The exit step runs without checkpointing (its cache plan cannot be re-run); the rest of the model may checkpoint."
    grads_of = []
    for ckpt in (False, True):
        tr = trainer(cache, 'gan', grad_checkpointing=ckpt)
        prompts, emb, mask, _ = batch(tr)
        train_rollout(tr, emb, mask).pow(2).mean().backward()
        grads_of.append([p.grad.clone() for p in tr.params])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads_of))


def test_gan_refuses_a_discriminator_of_another_pixel_format(cache):
    from afd_nb.discriminator import PhysicsDiscriminator
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); st = load_student('causal_forcing', 'tiny', device='cpu')
    D = PhysicsDiscriminator(None, 64, 8, dict(size=(16, 16), fps=8.0, num_frames=24))
    with pytest.raises(ValueError, match="method 'gan' backpropagates through the discriminator"):
        Trainer(st, load_teacher('physics'), dataclasses.replace(TINY, method='gan'), discriminator=D,
                teacher_cache=cache, progress=False, accelerator=Accelerator(cpu=True))
    with pytest.raises(ValueError, match="'dmd' trains its classifier head"): TrainConfig(method='dmd', d_loss='nonpaired').validate()
