#!/usr/bin/env python
"""Prototype (not yet a library stage): DMD on the student's 4-step sampling of its first chunk, with the
teacher-forced flow loss (afd_nb.pretrain) on corpus clips as a regulariser for the later chunks.
real = the frozen starting student, fake = a copy trained by flow matching on the generator's chunks; the gradient
goes through one random exit step, as Self-Forcing does. Prints the 4-step eval headline every --ev iterations and
saves a video grid under runs/probes/. Usage: python tools/fewstep_probe.py STUDENT_FOLDER [--iters 300 ...]"""
import sys, copy, time, torch, torch.nn.functional as F
from afd_nb.student import load_student, Student
from afd_nb.flow import add_noise, sample_train_t
from afd_nb.corpus import training_prompts, eval_prompts
from afd_nb.pretrain import ema_update
from afd_nb.evaluate import evaluate_student, video_grid
from afd_nb.teachers import load_prompts
import argparse
from pathlib import Path
ap = argparse.ArgumentParser()
ap.add_argument('ckpt'); ap.add_argument('--threads', type=int, default=1); ap.add_argument('--iters', type=int, default=300)
ap.add_argument('--glr', type=float, default=5e-5); ap.add_argument('--flr', type=float, default=1e-4)
ap.add_argument('--critic', type=int, default=2); ap.add_argument('--ev', type=int, default=50); ap.add_argument('--B', type=int, default=16)
ap.add_argument('--neval', type=int, default=16); ap.add_argument('--tag', default='a')
ap.add_argument('--lam', type=float, default=0.5); ap.add_argument('--fmlr', type=float, default=3e-4); ap.add_argument('--fcw', type=float, default=3.0)
a = ap.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0)
base = load_student('self_forcing', checkpoint=a.ckpt)
real = base.model.eval().requires_grad_(False)
gen = copy.deepcopy(base.model).requires_grad_(True)
fake = copy.deepcopy(base.model).requires_grad_(True)
ema = copy.deepcopy(base.model).requires_grad_(False)
ema_st = Student(ema, base.preset, text=base.text, codec=base.codec)
ex = eval_prompts()
prompts = training_prompts('general', 1024, 0, ex) + training_prompts('physics', 1024, 1, ex)
og = torch.optim.AdamW(gen.parameters(), a.fmlr, weight_decay=1e-4)
from afd_nb.corpus import load_corpus, CorpusSpec
from afd_nb.pretrain import flow_loss, chunk_times
corpus = load_corpus(CorpusSpec(size=2000, seed=0), progress=False)
base.text.model.requires_grad_(False)
of = torch.optim.AdamW(fake.parameters(), a.flr, weight_decay=0.0, betas=(0.0, 0.999))
sig = list(base.preset.sigmas)
ge, ph = load_prompts('general', 'eval')[:a.neval], load_prompts('physics', 'eval')[:a.neval]
def ev(i):
    r = evaluate_student(ema_st, ge + ph, seed=123, progress=False)
    print(i, {k: round(v, 3) for k, v in r.headline().items()}, flush=True)
    fig = video_grid(r, n=8, n_frames=8); Path('runs/probes').mkdir(parents=True, exist_ok=True); fig.savefig(f'runs/probes/fewstep_{a.tag}_{i}.png', dpi=50)
    import matplotlib.pyplot as plt; plt.close('all')
ev(0)
g = torch.Generator().manual_seed(1); t0 = time.time(); B = a.B
for it in range(1, a.iters + 1):
    ps = [prompts[i] for i in torch.randint(len(prompts), (B,), generator=g).tolist()]
    emb, mask = base.encode_prompts(ps)
    j = int(torch.randint(len(sig), (1,), generator=g))
    cap = {}
    def cb(s):
        if s.step == j: cap['x'] = s.x_t
    with torch.no_grad():
        gen.rollout(emb, num_frames=3, generator=g, text_mask=mask, sigmas=sig[:j + 1], callback=cb)
    gen.train()
    x0g = cap['x'] - sig[j] * gen.velocity(cap['x'], sig[j], None, emb, mask).float()
    td = 0.02 + 0.96 * torch.rand(B, generator=g)
    tb = td[:, None, None, None, None]
    noise = torch.randn(x0g.shape, generator=g)
    xt = add_noise(x0g.detach(), noise, td)
    with torch.no_grad():
        x0r = xt - tb * real.velocity(xt, td, None, emb, mask).float()
        x0f = xt - tb * fake.velocity(xt, td, None, emb, mask).float()
        norm = (x0g - x0r).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-4)
        grad = (x0f - x0r) / norm
    lg = 0.5 * F.mse_loss(x0g, (x0g - grad).detach())
    pix, pp = corpus.batch(torch.randint(len(corpus), (8,), generator=g))
    x0c = base.codec.encode(pix)
    lfm = flow_loss(gen, base.text, x0c, pp, chunk_times(8, 4, sig, 0.5, g), torch.randn(x0c.shape, generator=g), 2.0, first_chunk_weight=a.fcw)
    og.zero_grad(); (lfm + a.lam * lg).backward(); torch.nn.utils.clip_grad_norm_(gen.parameters(), 1.0); og.step()
    x0d = x0g.detach()
    for _ in range(a.critic):
        tc = sample_train_t(B, g)
        n2 = torch.randn(x0d.shape, generator=g)
        xt2 = add_noise(x0d, n2, tc)
        lf = ((fake.velocity(xt2, tc, None, emb, mask).float() - (n2 - x0d)) ** 2).mean()
        of.zero_grad(); lf.backward(); torch.nn.utils.clip_grad_norm_(fake.parameters(), 1.0); of.step()
    ema_update(list(ema.parameters()), list(gen.parameters()), 0.9)
    if it % 10 == 0: print(it, f"fm {lfm.item():.4f} lg {lg.item():.4f} lf {lf.item():.4f} {(time.time()-t0)/it:.2f}s/it", flush=True)
    if it % a.ev == 0: ev(it)
