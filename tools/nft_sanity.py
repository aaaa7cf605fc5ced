#!/usr/bin/env python
"""Sanity check of the AFD update's mechanics: train with a reward that any working on-policy update must follow.

The reward is the darkness of each rollout (mean of 1 - pixel over the clip; 0 = all white, 2 = all black), given to
`afd_nb.train.Trainer` through `reward='world'` and its `world_score` argument, in place of the world's physics
score. Everything else is the job's default AFD update (E6)-(E11). A working update raises the rollouts' darkness steadily; the printed figure is its
mean over the last 10 iterations (80 clips), beside the prior term (how far the student moved from the base).

    python tools/nft_sanity.py --student causal_forcing --lr 5e-4 --iterations 40 --baseline prompt --t-dist logit_normal
        [--noise-draws 4] [--adaptive] [--threads 2]
"""
import argparse, time

import numpy as np
import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--lr', type=float, default=5e-4)
    ap.add_argument('--iterations', type=int, default=40)
    ap.add_argument('--baseline', default='prompt', choices=['batch', 'prompt'])
    ap.add_argument('--t-dist', default='logit_normal', choices=['logit_normal', 'uniform', 'sigmas'])
    ap.add_argument('--noise-draws', type=int, default=1, help="(t, eps) draws per rollout in a student step")
    ap.add_argument('--adaptive', action='store_true', help="DiffusionNFT's adaptive x0-space weight in (E9)")
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import afd_nb.train as T
    from accelerate import Accelerator
    from afd_nb.student import load_student
    from afd_nb.teachers import load_teacher

    seen = []
    def darkness(pixels, prompts, fps, key=None):
        d = (1 - pixels.float().clamp(-1, 1)).mean((1, 2, 3, 4)).cpu()
        seen.append(float(d.mean()))
        return d
    cfg = T.TrainConfig(iterations=a.iterations, batch_size=8, group_size=4 if a.baseline == 'prompt' else 1,
                        baseline=a.baseline, reward='world', lr=a.lr, beta=1.0, prior_weight=1e-2, t_dist=a.t_dist,
                        noise_draws=a.noise_draws, adaptive=a.adaptive,
                        eval_every=0, ckpt_every=10**9, seed=a.seed)
    tr = T.Trainer(load_student(a.student), load_teacher('physics'), cfg, None, progress=False,
                   accelerator=Accelerator(cpu=True), world_score=darkness)
    t0 = time.time()
    for i in range(a.iterations):
        row = tr.iteration()
        if (i + 1) % 10 == 0:
            print(f"iteration {i + 1}: rollout darkness (last 10) {np.mean(seen[-10:]):.4f}, prior {row['prior']:.5f}, "
                  f"{time.time() - t0:.0f} s", flush=True)


if __name__ == '__main__':
    main()
