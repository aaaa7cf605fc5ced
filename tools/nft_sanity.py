#!/usr/bin/env python
"""Sanity check of the AFD update's mechanics: train with a reward that any working on-policy update must follow.

`--reward darkness` (default) scores each rollout by its darkness (`afd_nb.advantage.darkness_reward`: mean of
(1 - pixel) / 2, 0 = all white, 1 = all black); `--reward world` by the world's exact physics_score, `--reward world_law`
by its per-clip law_ok (the oracles); `--reward random` by uniform noise, a null control that shows how far the update
drifts with no signal at all (`--log-law N` scores the rollouts' law_ok every N iterations beside it). These are the
Trainer's own check rewards (`TrainConfig.reward`); the discriminator is not trained (`d_steps 0`). Everything else is
the job's AFD update (E6)-(E11), with issue 26's options. A working update raises its reward steadily; the printed
figure is its mean over the last 10 iterations, beside the prior term (how far the student moved from the base).
No evaluation: `tools/mechanics.py` runs the same checks through the main job, with the paired eval change.

    python tools/nft_sanity.py --student causal_forcing --lr 5e-4 --iterations 40 --baseline prompt --t-dist logit_normal
        [--noise-draws 4] [--minibatch 2] [--micro 8] [--adaptive] [--loss-space x0] [--threads 2]
        [--reward random --log-law 10] [--old-freeze 20] [--old-decay-flat 75 --old-decay-rate 0.0075 --old-decay-max 0.999]
"""
import argparse, time

import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--lr', type=float, default=5e-4)
    ap.add_argument('--iterations', type=int, default=40)
    ap.add_argument('--baseline', default='prompt', choices=['batch', 'prompt', 'prompt_global_std'])
    ap.add_argument('--group', type=int, default=4, help="rollouts per prompt (the prompt baselines need >= 2)")
    ap.add_argument('--t-dist', default='logit_normal', choices=['logit_normal', 'uniform', 'sigmas', 'sigmas_each'])
    ap.add_argument('--noise-draws', type=int, default=1, help="(t, eps) draws per rollout in a student step")
    ap.add_argument('--batch', type=int, default=8, help="rollouts per iteration")
    ap.add_argument('--minibatch', type=int, default=0, help="rollouts per optimizer step; 0: whole batch")
    ap.add_argument('--micro', type=int, default=0, help="rows per forward/backward pass (memory only); 0: all")
    ap.add_argument('--adaptive', action='store_true', help="DiffusionNFT's adaptive x0-space weight in (E9)")
    ap.add_argument('--loss-space', default='velocity', choices=['velocity', 'x0'])
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--reward', default='darkness', choices=['darkness', 'world', 'world_law', 'random'],
                    help="darkness (trivial), world / world_law (oracles) or random (null control)")
    ap.add_argument('--log-law', type=int, default=0, help="score the rollouts' law_ok every N iterations (0: never)")
    ap.add_argument('--old-decay', type=float, default=None,
                    help="fixed old-policy EMA decay d (default: DiffusionNFT's schedule of optimizer steps)")
    ap.add_argument('--old-decay-rate', type=float, default=0.001)
    ap.add_argument('--old-decay-max', type=float, default=0.5)
    ap.add_argument('--old-decay-flat', type=int, default=0)
    ap.add_argument('--old-freeze', type=int, default=0, help="iterations with θ_old kept as the base student")
    ap.add_argument('--prior-weight', type=float, default=1e-2, help="λ of the prior (E10-E11)")
    ap.add_argument('--beta', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import afd_nb.train as T
    from accelerate import Accelerator
    from afd_nb.run_state import progress_line
    from afd_nb.student import load_student
    from afd_nb.teachers import load_teacher
    cfg = T.TrainConfig(iterations=a.iterations, batch_size=a.batch, group_size=a.group, baseline=a.baseline,
                        reward=a.reward, d_steps=0, lr=a.lr, beta=a.beta, prior_weight=a.prior_weight, t_dist=a.t_dist,
                        old_decay=a.old_decay, old_decay_rate=a.old_decay_rate, old_decay_max=a.old_decay_max,
                        old_decay_flat=a.old_decay_flat, old_freeze=a.old_freeze, noise_draws=a.noise_draws,
                        adaptive=a.adaptive, loss_space=a.loss_space, minibatch_size=a.minibatch or None,
                        micro_batch=a.micro or None, log_law=a.log_law, eval_every=0, ckpt_every=10**9, seed=a.seed)
    tr = T.Trainer(load_student(a.student), load_teacher('physics'), cfg, None, progress=False,
                   accelerator=Accelerator(cpu=True))
    t0 = time.time()
    for i in range(a.iterations):
        tr.history.append(tr.iteration())
        if (i + 1) % 10 == 0 or i + 1 == a.iterations: print(f"{progress_line(tr.history, 10)}, {time.time() - t0:.0f} s", flush=True)


if __name__ == '__main__':
    main()
