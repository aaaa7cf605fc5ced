#!/usr/bin/env python
"""Appearance parity (issue 25): can the kit's discriminator tell a student from the teacher when both follow the same law?

Trains a fresh `PhysicsDiscriminator`, built as the main job builds it (`Trainer`: the student's text encoder,
width 32, AdamW at `--d-lr`), by (E4) exactly as the job does: `--iterations` batches of `--batch` (teacher clip,
base-student rollout) pairs of the same prompt, `--d-steps` steps on each (defaults: `train_afd.ipynb`'s 80 x 2 at
5e-4, batch 8). Two runs:

- **general**: on the general domain, where teacher and student follow the same law (no gravity), so only
  appearance can separate them. D trains on the general train prompts and reports its held-out accuracy on the
  general eval prompts (`--reps` rollouts each): how often it scores the teacher's clip above a rollout of the same
  prompt. Parity is an accuracy near 0.5; issue 25 asks for <= 0.75.
- **physics**: as the main job, on the physics train prompts. On the physics eval prompts it scores `--pool` rollouts
  per prompt and reports Kendall's tau-b of D's score against each rollout's `law_ok` (afd_nb.metrics), within each
  prompt whose rollouts disagree on `law_ok`, averaged over those prompts; and the held-out accuracy.

    python tools/parity_probe.py causal_forcing [--checkpoint runs/p25/causal_forcing/student] [--threads 2]

`--blur S` blurs every clip D sees (teacher and student alike) with a Gaussian of S pixels, as `D(blur(y))`: it asks
how much of D's win is fine appearance (edges, halos) rather than layout, size and motion. `--view even` shows D every
second frame only (one frame of each latent frame pair: no two-frame staircase), `--view late` drops the first 6
frames (the first chunk); each asks whether D's win is there.

`--rerender S` shows D the teacher's clips re-drawn by the student from noise level S (`--rerender-mode rollout`: its
own rollout steps from there, as the main job's `teacher_rerender`; `step`: one teacher-forced x0 prediction), so
that both sides carry the student's appearance. On physics it then also reports whether D knows the law: each eval
prompt rendered under the true law and every wrong one, the share where D scores the true law higher
(`true_law_above`), and whether the re-drawn teacher clips still obey it (`teacher_law_ok_share`). `--train-pool K`
draws each pair's rollout from K per train prompt (the job sees fresh ones); `--dump F.npz` keeps the per-rollout
scores and metrics.

Teacher clips are `PhysicsTeacher`'s (teacher seed 0) conformed to the student's format, as the main job's; rollouts
use the student's preset steps.
"""
import argparse, json, time

import numpy as np
import torch

from _cli import load_tiny_student, setup_threads, student_args
from d_probe import blur   # tools/d_probe.py: the same separable Gaussian blur


def rollouts(student, prompts, seed: int, batch: int = 16) -> torch.Tensor:
    "Base-student pixels `[N, 3, F, H, W]` in [-1, 1], one seeded rollout per prompt."
    with torch.no_grad():
        return torch.cat([student.sample(prompts[k:k + batch], seed=seed + k).float() for k in range(0, len(prompts), batch)])


def teacher_clips(prompts, fmt: dict) -> torch.Tensor:
    """The teacher's clips `[N, 3, F, H, W]` in [-1, 1], as the main job gets them: `PhysicsTeacher` (64x64, 16 fps,
    48 frames, teacher seed 0, any domain) conformed to the student's format (`afd_nb.video.conform`)."""
    from afd_nb.core import frames_to_batch
    from afd_nb.teachers import PhysicsTeacher
    from afd_nb.video import conform
    clips = PhysicsTeacher(domain=None).sample(list(prompts), seed=0)
    return frames_to_batch([conform(c, fmt['size'], fmt['fps'], fmt['num_frames']).frames for c in clips])


