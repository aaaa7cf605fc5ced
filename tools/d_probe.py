#!/usr/bin/env python
"""Does the discriminator rank the student's rollouts by physics? A probe of AFD's reward (E4)-(E6) at the start.

Rolls out the frozen base student `--pool` times on each of the job's teacher prompts (no student update) and scores
every rollout with the world's exact physics_score. Then it trains a fresh `PhysicsDiscriminator`, as the job builds it,
by (E4) on (teacher clip, rollout) pairs from the first half of the pool, and every 40 steps reports on the held-out
half:
- `acc`: how often D scores the prompt's teacher clip above a held-out rollout (BT accuracy; the teacher clips are
  the 64 D trains on, only the rollouts are held out);
- `corr`: Spearman rank correlation of D's scores with the world's physics_score over all held-out rollouts
  (what the batch baseline of (E6) uses);
- `within`: Kendall concordance of D with the world over pairs of held-out rollouts of the same prompt (what the
  per-prompt baseline uses; ties in the world score are left out).
A D that AFD can use to improve physics needs `corr` and `within` clearly above 0.

    python tools/d_probe.py --student causal_forcing --d-lr 5e-4 --steps 160 [--blur 1.5] [--pool 4] [--threads 2]
    python tools/d_probe.py --against world    # control: the world's own renders of each prompt under a random law

The control (`--against world`) puts the same renderer on both sides, so D can only win on motion: it shows whether
this D can rank clips by physics at all when appearance gives nothing away.

The pool is cached in `runs/d_probe/`, keyed by the student's weights (delete it to redraw). Probe-only changes that
ask whether D still wins when one kind of appearance is taken away (all on both sides, teacher and rollout):
- `--blur S`: a Gaussian blur of S pixels;
- `--noise S`: instance noise, Gaussian pixel noise of std S added at every D step;
- `--restyle T`: both clips re-noised to flow time T and denoised once by the frozen base student;
- `--augment K`: D trains on random K-frame windows shifted left-right (physics-preserving; held-out scoring
  uses whole clips);
- `--r1 G`: an R1 gradient penalty of weight G on the teacher clips.
`--pretrain-world N` first trains D for N steps as a physics reward model on the world's own renders (one scene under
the true law against the same scene under a wrong law), as the paper's D starts from a pretrained reward model; the
(E4) steps on rollouts then fine-tune it (`--d-lr`, `--steps 0` to skip them).
"""
from __future__ import annotations
import argparse, hashlib, time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _cli import load_tiny_student, setup_threads, student_args

ROOT = Path(__file__).resolve().parents[1]


