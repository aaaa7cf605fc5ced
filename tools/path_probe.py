#!/usr/bin/env python
"""Probe: how a student's sampled paths move, frame by frame, on single-ball "moves" prompts.

The tiny students' codec packs 2 pixel frames into each latent frame, so a path can move smoothly or in steps of
two frames. For each prompt this tracks the ball in one rollout and prints its x and y per frame (world units), the
world's motion-fit error (`motion_rmse`, general_score's motion_score is exp(-(rmse / 0.2)²)), and the mean step
per frame inside a frame pair (frames 2k -> 2k+1: one latent frame for the shipped codec) and across pairs
(2k+1 -> 2k+2). The world moves a ball the same distance every frame (0.25-1.1 units at its speeds), so on its
renders the two agree. For a one-frame-layout student (`tiny_layout(preset, 1)`) the pairs are just pairs.

    python tools/path_probe.py [--student causal_forcing] [--checkpoint FOLDER] [--shift S] [--steps N --eta 0]

`--shift` samples the preset's 4 timesteps warped with another (E3) shift; `--steps N` samples N evenly spaced
sigmas instead (with `--eta 0`: the ODE's Euler steps).
"""
import argparse

import numpy as np
import torch

from history_probe import steps   # tools/ is the script's folder, so its sibling imports

PROMPTS = ("a red ball moves to the right", "a blue ball moves to the left", "a green ball moves up",
           "a black ball moves down", "a purple ball moves quickly to the right",
           "an orange ball moves slowly up and to the left", "a red ball moves to the left",
           "a blue ball moves down and to the right")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--checkpoint', default=None, help="a student folder (default: the shipped weights)")
    ap.add_argument('--shift', type=float, default=None, help="(E3) shift of the 4 timesteps (default: the preset's)")
    ap.add_argument('--steps', type=int, default=0, help="N evenly spaced sigmas instead of the preset's 4")
    ap.add_argument('--eta', type=float, default=None, help="sampler eta (1: fresh noise, 0: the ODE)")
    ap.add_argument('--seed', type=int, default=123)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from afd_nb.evaluate import sample_clips
    from afd_nb.flow import timesteps_to_sigmas
    from afd_nb.metrics import fit_track, track
    from afd_nb.corpus import CorpusSpec, render_clip
    from afd_nb.student import load_student
    from afd_nb.video import Clip
    st = load_student(a.student, checkpoint=a.checkpoint)
    if a.shift: st.model.sigmas = tuple(timesteps_to_sigmas(st.preset.timesteps, a.shift))
    if a.steps: st.model.sigmas = tuple(np.linspace(1, 0, a.steps + 1)[:-1].tolist())
    if a.eta is not None: st.model.eta = a.eta
    print(st, '| sigmas', [round(s, 4) for s in st.model.sigmas], '| eta', st.model.eta)
    spec = CorpusSpec()
    rows = {'student': sample_clips(st, list(PROMPTS), seed=a.seed, progress=False),
            'world': [Clip(render_clip(p, a.seed + k, 'general', spec), spec.fps, p) for k, p in enumerate(PROMPTS)]}
    np.set_printoptions(precision=2, suppress=True, linewidth=200)
    for who, clips in rows.items():
        rmse, inside, across = [], [], []
        for c, p in zip(clips, PROMPTS):
            tr = track(c.frames, c.fps, colors=[p.split()[1]])
            fit = fit_track(tr, 'move', 'general', ['ball'], g=0.0)
            pos = tr.world[:, 0]
            i, x = steps(pos[None])
            rmse.append(fit.rmse if fit is not None else np.nan); inside.append(i); across.append(x)
            if who == 'student':
                print(f"{p} | motion_rmse {rmse[-1]:.2f} | step inside {i:.2f}, across {x:.2f}\n  x {pos[:, 0]}\n  y {pos[:, 1]}")
        print(f"{who}: median motion_rmse {np.nanmedian(rmse):.2f} | mean step per frame inside a frame pair "
              f"(2k -> 2k+1) {np.nanmean(inside):.2f}, across {np.nanmean(across):.2f} (world units)")


if __name__ == '__main__':
    main()
