#!/usr/bin/env python
"""Probe: does a student's first denoising step (chunk 0 at σ = 1, pure noise) depend on the prompt's layout?

At σ = 1 the best x̂0 is the prompt's mean clip, E[x0 | prompt]. For each probe prompt this renders `--k` scenes
with the world, averages their chunk 0 (that mean), and compares it with the student's x̂0 from `--draws` noise
draws (averaged). It prints:
- the squared distance (latent units, summed over chunk 0) of x̂0 to the prompt mean, beside the prompt mean's
  distance to the mean over all probe prompts (x̂0 farther from its mean than that: it misses the prompt's layout);
- for three prompt pairs (right / left, up / down, square / ball), the distance between the two prompts' means and
  between the student's two x̂0 (near 0: the word does not reach x̂0);
- the darkness profile over the 8 column and 8 row bands of the frame, data and student, for each prompt.

    python tools/layout_probe.py [--student causal_forcing] [--checkpoint FOLDER] [--k 48] [--draws 4] [--threads 2]
"""
import argparse

import numpy as np
import torch

PROMPTS = ('a red ball moves to the right', 'a red ball moves to the left', 'a red ball moves up', 'a red ball moves down',
           'a big blue square moves slowly down', 'a big blue ball moves slowly down',
           'a small blue ball is dropped from the top and bounces on the floor')
PAIRS = ((0, 1, 'right / left'), (2, 3, 'up / down'), (4, 5, 'square / ball'))


def prompt_mean(st, prompt: str, k: int) -> torch.Tensor:
    "Chunk 0 latents `[C, b, H, W]` averaged over `k` world renders of `prompt` (true law for physics prompts)."
    from afd_nb.core import frames_to_batch
    from afd_nb.corpus import CorpusSpec, render_clip
    from afd_nb.world import parse_prompt
    variant = 'true' if parse_prompt(prompt).domain == 'physics' else 'general'
    x = frames_to_batch([render_clip(prompt, s, variant, CorpusSpec()) for s in range(k)])
    return st.codec.encode(x)[:, :, :st.model.block_size].mean(0)


@torch.no_grad()
def first_step(st, prompt: str, draws: int) -> torch.Tensor:
    "The student's x̂0 of chunk 0 at σ = 1, averaged over `draws` noise draws: `[C, b, H, W]`."
    emb, mask = st.encode_prompts([prompt] * draws)
    C, (H, W) = st.transformer.config.out_channels, st.model.latent_hw
    x_t = torch.randn(draws, C, st.model.block_size, H, W, generator=torch.Generator().manual_seed(0))
    v = st.model.velocity(x_t, torch.ones(draws, 1), None, emb, mask).float()
    return (x_t - v).mean(0)


def profile(st, lat: torch.Tensor, axis: str) -> np.ndarray:
    "Share of the darkness of decoded chunk 0 in each of 8 column (axis 'x') or row ('y') bands."
    pix = st.codec.decode(lat[None])[0]
    d = (1 - pix.float().clamp(-1, 1).mean(0).add(1).div(2)).clamp_min(0)     # [F, H, W]
    p = d.sum((0, 1) if axis == 'x' else (0, 2))
    return (p / p.sum()).reshape(8, -1).sum(1).numpy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--checkpoint', default=None, help="a student folder (default: the shipped weights)")
    ap.add_argument('--k', type=int, default=48, help="world renders per prompt mean")
    ap.add_argument('--draws', type=int, default=4, help="noise draws averaged into the student's x̂0")
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from afd_nb.student import load_student
    st = load_student(a.student, checkpoint=a.checkpoint)
    print(st)
    M = [prompt_mean(st, p, a.k) for p in PROMPTS]
    X = [first_step(st, p, a.draws) for p in PROMPTS]
    g = torch.stack(M).mean(0)
    d = lambda u, v: float(((u - v) ** 2).sum())
    print(f"{'prompt':66s} | x̂0 to its mean | mean to the average")
    for p, m, x in zip(PROMPTS, M, X): print(f"{p:66s} | {d(x, m):15.1f} | {d(m, g):.1f}")
    print("\npair          | data: mean to mean | student: x̂0 to x̂0")
    for i, j, name in PAIRS: print(f"{name:13s} | {d(M[i], M[j]):18.1f} | {d(X[i], X[j]):.1f}")
    print("\ndarkness in 8 column / row bands (left to right / top to bottom)")
    fmt = lambda v: ' '.join(f"{x:.2f}" for x in v)
    for p, m, x in zip(PROMPTS, M, X):
        print(f"{p}\n  columns data {fmt(profile(st, m, 'x'))} | student {fmt(profile(st, x, 'x'))}"
              f"\n  rows    data {fmt(profile(st, m, 'y'))} | student {fmt(profile(st, x, 'y'))}")


if __name__ == '__main__':
    main()
