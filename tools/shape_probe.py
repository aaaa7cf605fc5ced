#!/usr/bin/env python
"""Probe: does a student draw the prompted shape? The world calls a blob a square when its median fill of its
bounding box exceeds `SQUARE_FILL` (0.89; a disc fills pi/4 = 0.785), so `object_ok` needs sharp square corners.

Table 1 (sampled): the median fill of the prompted object in the student's own clips, by prompted shape. Equal
figures for 'square' and 'ball' mean the shape word is not followed.

Table 2 (one denoising step): the world's clips of squares (all frames, clean history, as in training), noised
to σ and denoised once under the true prompt ('square') and under the same prompt saying 'ball'. It prints the
fill of x̂0's object and the share of clips it would call square. The clean clips fill 1.0. Equal columns mean the
shape word is ignored and the shape is read off x_t alone; a fill below 0.89 at small σ means the student cannot
even redraw a square it is shown.

    python tools/shape_probe.py [--student causal_forcing] [--checkpoint FOLDER] [--n 12] [--threads 2] [--eta 1]
"""
import argparse

import numpy as np
import torch

COLOURS = ('red', 'blue', 'green', 'purple', 'orange', 'black')
MOTIONS = ('up', 'down', 'to the left', 'to the right')


def object_fill(frames, prompts) -> tuple[float, float]:
    "Mean over clips of the prompted object's median box fill (NaN clips left out), and the share called square."
    from afd_nb.metrics import SQUARE_FILL, track
    from afd_nb.world import parse_prompt
    fills = []
    for f, p in zip(frames, prompts):
        tr = track(f, 8.0, colors=[parse_prompt(p).attributes['objects'][0]['color']])
        v = tr.fill[:, 0][tr.present[:, 0]]
        fills.append(np.median(v) if v.size else np.nan)
    fills = np.array(fills)
    return float(np.nanmean(fills)), float(np.mean(fills > SQUARE_FILL))


@torch.no_grad()
def one_step_fill(st, n: int, sigmas=(0.9, 0.75, 0.5, 0.25, 0.05)) -> list[tuple[float, tuple, tuple]]:
    "Per σ: (fill, square share) of x̂0 under the true 'square' prompt and under 'ball', on the same x_t."
    from afd_nb.core import batch_to_frames, frames_to_batch
    from afd_nb.flow import add_noise, x0_from_velocity
    from afd_nb.corpus import CorpusSpec, render_clip
    ps = [f'a {COLOURS[i % len(COLOURS)]} square moves {MOTIONS[i % len(MOTIONS)]}' for i in range(n)]
    x0 = st.codec.encode(frames_to_batch([render_clip(p, 100 + i, 'general', CorpusSpec()) for i, p in enumerate(ps)]))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    decode = lambda lat: batch_to_frames(st.codec.decode(lat).clamp(-1, 1).float())
    rows = [(0.0, object_fill(decode(x0), ps), (np.nan, np.nan))]
    K = -(-x0.shape[2] // st.model.block_size)
    for s in sigmas:
        x_t, r = add_noise(x0, eps, s), []
        for shape in ('square', 'ball'):
            emb, mask = st.encode_prompts([p.replace('square', shape) for p in ps])
            v = st.model.velocity(x_t, torch.full((n, K), s), x0, emb, mask).float()
            r.append(object_fill(decode(x0_from_velocity(x_t, v, s)), ps))
        rows.append((s, *r))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--checkpoint', default=None, help="a student folder (default: the shipped weights)")
    ap.add_argument('--n', type=int, default=12, help="prompts per shape (colours and motions in turn)")
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--eta', type=float, default=1.0, help="the sampler's eta for table 1 (1: fresh noise, 0: ODE)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from afd_nb.evaluate import sample_clips
    from afd_nb.student import load_student
    st = load_student(a.student, checkpoint=a.checkpoint)
    st.model.eta = a.eta
    print(st)
    print(f"sampled clips (eta {a.eta}): prompted shape | mean fill | share called square")
    for shape in ('square', 'ball'):
        ps = [f'a {COLOURS[i % len(COLOURS)]} {shape} moves {MOTIONS[i % len(MOTIONS)]}' for i in range(a.n)]
        fill, sq = object_fill([c.frames for c in sample_clips(st, ps, seed=7, progress=False)], ps)
        print(f"{shape:6s} | {fill:.3f} | {sq:.2f}", flush=True)
    print("\nthe world's squares, noised to σ, denoised once: fill of x̂0 (share called square)")
    print("σ     | prompt 'square'  | prompt 'ball'")
    for s, (fs, qs), (fb, qb) in one_step_fill(st, a.n):
        print(f"{s:.2f}  | {fs:.3f} ({qs:.2f})" + (" (the clips themselves)" if s == 0 else f"   | {fb:.3f} ({qb:.2f})"),
              flush=True)


if __name__ == '__main__':
    main()