def blur(videos: torch.Tensor, sigma: float) -> torch.Tensor:
    "Separable Gaussian blur of every frame: `[B, 3, F, H, W]` -> same shape (identity when sigma <= 0)."
    if sigma <= 0: return videos
    B, C, Fr, H, W = videos.shape
    k = 2 * round(2 * sigma) + 1
    x = torch.arange(k, dtype=videos.dtype) - k // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2)); g = g / g.sum()
    f = videos.permute(0, 2, 1, 3, 4).reshape(B * Fr, C, H, W)
    f = F.conv2d(f, g.view(1, 1, 1, k).repeat(C, 1, 1, 1), padding=(0, k // 2), groups=C)
    f = F.conv2d(f, g.view(1, 1, k, 1).repeat(C, 1, 1, 1), padding=(k // 2, 0), groups=C)
    return f.view(B, Fr, C, H, W).permute(0, 2, 1, 3, 4)


def restyle(student, videos: torch.Tensor, prompts, sigma: float, seed: int = 0, batch: int = 32) -> torch.Tensor:
    """Clips `[B, 3, F, H, W]` re-noised to flow time `sigma` (E1) and denoised in one step by the frozen base student,
    teacher-forced on the clip itself: the motion stays and each chunk is redrawn by the student (identity at 0). The
    history of chunks after the first is the clip's own clean rendering, so this is a partial restyle."""
    if sigma <= 0: return videos
    from afd_nb.flow import add_noise, x0_from_velocity
    g, out = torch.Generator().manual_seed(seed), []
    for k in range(0, len(videos), batch):
        y, ps = videos[k:k + batch], list(prompts[k:k + batch])
        x0 = student.codec.encode(y.to(student.device)).float()
        x_t = add_noise(x0, torch.randn(x0.shape, generator=g), sigma)
        emb, mask = student.encode_prompts(ps)
        with torch.no_grad(), student.view('old'):
            v = student.model.velocity(x_t, sigma, x0, emb, mask).float()
        out.append(student.codec.decode(x0_from_velocity(x_t, v, sigma)).float().clamp(-1, 1))
    return torch.cat(out)


def augment(videos: torch.Tensor, g: torch.Generator, frames: int = 16, shift: int = 4) -> torch.Tensor:
    """Physics-preserving augmentation of each clip `[B, 3, F, H, W]` -> `[B, 3, frames, H, W]`: a random window of
    `frames` consecutive frames (the law is the same at every time) and a horizontal shift of up to `shift` px (edge
    columns repeated). No flip: it would contradict the prompt's left and right; gravity's axis is left alone."""
    B, C, Fr, H, W = videos.shape
    out = []
    for y in videos:
        t0 = int(torch.randint(Fr - frames + 1, (1,), generator=g))
        y = y[:, t0:t0 + frames]
        d = int(torch.randint(-shift, shift + 1, (1,), generator=g))
        if d: y = F.pad(y, (max(d, 0), max(-d, 0), 0, 0), mode='replicate')[..., max(-d, 0):max(-d, 0) + W]
        out.append(y)
    return torch.stack(out)


def objects_seen(videos: torch.Tensor, prompts, fps: float) -> torch.Tensor:
    "Per clip `[B]` bool: every prompted object is tracked (its colour, a compact blob) in at least 80% of frames."
    from afd_nb.metrics import track
    from afd_nb.world import parse_prompt
    out = []
    for y, p in zip(videos, prompts):
        fr = ((y.permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        tr = track(fr, fps, colors=[o['color'] for o in parse_prompt(p).attributes['objects']])
        out.append(bool((tr.present.mean(0) >= 0.8).all()))
    return torch.tensor(out)


def pretrain_on_world(D, fmt: dict, steps: int, lr: float, seed: int = 0, batch: int = 8, every: int = 200,
                      report=None, prompt_negatives: float = 0.0) -> None:
    """Train D by (E4) as a physics reward model on the world's own renders: each pair is one physics prompt and scene
    (grammar prompts, eval prompts excluded) drawn under the true law and under a random wrong law. With
    `prompt_negatives` p, that share of the pairs instead puts a true-law render of another prompt of the same scenario
    against it (scored under this prompt): prompt adherence as well as the law, as VideoAlign scores both."""
    from afd_nb.discriminator import bt_loss
    from afd_nb.corpus import WRONG_PHYSICS, training_prompts
    from afd_nb.train import disc_parameters
    from afd_nb.world import parse_prompt
    pool, rng = training_prompts('physics', 2000, seed=7), np.random.default_rng(seed)
    by_scenario = {}
    for q in pool: by_scenario.setdefault(parse_prompt(q).scenario, []).append(q)
    def other(p: str) -> str:   # another prompt of the same scenario: same kind of motion, other objects or places
        c = by_scenario[parse_prompt(p).scenario]
        while (q := c[rng.integers(len(c))]) == p: pass
        return q
    opt = torch.optim.AdamW(disc_parameters(D), lr, weight_decay=1e-4)
    for step in range(1, steps + 1):
        ps = [pool[i] for i in rng.integers(len(pool), size=batch)]
        seeds = rng.integers(10 ** 6, size=batch).tolist()
        wrong = [WRONG_PHYSICS[i] for i in rng.integers(len(WRONG_PHYSICS), size=batch)]
        neg_ps = [other(p) if prompt_negatives > 0 and rng.random() < prompt_negatives else p for p in ps]
        wrong = [k if q == p else 'true' for k, p, q in zip(wrong, ps, neg_ps)]
        y = torch.cat([world_variants(ps, seeds, ['true'] * batch, fmt), world_variants(neg_ps, seeds, wrong, fmt)])
        loss = bt_loss(*D.score(y, ps * 2).chunk(2))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if report and (step % every == 0 or step == steps): report(f"world pretraining step {step}: loss {loss.item():.4f}")


def concordance(d: torch.Tensor, w: torch.Tensor, ids: torch.Tensor) -> float:
    "Kendall concordance of scores `d` with `w` `[N]` over pairs with the same id and different `w`."
    s = []
    for i in ids.unique():
        dd, ww = d[ids == i], w[ids == i]
        for a in range(len(dd)):
            for b in range(a + 1, len(dd)):
                if ww[a] != ww[b]: s.append(float(torch.sign(dd[a] - dd[b]) * torch.sign(ww[a] - ww[b])))
    return float(np.mean(s)) if s else float('nan')


def world_variants(prompts, seeds, kinds, fmt: dict) -> torch.Tensor:
    "Clips `[B, 3, F, H, W]` in [-1, 1] the world renders for `prompts` under the laws `kinds` (PHYSICS_VARIANTS)."
    from afd_nb.world import physics_variant, render, scene_from_prompt
    clips = [render(physics_variant(scene_from_prompt(p, s), k), fmt['size'], fmt['fps'], fmt['num_frames'])
             for p, s, k in zip(prompts, seeds, kinds)]
    return torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1


def rollout_pool(tr, student, reps: int, seed: int, cache: Path, against: str = 'student'):
    """Pixels `[N, 3, F, H, W]`, world scores `[N]` and prompt indices `[N]`: `reps` base-student rollouts per teacher
    prompt, or (`against='world'`) the world's own renders of each prompt under a law drawn from PHYSICS_VARIANTS."""
    from afd_nb.evaluate import world_scores
    from afd_nb.world import PHYSICS_VARIANTS
    if cache.exists(): return torch.load(cache)
    g, ys, ws, ids = torch.Generator().manual_seed(seed), [], [], []
    for rep in range(reps):
        for s in range(0, len(tr.data), 8):
            idx = list(range(s, min(len(tr.data), s + 8)))
            ps = [tr.data.prompts[i] for i in idx]
            if against == 'world':   # same renderer as the teacher: only the law (and the scene's seed) differs
                kinds = [PHYSICS_VARIANTS[k] for k in torch.randint(len(PHYSICS_VARIANTS), (len(ps),), generator=g)]
                y = world_variants(ps, [seed + 100 * rep + i for i in idx], kinds, tr.fmt)
            else:
                emb, mask = student.encode_prompts(ps)
                with torch.no_grad(), student.view('old'):   # the fresh LoRA is zero: this is the base student
                    x0 = student.model.rollout(emb, generator=g, text_mask=mask).float()
                    y = student.codec.decode(x0).float().clamp(-1, 1)
            ys.append(y); ws.append(world_scores(y, ps, tr.fmt['fps']).float()); ids += idx
    pool = torch.cat(ys), torch.cat(ws), torch.tensor(ids)
    cache.parent.mkdir(parents=True, exist_ok=True); torch.save(pool, cache)
    return pool


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    student_args(ap, checkpoint=False)
    ap.add_argument('--d-lr', type=float, default=5e-4)
    ap.add_argument('--d-width', type=int, default=32)
    ap.add_argument('--steps', type=int, default=160)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--pool', type=int, default=4, help="rollouts per teacher prompt (half train D, half are held out)")
    ap.add_argument('--blur', type=float, default=0.0)
    ap.add_argument('--restyle', type=float, default=0.0,
                    help="re-noise both sides to this flow time and denoise once with the base student (0: off)")
    ap.add_argument('--augment', type=int, default=0,
                    help="train D on random windows of this many frames, shifted left-right (0: off)")
    ap.add_argument('--noise', type=float, default=0.0, help="instance noise: Gaussian pixel noise of this std on both sides")
    ap.add_argument('--r1', type=float, default=0.0, help="R1 penalty weight on the teacher side (gamma/2 |grad_y D|^2)")
    ap.add_argument('--pretrain-world', type=int, default=0,
                    help="first train D this many steps on the world's renders, true law against a wrong one (0: off)")
    ap.add_argument('--pretrain-lr', type=float, default=5e-4)
    ap.add_argument('--prompt-negatives', type=float, default=0.0,
                    help="share of world-pretraining pairs whose negative is a true-law render of another prompt")
    ap.add_argument('--against', default='student', choices=['student', 'world'],
                    help="what D tells the teacher from: base-student rollouts, or the world's renders under wrong laws")
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args(argv)
    if a.pool < 2 or a.pool % 2: ap.error(f"--pool {a.pool}: an even number >= 2 (half the rollouts train D, half are held out)")
    setup_threads(a.threads)
    from accelerate import Accelerator
    from afd_nb.advantage import rank_correlation
    from afd_nb.discriminator import PhysicsDiscriminator, bt_loss
    from afd_nb.teachers import load_teacher
    from afd_nb.train import TrainConfig, Trainer, disc_parameters

    student = load_tiny_student(a.student)
    tr = Trainer(student, load_teacher('physics'), TrainConfig(iterations=1, eval_every=0, seed=a.seed), None,
                 progress=False, accelerator=Accelerator(cpu=True))
    if a.augment and not 2 <= a.augment <= tr.fmt['num_frames']:
        ap.error(f"--augment {a.augment}: a window of 2 to {tr.fmt['num_frames']} frames (the clip's length)")
    t0 = time.time()
    # the student's weights are in the key, so a newly shipped student gets a fresh pool
    tag = hashlib.sha1(b''.join(p.detach().float().numpy().tobytes() for p in student.transformer.parameters())).hexdigest()[:8]
    name = f'{a.student}_{tag}' if a.against == 'student' else 'world'
    Y, Wd, I = rollout_pool(tr, student, a.pool, 1000 + a.seed, ROOT/'runs'/'d_probe'/f'pool_{name}_{a.pool}_s{a.seed}.pt',
                            a.against)
    N = len(tr.data)
    within_std = torch.stack([Wd[I == i] for i in range(N)]).std(1).mean()
    what = 'base rollouts' if a.against == 'student' else 'world renders'
    print(f"pool: {len(Y)} {what} ({time.time() - t0:.0f} s); world physics_score mean {Wd.mean():.3f}, "
          f"std {Wd.std():.3f}, mean within-prompt std {within_std:.3f}", flush=True)
    half = len(Y) // 2   # the pool is rep-major: the first reps train D, the rest are held out
    Y_tr, I_tr, Y_te, W_te, I_te = Y[:half], I[:half], Y[half:], Wd[half:], I[half:]
    seen = objects_seen(Y_te, [tr.data.prompts[i] for i in I_te.tolist()], tr.fmt['fps'])
    print(f"held out: {int(seen.sum())} of {len(seen)} rollouts show every prompted object in >= 80% of frames", flush=True)
    y_T = tr.data.videos(list(range(N))).float()
    if a.restyle > 0:   # both sides through the same one-step student denoiser: only motion can tell them apart
        y_T = restyle(student, y_T, tr.data.prompts, a.restyle, a.seed)
        Y_tr = restyle(student, Y_tr, [tr.data.prompts[i] for i in I_tr.tolist()], a.restyle, a.seed + 1)
        Y_te = restyle(student, Y_te, [tr.data.prompts[i] for i in I_te.tolist()], a.restyle, a.seed + 2)
    torch.manual_seed(a.seed)
    D = PhysicsDiscriminator(student.text, student.text.dim, a.d_width, dict(tr.fmt))
    ps = tr.data.prompts
    g = torch.Generator().manual_seed(a.seed)
    def held_out(tag: str) -> None:
        with torch.no_grad():
            s = torch.cat([D.score(blur(Y_te[k:k + 32], a.blur), [ps[i] for i in I_te[k:k + 32].tolist()])
                           for k in range(0, len(Y_te), 32)])
            win = (D.score(blur(y_T, a.blur), list(ps))[I_te] > s).float()
        print(f"{tag}; held out: acc {float(win.mean()):.3f} ({float(win[seen].mean()):.3f} where all objects are seen), "
              f"corr {rank_correlation(s, W_te):+.3f}, within {concordance(s, W_te, I_te):+.3f}", flush=True)
    if a.pretrain_world:   # a physics reward model first (as the paper's D starts from VideoAlign), then (E4) on rollouts
        pretrain_on_world(D, dict(tr.fmt), a.pretrain_world, a.pretrain_lr, a.seed, a.batch, report=held_out,
                          prompt_negatives=a.prompt_negatives)
    opt = torch.optim.AdamW(disc_parameters(D), a.d_lr, weight_decay=1e-4)
    for step in range(1, a.steps + 1):
        j = torch.randint(half, (a.batch,), generator=g)
        idx = I_tr[j].tolist()
        y = blur(torch.cat([y_T[idx], Y_tr[j]]), a.blur)
        if a.augment: y = augment(y, g, a.augment)
        if a.noise: y = y + a.noise * torch.randn(y.shape, generator=g)
        if a.r1: y.requires_grad_(True)
        d_t, d_s = D.score(y, [ps[i] for i in idx] * 2).chunk(2)
        loss = bt_loss(d_t, d_s)
        if a.r1:   # Mescheder et al. 2018: penalise D's gradient on the real (teacher) clips
            gy, = torch.autograd.grad(d_t.sum(), y, create_graph=True)
            loss = loss + a.r1 / 2 * gy[:a.batch].pow(2).flatten(1).sum(1).mean()
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if step % 40 and step != a.steps: continue
        held_out(f"step {step}: train loss {loss.item():.4f}, margin {(d_t - d_s).mean().item():.2f}")


if __name__ == '__main__':
    main()
