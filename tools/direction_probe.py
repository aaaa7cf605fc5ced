#!/usr/bin/env python
"""Probe: does a student move an object the way its prompt says? Prints, per direction word, the mean displacement
(world units, y up) of a single ball over its first chunk (frames 0 -> 5) and over the rest of the clip
(frames 6 -> 23), for the student's rollouts and for the world's own renders of the same prompts. The world's
balls bounce off the walls, so its second figure can point back; its first figure is the prompted direction.

    python tools/direction_probe.py [--student causal_forcing] [--checkpoint FOLDER] [--n 12] [--threads 2]
"""
import argparse

import numpy as np
import torch

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--checkpoint', default=None, help="a student folder (default: the shipped weights)")
    ap.add_argument('--n', type=int, default=12, help="prompts per direction (colours in turn)")
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from afd_nb.evaluate import sample_clips
    from afd_nb.pretrain import CorpusSpec, render_clip
    from afd_nb.student import load_student
    st = load_student(a.student, checkpoint=a.checkpoint)
    print(st)
    fmt = lambda d: f"({d[0]:+.1f}, {d[1]:+.1f})"
    print(f"{'direction':13s} | student: frames 0-5, 6-23 | world: frames 0-5, 6-23")
    for d in DIRECTIONS:
        ps = [f'a {COLOURS[i % len(COLOURS)]} ball moves {d}' for i in range(a.n)]
        s = displacements([c.frames for c in sample_clips(st, ps, seed=7, progress=False)], ps)
        w = displacements([render_clip(p, i, 'general', CorpusSpec()) for i, p in enumerate(ps)], ps)
        print(f"{d:13s} | {fmt(s[0])} {fmt(s[1])} | {fmt(w[0])} {fmt(w[1])}", flush=True)


if __name__ == '__main__':
    main()
