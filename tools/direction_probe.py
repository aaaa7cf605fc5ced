#!/usr/bin/env python
"""Probe: does a student move an object the way its prompt says? Prints, per direction word, the mean displacement
(world units, y up) of a single ball over its first chunk (frames 0 -> 5) and over the rest of the clip
(frames 6 -> 23), for the student's rollouts and for the world's own renders of the same prompts. The world's
balls bounce off the walls, so its second figure can point back; its first figure is the prompted direction.

A second table asks whether the direction word reaches the model at all: the world's clips of balls moving to the
right, chunk 0 noised to σ, denoised once under the true prompt and under the same prompt saying "to the left".
It prints the horizontal drift (pixels, frames 0 -> 5) of the darkness centroid of x̂0 under each; the clips'
own drift is about +7 px. Equal figures mean the word is ignored and the motion is read off x_t alone.

    python tools/direction_probe.py [--student causal_forcing] [--checkpoint FOLDER] [--n 12] [--threads 2] [--eta 1]
"""
import argparse
import math

import numpy as np
import torch

from _cli import load_tiny_student, setup_threads, student_args

DIRECTIONS = ('to the right', 'to the left', 'up', 'down')
COLOURS = ('red', 'blue', 'green', 'purple', 'orange', 'black')


def displacements(clips, prompts, spans=((0, 5), (6, 23))) -> list[np.ndarray]:
    "Mean (dx, dy) per span over the clips whose ball is tracked at both ends of that span (NaN if none)."
    from afd_nb.metrics import track
    from afd_nb.world import parse_prompt
    colours = [parse_prompt(p).attributes['objects'][0]['color'] for p in prompts]
    out = []
    for a, b in spans:
        d = []
        for f, c in zip(clips, colours):
            w = track(f, 8.0, colors=[c]).world[:, 0]
            if not (np.isnan(w[a, 0]) or np.isnan(w[b, 0])): d.append(w[b] - w[a])
        out.append(np.mean(d, 0) if d else np.full(2, np.nan))
    return out


def centroid_drift(pix) -> float:
    "Mean horizontal drift (pixels) of the darkness centroid from the first to the last frame of pixel clips `[B, 3, F, H, W]`."
    m = (1 - pix.float().clamp(-1, 1).mean(1).add(1).div(2)).clamp_min(0)          # darkness [B, F, H, W]
    cx = (m.sum(-2) * torch.arange(m.shape[-1]).float()).sum(-1) / (m.sum((-1, -2)) + 1e-6)
    return float((cx[:, -1] - cx[:, 0]).mean())


@torch.no_grad()
def text_effect(st, n: int, sigmas=(0.95, 0.9, 0.8, 0.75, 0.5)) -> list[tuple[float, float, float]]:
    "Per σ: x̂0's drift under the true prompt ('to the right') and under 'to the left', on the same x_t (chunk 0)."
    from afd_nb.core import frames_to_batch
    from afd_nb.flow import add_noise, x0_from_velocity
    from afd_nb.corpus import CorpusSpec, render_clip
    ps = [f'a {COLOURS[i % len(COLOURS)]} ball moves to the right' for i in range(n)]
    x0 = st.codec.encode(frames_to_batch([render_clip(p, 100 + i, 'general', CorpusSpec()) for i, p in enumerate(ps)]))
    x0 = x0[:, :, :st.model.block_size]                                                  # chunk 0
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    rows = [(0.0, centroid_drift(st.codec.decode(x0)), math.nan)]
    for s in sigmas:
        x_t, r = add_noise(x0, eps, s), []
        for d in ('to the right', 'to the left'):
            emb, mask = st.encode_prompts([p.replace('to the right', d) for p in ps])
            v = st.model.velocity(x_t, torch.full((n, 1), s), None, emb, mask).float()
            r.append(centroid_drift(st.codec.decode(x0_from_velocity(x_t, v, s))))
        rows.append((s, *r))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    student_args(ap)
    ap.add_argument('--n', type=int, default=12, help="prompts per direction (colours in turn)")
    ap.add_argument('--eta', type=float, default=1.0, help="the sampler's eta for the first table (1: fresh noise, 0: ODE)")
    a = ap.parse_args(argv)
    setup_threads(a.threads)
    from afd_nb.evaluate import sample_clips
    from afd_nb.corpus import CorpusSpec, render_clip
    st = load_tiny_student(a.student, a.checkpoint)
    st.model.eta = a.eta
    print(st, f"sampler eta {a.eta}")
    fmt = lambda d: f"({d[0]:+.1f}, {d[1]:+.1f})"
    print(f"{'direction':13s} | student: frames 0-5, 6-23 | world: frames 0-5, 6-23")
    for d in DIRECTIONS:
        ps = [f'a {COLOURS[i % len(COLOURS)]} ball moves {d}' for i in range(a.n)]
        s = displacements([c.frames for c in sample_clips(st, ps, seed=7, progress=False)], ps)
        w = displacements([render_clip(p, i, 'general', CorpusSpec()) for i, p in enumerate(ps)], ps)
        print(f"{d:13s} | {fmt(s[0])} {fmt(s[1])} | {fmt(w[0])} {fmt(w[1])}", flush=True)
    last = st.model.block_size * 24 // st.model.num_frames - 1   # the first AR block's last pixel frame
    print(f"\nchunk 0 of balls moving right, noised to σ, denoised once: x̂0's drift (px, frames 0 -> {last})")
    print("σ     | prompt 'to the right' | prompt 'to the left'")
    for s_, r, l in text_effect(st, a.n):
        print(f"{s_:.2f}  | {r:+.1f}" + (" (the clips themselves)" if s_ == 0 else f"                  | {l:+.1f}"))


if __name__ == '__main__':
    main()