@torch.no_grad()
def rerender(student, clips: torch.Tensor, prompts, sigma: float, seed: int = 0, batch: int = 16, mode: str = 'step') -> torch.Tensor:
    """Teacher clips `[N, 3, F, H, W]` re-drawn by the student from noise level `sigma`, so that they carry the student's
    appearance and the teacher's motion. 'rollout': the student's own rollout steps from the noised chunks (the job's
    `teacher_rerender`); 'step': one teacher-forced x0 prediction (E2) of the whole clip noised to `sigma` (E1)."""
    from afd_nb.flow import add_noise, x0_from_velocity
    from afd_nb.student import sdedit_sigmas
    g, out = torch.Generator().manual_seed(seed), []
    for k in range(0, len(clips), batch):
        ps = list(prompts[k:k + batch])
        lat = student.codec.encode(clips[k:k + batch].to(student.device)).float()
        if mode == 'rollout':  # the student's own AR rollout from the clip's chunks at `sigma` (SDEdit), own history
            sig = sdedit_sigmas(student.model.sigmas, sigma)   # noise apart from the rollouts' (seed + k)
            out.append(student.codec.decode(student.rollout(ps, seed + 500_000 + k, init=lat, sigmas=sig)).clamp(-1, 1))
            continue
        x_t = add_noise(lat, torch.randn(lat.shape, generator=g).to(lat.device), sigma)
        emb, mask = student.encode_prompts(ps)
        t = torch.full((len(ps),), sigma)
        v = student.model.velocity(x_t, t, clean=lat, text_emb=emb, text_mask=mask).float()
        out.append(student.codec.decode(x0_from_velocity(x_t, v, t)).clamp(-1, 1))
    return torch.cat(out)


def law_variants(D, student, fmt: dict, prompts, a) -> dict:
    """Does D know the law? Each eval prompt rendered by the world under the true law and each wrong one
    (`afd_nb.corpus.WRONG_PHYSICS`), conformed (and re-rendered) as the teacher's clips: the share of prompts where D
    scores the true law above each wrong one."""
    from afd_nb.core import frames_to_batch
    from afd_nb.corpus import WRONG_PHYSICS
    from afd_nb.world import physics_variant, render, scene_from_prompt
    from afd_nb.video import Clip, conform
    def clips(kind):
        fr = []
        for p in prompts:
            sc = scene_from_prompt(p, 0)
            if kind != 'true': sc = physics_variant(sc, kind)
            fr.append(conform(Clip(render(sc, 64, 16.0, 48), 16.0, p), fmt['size'], fmt['fps'], fmt['num_frames']).frames)
        y = frames_to_batch(fr)
        return rerender(student, y, prompts, a.rerender, a.seed, mode=a.rerender_mode) if a.rerender else y
    s_true = d_scores(D, clips('true'), prompts, a)
    return {k: float((s_true > d_scores(D, clips(k), prompts, a)).float().mean()) for k in WRONG_PHYSICS}


def view(videos: torch.Tensor, kind: str, sigma: float) -> torch.Tensor:
    "What D sees of clips `[B, 3, F, H, W]`: 'full', 'even' (frames 0, 2, 4, ...) or 'late' (frames 6...), then the blur."
    v = videos[:, :, ::2] if kind == 'even' else videos[:, :, 6:] if kind == 'late' else videos
    return blur(v, sigma)


