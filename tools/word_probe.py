#!/usr/bin/env python
"""Word probe: does every prompt word reach the student? For each word class it swaps one word of held-out-style
prompts and prints how much that changes (1) the text encoder's output and (2) the student's first denoising step,
the x̂0 of the first AR block at σ = 1 from the same noise (the step that decides a clip's layout), and (3) the
whole rollout from the same noise. Each change is relative: ||a - b|| / ||b|| over the encoder's tokens, and over
x̂0's or the clip's pixels' departure from the white background. The last column divides (2) by the colour's figure:
issue 25 asks every class for at least a third. With `--data K`, a last column gives the same ratio for the exact
posterior-mean first step, the mean of K world renders of each prompt's first block (what a perfect denoiser's x̂0
at σ 1 is): the ceiling of what a faithful first step can show.

Word classes and swaps (each prompt against the same prompt with one word changed):
- colour: the object's colour (any scenario);
- direction: a `move` prompt's direction word, e.g. 'to the right' -> 'to the left' (one attribute);
- place: a `drop` prompt's start place ('upper left' / 'top' / 'upper right');
- speed: a `move` prompt's 'slowly' <-> 'quickly';
- size: 'small' <-> 'big';
- scenario: 'moves ...' <-> 'bounces off the walls' (general), 'is dropped ...' <-> 'is thrown ...' (physics).

    python tools/word_probe.py [--student causal_forcing] [--checkpoint FOLDER] [--n 24] [--threads 2] [--data 200]
"""
from __future__ import annotations
import argparse

import numpy as np
import torch

from afd_nb.world import COLORS, DIRECTIONS, PLACES, prompt_text
from _cli import load_tiny_student, setup_threads, student_args

CLASSES = ('colour', 'direction', 'place', 'speed', 'size', 'scenario')


