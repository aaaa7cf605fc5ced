#!/usr/bin/env python
"""How consistent is the AFD update's direction? A probe of (E9)'s gradient at the base student.

For each of `--batches` batches of rollouts (the job's batches: `--prompts` teacher prompts, groups of 4, per-prompt
baseline, weights r from the world's exact physics_score, i.e. the oracle), the probe computes the gradient of
(E9) on the `default` adapter `--draws` times, each with fresh (t, ε). It prints, per batch:
- `cos(single, mean)`: mean cosine of one draw's gradient to the mean over the draws (1: (t, ε) adds no noise);
- `cos(half, half)`: cosine between the means of the two halves of the draws;
and at the end the cosines between the mean gradients of different batches. These show how much of a step is
the (t, ε) noise of flow matching (within a batch; `--shared` draws one (t, ε) per prompt group, the job's
`shared_noise`) and how much is which rollouts the batch happened to draw (between batches). A step can only
accumulate what the batches agree on.

    python tools/grad_probe.py --prompts 2 --batches 3 --draws 16 [--shared] [--t-shift 5] [--student causal_forcing]
"""
import argparse, warnings

import numpy as np
import torch

from _cli import load_tiny_student, setup_threads, student_args


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm() + 1e-30))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    student_args(ap, checkpoint=False)
    ap.add_argument('--prompts', type=int, default=2, help="teacher prompts the batches are drawn from (2 per batch)")
    ap.add_argument('--batches', type=int, default=3)
    ap.add_argument('--draws', type=int, default=16, help="(t, ε) draws per batch (even)")
    ap.add_argument('--shared', action='store_true', help="common random numbers: one (t, ε) per prompt group")
    ap.add_argument('--t-shift', type=float, default=None, help="(E3) shift of the training times (job `t_shift`; > 1: toward t = 1)")
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args(argv)
    if a.draws < 2 or a.draws % 2: ap.error(f"--draws {a.draws}: an even number >= 2")
    setup_threads(a.threads)
    warnings.simplefilter('ignore')   # the whole probe, training included
    from accelerate import Accelerator
    import afd_nb.train as T
    from afd_nb.advantage import nft_weights
    from afd_nb.evaluate import world_scores
    from afd_nb.teachers import load_teacher

    cfg = T.TrainConfig(iterations=1, batch_size=8, group_size=4, baseline='prompt', reward='world', beta=1.0,
                        prior_weight=0.0, n_teacher_prompts=a.prompts, shared_noise=a.shared, t_shift=a.t_shift, eval_every=0,
                        seed=a.seed)
    tr = T.Trainer(load_tiny_student(a.student), load_teacher('physics'), cfg, None, progress=False,
                   accelerator=Accelerator(cpu=True))
    means = []
    for nb in range(a.batches):
        idx = tr._draw_batch()
        ps = [tr.data.prompts[i] for i in idx]
        emb, mask = tr.student.encode_prompts(ps)
        x0, y = tr.rollout(emb, mask)
        r = nft_weights(world_scores(y, ps, tr.fmt['fps']), 'prompt', idx)
        grads = []
        for _ in range(a.draws):
            tr.opt.zero_grad(set_to_none=True)
            tr.afd_losses(x0, emb, mask, r, idx if a.shared else None)['loss'].backward()
            grads.append(torch.cat([p.grad.flatten() for p in tr.params if p.grad is not None]))
        G = torch.stack(grads)
        m = G.mean(0)
        means.append(m)
        h = a.draws // 2
        print(f"batch {nb}: r {np.round(r.numpy(), 2)}, cos(single, mean) {np.mean([cos(g, m) for g in G]):.3f}, "
              f"cos(half, half) {cos(G[:h].mean(0), G[h:].mean(0)):.3f}", flush=True)
    between = [cos(means[i], means[j]) for i in range(len(means)) for j in range(i + 1, len(means))]
    print(f"cos between batch means: {np.round(between, 3).tolist()} (mean {np.mean(between):+.3f})")


if __name__ == '__main__':
    main()
