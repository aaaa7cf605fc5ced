#!/usr/bin/env python
"""Sanity check of the AFD update's mechanics: train with a reward that any working on-policy update must follow.

`--reward darkness` (default) scores each rollout by its darkness (mean of 1 - pixel over the clip; 0 = all white,
2 = all black); `--reward world` by the world's exact physics_score (the oracle); `--reward random` by uniform noise,
a null control that shows how far the update drifts with no signal at all (`--log-physics` logs the rollouts' world
physics_score beside it). The reward reaches `afd_nb.train.Trainer` through `reward='world'` and its `world_score`
argument; everything else is the job's AFD update (E6)-(E11). A working update raises its reward steadily; the
printed figure is its mean over the last 10 iterations (10 batches), beside the prior term (how far the student moved
from the base).

    python tools/nft_sanity.py --student causal_forcing --lr 5e-4 --iterations 40 --baseline prompt --t-dist logit_normal
        [--noise-draws 4] [--minibatch 2] [--adaptive] [--threads 2] [--reward random --log-physics]
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
    ap.add_argument('--batch', type=int, default=8, help="rollouts per iteration")
    ap.add_argument('--minibatch', type=int, default=0, help="student minibatch (several steps per batch); 0: whole batch")
    ap.add_argument('--adaptive', action='store_true', help="DiffusionNFT's adaptive x0-space weight in (E9)")
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--reward', default='darkness', choices=['darkness', 'world', 'random'],
                    help="darkness (trivial), world (the exact physics_score: oracle) or random (null control)")
    ap.add_argument('--log-physics', action='store_true', help="also log the rollouts' world physics_score")
    ap.add_argument('--old-decay', type=float, default=None,
                    help="fixed old-policy EMA decay d (default: DiffusionNFT's min(0.001 step, 0.5))")
    ap.add_argument('--prior-weight', type=float, default=1e-2, help="λ of the prior (E10-E11)")
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import afd_nb.train as T
    from accelerate import Accelerator
    from afd_nb.student import load_student
    from afd_nb.teachers import load_teacher

    from afd_nb.evaluate import world_scores
    g = torch.Generator().manual_seed(a.seed + 777)
    seen, physics = [], []
    def reward(pixels, prompts, fps):
        "The chosen reward of each rollout; the world's physics_score is logged beside it when asked."
        if a.reward == 'darkness': r = (1 - pixels.float().clamp(-1, 1)).mean((1, 2, 3, 4)).cpu()
        elif a.reward == 'random': r = torch.rand(len(pixels), generator=g)   # null control: no signal at all
        if a.reward == 'world' or a.log_physics: physics.append(float((w := world_scores(pixels, prompts, fps)).mean()))
        if a.reward == 'world': r = w
        seen.append(float(r.mean()))
        return r
    cfg = T.TrainConfig(iterations=a.iterations, batch_size=a.batch, group_size=4 if a.baseline == 'prompt' else 1,
                        baseline=a.baseline, reward='world', lr=a.lr, beta=1.0, prior_weight=a.prior_weight, t_dist=a.t_dist,
                        old_decay=a.old_decay,
                        noise_draws=a.noise_draws, adaptive=a.adaptive, minibatch_size=a.minibatch or None,
                        eval_every=0, ckpt_every=10**9, seed=a.seed)
    tr = T.Trainer(load_student(a.student), load_teacher('physics'), cfg, None, progress=False,
                   accelerator=Accelerator(cpu=True), world_score=reward)
    t0 = time.time()
    for i in range(a.iterations):
        row = tr.iteration()
        if (i + 1) % 10 == 0:
            phys = f", physics_score {np.mean(physics[-10:]):.4f}" if physics and a.reward != 'world' else ''
            print(f"iteration {i + 1}: rollout {a.reward} (last 10) {np.mean(seen[-10:]):.4f}{phys}, "
                  f"prior {row['prior']:.5f}, {time.time() - t0:.0f} s", flush=True)


if __name__ == '__main__':
    main()
