#!/usr/bin/env python
"""Probe: how precisely does a student continue a motion from a clean history?

Renders `--n` world clips of one ball moving (colours and the four directions in turn), noises every chunk to σ,
and denoises them once, teacher-forced: each chunk sees the clean clip before it as its history (E1-E2, as in
pretraining). It prints, per σ and per chunk, the mean distance (world units; the box is 10, a pixel 0.31) between the
ball the colour tracker finds in x̂0 and the ball in the clip. Chunk 0 has no history, so at σ = 1 it can only guess;
chunks 1-3 at σ = 1 show how well the student extrapolates the motion it is shown. The metrics' motion fit gives
credit for an RMSE near 0.2 (exp(-(rmse / 0.2)²)). For scale it also prints the distance of a ball that stops where
the history leaves it. Last, per σ, x̂0's mean step per frame inside a frame pair (pixel frames 2k -> 2k+1, which
the shipped codec packs into one latent frame) and across pairs (2k+1 -> 2k+2), beside the clips' own (see `tools/path_probe.py`).

    python tools/history_probe.py [--student causal_forcing] [--checkpoint FOLDER] [--n 16] [--threads 2]
"""
import argparse

import numpy as np
import torch

COLOURS = ('red', 'blue', 'green', 'purple', 'orange', 'black')
DIRECTIONS = ('to the right', 'to the left', 'up', 'down')


def steps(pos: np.ndarray) -> tuple[float, float]:
    "Mean step per frame of paths `[B, F, 2]` inside latent frames (2k -> 2k+1) and across them (2k+1 -> 2k+2)."
    d = np.linalg.norm(np.diff(pos, axis=1), axis=-1)
    return float(np.nanmean(d[:, 0::2])), float(np.nanmean(d[:, 1::2]))


def ball_positions(st, latents, prompts) -> np.ndarray:
    "World position of the prompt's ball per pixel frame, `[B, F, 2]` (NaN where not found)."
    from afd_nb.core import batch_to_frames
    from afd_nb.metrics import track
    frames = batch_to_frames(st.codec.decode(latents).float())
    return np.stack([track(f, 8.0, colors=[p.split()[1]]).world[:, 0] for f, p in zip(frames, prompts)])


@torch.no_grad()
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--checkpoint', default=None)
    ap.add_argument('--n', type=int, default=16)
    ap.add_argument('--sigmas', nargs='+', type=float, default=[1.0, 0.9, 0.75, 0.5, 0.25])
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from afd_nb.core import frames_to_batch
    from afd_nb.flow import add_noise, x0_from_velocity
    from afd_nb.corpus import CorpusSpec, render_clip
    from afd_nb.student import load_student
    st = load_student(a.student, checkpoint=a.checkpoint)
    m = st.model
    prompts = [f'a {COLOURS[i % 6]} ball moves {DIRECTIONS[i % 4]}' for i in range(a.n)]
    x0 = st.codec.encode(frames_to_batch([render_clip(p, 200 + i, 'general', CorpusSpec()) for i, p in enumerate(prompts)]))
    emb, mask = st.encode_prompts(prompts)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    truth = ball_positions(st, x0, prompts)
    chunks = x0.shape[2] // m.block_size
    per = truth.shape[1] // chunks                                     # pixel frames per chunk
    print(f"{a.student} ({a.checkpoint or 'shipped'}): distance of x̂0's ball from the clip's, world units, per chunk")
    still = [np.nanmean(np.linalg.norm(truth[:, k * per:(k + 1) * per] - truth[:, k * per - 1:k * per], axis=-1))
             for k in range(1, chunks)]
    print("  a ball left where the history ends: " + '  '.join(f"chunk {k + 1} {d:.2f}" for k, d in enumerate(still)))
    paths = []
    for s in a.sigmas:
        x_t = add_noise(x0, eps, s)
        v = m.velocity(x_t, torch.full((a.n, chunks), s), x0, emb, mask).float()
        pos = ball_positions(st, x0_from_velocity(x_t, v, s), prompts)
        err = np.linalg.norm(pos - truth, axis=-1)
        paths.append((s, steps(pos)))
        cells = [f"{np.nanmean(err[:, k * per:(k + 1) * per]):.2f}" for k in range(chunks)]
        lost = np.isnan(err).mean()
        print(f"  σ {s:.2f}: " + '  '.join(f"chunk {k} {c}" for k, c in enumerate(cells)) + f"  (not found: {lost:.0%})")
    print("step per frame inside / across frame pairs (2k -> 2k+1 / 2k+1 -> 2k+2; world units): clips {:.2f} / {:.2f}".format(*steps(truth)))
    for s, (i, x) in paths: print(f"  x̂0 at σ {s:.2f}: {i:.2f} / {x:.2f}")


if __name__ == '__main__':
    main()