def prompt_pairs(cls: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    "`n` (prompt, the same prompt with one `cls` word swapped) pairs from the benchmark grammar."
    rng, out, cols, dirs = np.random.default_rng(seed), [], list(COLORS), list(DIRECTIONS)
    for i in range(n):
        c, c2 = rng.choice(cols, 2, replace=False)
        d = dirs[i % len(dirs)]
        sz = [None, 'small', 'big'][i % 3]
        o = lambda **kw: {'color': str(c), 'shape': 'ball', 'size': sz, 'direction': d, 'speed': None, **kw}
        mv = lambda **kw: prompt_text('move', {'objects': (o(**kw),), 'place': None})
        drop = lambda place, **kw: prompt_text('drop', {'objects': (o(direction=None, **kw),), 'place': place})
        opposite = {k: k.replace('right', 'L').replace('left', 'right').replace('L', 'left').replace('up', 'D')
                    .replace('down', 'up').replace('D', 'down') for k in dirs}
        if cls == 'colour': a, b = mv(), mv(color=str(c2))
        elif cls == 'direction': a, b = mv(), mv(direction=opposite[d])
        elif cls == 'place':
            p1, p2 = PLACES[i % 3], PLACES[(i + 1 + i // 3 % 2) % 3]
            a, b = drop(p1), drop(p2)
        elif cls == 'speed': a, b = mv(speed='slowly'), mv(speed='quickly')
        elif cls == 'size': a, b = mv(size='small'), mv(size='big')
        elif cls == 'scenario':
            if i % 2: a, b = mv(), prompt_text('bounce_walls', {'objects': (o(direction=None),), 'place': None})
            else:
                side = 'right' if i % 4 else 'left'
                a = drop('top')
                b = prompt_text('throw', {'objects': (o(direction=side),), 'place': None})
        else: raise ValueError(f"unknown word class {cls!r}; classes: {CLASSES}")
        out.append((a, b))
    return out


def rel(a: torch.Tensor, b: torch.Tensor, ref: torch.Tensor | float = 0.0) -> torch.Tensor:
    "Per-sample ||a - b|| / ||b - ref|| over all but the first dimension."
    d = (a - b).flatten(1).norm(dim=1)
    return d / (b - ref).flatten(1).norm(dim=1).clamp_min(1e-8)


@torch.no_grad()
def first_step(st, prompts: list[str], seed: int = 0) -> torch.Tensor:
    "Pixels `[B, 3, f, H, W]` of x̂0 of the first AR block at σ = 1 from noise drawn with `seed` (same for every prompt)."
    from afd_nb.flow import x0_from_velocity
    m = st.model
    b, (H, W), C = m.block_size, m.latent_hw, st.transformer.config.out_channels
    noise = torch.randn((1, C, b, H, W), generator=torch.Generator().manual_seed(seed)).expand(len(prompts), -1, -1, -1, -1)
    emb, mask = st.encode_prompts(prompts)
    v = m.velocity(noise, 1.0, None, emb, mask).float()
    return st.codec.decode(x0_from_velocity(noise, v, 1.0)).float()


def data_first_step(prompts: list[str], frames: int, k: int) -> torch.Tensor:
    "Pixels `[B, 3, frames, 32, 32]` in [-1, 1]: the mean of `k` world renders (scene seeds 0..k-1) of each prompt's first `frames` frames."
    from afd_nb.world import render, scene_from_prompt
    out = [np.mean([render(scene_from_prompt(p, j), 32, 8.0, frames) for j in range(k)], 0) for p in prompts]
    return torch.from_numpy(np.stack(out)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1


@torch.no_grad()
def probe(st, n: int = 24, seed: int = 0, data: int = 0) -> list[dict]:
    "One row per word class: mean relative change of the encoder output, the first step and the rollout."
    rows = []
    for cls in CLASSES:
        a, b = map(list, zip(*prompt_pairs(cls, n, seed)))
        ea, eb = st.encode_prompts(a)[0], st.encode_prompts(b)[0]
        fa, fb = first_step(st, a, seed), first_step(st, b, seed)
        ra = torch.cat([st.sample([p], seed=seed + i) for i, p in enumerate(a)])
        rb = torch.cat([st.sample([p], seed=seed + i) for i, p in enumerate(b)])
        rows.append({'class': cls, 'encoder': float(rel(ea, eb).mean()), 'first_step': float(rel(fa, fb, 1.0).mean()),
                     'rollout': float(rel(ra, rb, 1.0).mean())})
        if data: rows[-1]['data'] = float(rel(data_first_step(a, fa.shape[2], data), data_first_step(b, fa.shape[2], data), 1.0).mean())
    col = rows[0]['first_step']
    for r in rows:
        r['vs_colour'] = r['first_step'] / col
        if data: r['data_vs_colour'] = r['data'] / rows[0]['data']
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    student_args(ap, threads=0)
    ap.add_argument('--n', type=int, default=24, help='prompt pairs per word class')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--data', type=int, default=0, help="renders per prompt for the exact posterior-mean column (0: off)")
    a = ap.parse_args()
    setup_threads(a.threads)
    st = load_tiny_student(a.student, a.checkpoint, device='cpu')
    print(f"{st}\ntext encoder: attribute tokens {'yes' if st.text.attributes is not None else 'no'}; {a.n} pairs per class")
    extra = ' exact posterior mean / colour\'s |' if a.data else ''
    print(f"| word class | encoder output | first step (x̂0, σ 1) | rollout | first step / colour's |{extra}\n|---|---|---|---|---|"
          + ('---|' if a.data else ''))
    for r in probe(st, a.n, a.seed, a.data):
        print(f"| {r['class']} | {r['encoder']:.3f} | {r['first_step']:.3f} | {r['rollout']:.3f} | {r['vs_colour']:.2f} |"
              + (f" {r['data_vs_colour']:.2f} |" if a.data else ''))


if __name__ == '__main__':
    main()