def train_d(student, fmt: dict, y_T: torch.Tensor, y_S: torch.Tensor, prompts, a) -> torch.nn.Module:
    """A fresh D trained by (E4) as `Trainer._d_update` does: `a.iterations` batches of pairs, `a.d_steps` steps each;
    `y_S` `[N, K, 3, F, H, W]`: K rollouts per prompt, one drawn per pair."""
    from afd_nb.discriminator import PhysicsDiscriminator, bt_loss
    from afd_nb.train import disc_parameters
    torch.manual_seed(a.seed)
    n_frames = view(y_T[:1], a.view, 0.0).shape[2]
    D = PhysicsDiscriminator(student.text, student.text.dim, a.d_width, {**fmt, 'num_frames': n_frames})
    opt = torch.optim.AdamW(disc_parameters(D), a.d_lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(a.seed)
    for it in range(a.iterations):
        idx = torch.randperm(len(prompts), generator=g)[:a.batch]
        k = torch.randint(y_S.shape[1], (len(idx),), generator=g) if y_S.shape[1] > 1 else torch.zeros(len(idx), dtype=torch.long)
        both, ps = view(torch.cat([y_T[idx], y_S[idx, k]]), a.view, a.blur), [prompts[i] for i in idx.tolist()] * 2
        for _ in range(a.d_steps):
            loss = bt_loss(*D(both, ps).float().chunk(2))
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return D


@torch.no_grad()
def d_scores(D, videos: torch.Tensor, prompts, a, batch: int = 32) -> torch.Tensor:
    "D's scores `[N]` of `videos` `[N, 3, F, H, W]`, seen as D trained (`view`)."
    return torch.cat([D(view(videos[k:k + batch], a.view, a.blur), list(prompts[k:k + batch])).float()
                      for k in range(0, len(videos), batch)])


def within_prompt_tau(d: np.ndarray, ok: np.ndarray, ids: np.ndarray) -> tuple[float, int]:
    "Mean Kendall tau-b of `d` against `ok` over the prompts whose rollouts disagree on `ok`, and how many there are."
    from scipy.stats import kendalltau
    taus = [kendalltau(d[ids == i], ok[ids == i]).statistic for i in np.unique(ids) if len(set(ok[ids == i])) > 1]
    return (float(np.mean(taus)) if taus else float('nan')), len(taus)


def run_domain(student, fmt, domain: str, reps: int, a) -> dict:
    from afd_nb.evaluate import evaluate_clips
    from afd_nb.teachers import load_prompts
    from afd_nb.video import Clip
    from afd_nb.core import batch_to_frames
    t0 = time.time()
    train_ps = load_prompts(domain, 'train')[:a.n_train]
    eval_ps = load_prompts(domain, 'eval')[:a.n_eval]
    tc = lambda ps: (rerender(student, teacher_clips(ps, fmt), ps, a.rerender, a.seed, mode=a.rerender_mode) if a.rerender
                     else teacher_clips(ps, fmt))
    pool = torch.stack([rollouts(student, train_ps, a.seed + 1000 * k) for k in range(a.train_pool)], 1)  # [N, K, ...]
    D = train_d(student, fmt, tc(train_ps), pool, train_ps, a)
    held = [p for _ in range(reps) for p in eval_ps]
    ids = np.array([i for _ in range(reps) for i in range(len(eval_ps))])
    y_S = torch.cat([rollouts(student, eval_ps, a.seed + 10_000 * (r + 1)) for r in range(reps)])
    y_Te = tc(eval_ps)
    s_T, s_S = d_scores(D, y_Te, eval_ps, a).numpy(), d_scores(D, y_S, held, a).numpy()
    out = dict(domain=domain, blur=a.blur, view=a.view, rerender=a.rerender, rerender_mode=a.rerender_mode, n_train=len(train_ps), n_eval=len(eval_ps), reps=reps,
               heldout_accuracy=float((s_T[ids] > s_S).mean()))
    if domain == 'physics':
        res = evaluate_clips([Clip(f, fmt['fps'], p) for f, p in zip(batch_to_frames(y_S), held)])
        ok = np.array([r.get('law_ok', 0.0) for r in res.reports], dtype=float)
        tau, n = within_prompt_tau(s_S, ok, ids)
        ps_ = np.array([r.get('physics_score', 0.0) for r in res.reports], dtype=float)
        win = s_T[ids] > s_S
        rmse = np.array([r.get('position_rmse', np.nan) for r in res.reports], dtype=float)
        fit = np.isfinite(rmse)
        gok = np.array([r.get('g_law_ok', np.nan) for r in res.reports], dtype=float)
        out.update(kendall_tau_physics_score=within_prompt_tau(s_S, ps_, ids)[0],
                   kendall_tau_g_law_ok=within_prompt_tau(s_S[np.isfinite(gok)], gok[np.isfinite(gok)], ids[np.isfinite(gok)])[0],
                   kendall_tau_neg_rmse=within_prompt_tau(s_S[fit], -rmse[fit], ids[fit])[0],
                   accuracy_vs_law_ok=float(win[ok > 0].mean()) if (ok > 0).any() else float('nan'),
                   accuracy_vs_wrong=float(win[ok == 0].mean()) if (ok == 0).any() else float('nan'))
        out['true_law_above'] = law_variants(D, student, fmt, eval_ps, a)
        if a.dump:
            np.savez(a.dump, d=s_S, d_teacher=s_T, ids=ids, **{k: np.array([r.get(k, np.nan) for r in res.reports], dtype=float)
                     for k in ('law_ok', 'g_fit', 'g_law_ok', 'position_rmse', 'physics_score', 'present', 'area', 'bounces')},
                     scenario=np.array([r.get('scenario') for r in res.reports]))
        if a.rerender:  # does the re-rendered teacher keep the law?
            rt = evaluate_clips([Clip(f, fmt['fps'], p) for f, p in zip(batch_to_frames(y_Te), eval_ps)])
            out['teacher_law_ok_share'] = float(np.mean([r.get('law_ok', 0.0) for r in rt.reports]))
        out.update(law_ok_share=float(ok.mean()), kendall_tau_law_ok=tau, prompts_with_both=n)
    out['seconds'] = round(time.time() - t0)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    student_args(ap, positional=True)
    ap.add_argument('--iterations', type=int, default=80, help="D batches (the main job's iterations)")
    ap.add_argument('--d-steps', type=int, default=2)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--d-lr', type=float, default=5e-4)
    ap.add_argument('--d-width', type=int, default=32)
    ap.add_argument('--n-train', type=int, default=64, help="train prompts per domain (the job's n_teacher_prompts)")
    ap.add_argument('--n-eval', type=int, default=32)
    ap.add_argument('--train-pool', type=int, default=1, help="rollouts per train prompt D draws from (the job: fresh ones)")
    ap.add_argument('--reps', type=int, default=2, help="general: rollouts per held-out prompt")
    ap.add_argument('--pool', type=int, default=8, help="physics: rollouts per held-out prompt")
    ap.add_argument('--domains', nargs='+', default=['general', 'physics'])
    ap.add_argument('--blur', type=float, default=0.0, help="Gaussian blur (px) of every clip D sees (0: none)")
    ap.add_argument('--view', default='full', choices=['full', 'even', 'late'], help="which frames D sees")
    ap.add_argument('--rerender', type=float, default=0.0,
                    help="re-draw the teacher's clips with the student from this noise level (0: off); see --rerender-mode")
    ap.add_argument('--rerender-mode', default='step', choices=['step', 'rollout'],
                    help="step: one teacher-forced x0 prediction; rollout: the student's AR rollout from the noised clip")
    ap.add_argument('--dump', default=None, help="physics: save per-rollout D scores and metrics (.npz)")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default=None, help="write the results as JSON")
    a = ap.parse_args(argv)
    setup_threads(a.threads)
    from afd_nb.train import pixel_format
    student = load_tiny_student(a.student, a.checkpoint)
    fmt = pixel_format(student)
    rows = []
    for dom in a.domains:
        rows.append(run_domain(student, fmt, dom, a.reps if dom == 'general' else a.pool, a))
        print(json.dumps(rows[-1]), flush=True)
    if a.out: json.dump(dict(args=vars(a), results=rows), open(a.out, 'w'), indent=1)


if __name__ == '__main__':
    main()
