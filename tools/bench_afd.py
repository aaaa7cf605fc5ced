#!/usr/bin/env python
"""Cost of one AFD iteration by part, through the job's own `afd_nb.train.Trainer` methods; prints figures, asserts nothing.

For each batch size (default 8 and 32) on the shipped tiny student (`data_samples/students/<student>`, whichever is
there; a random one when none is):
  rollout   `Trainer.rollout`: Self-Forcing's few-step KV-cache rollout of `θ_old` over the batch, one call, + decode
  D         `Trainer.d_update`: `d_steps` Bradley-Terry steps (E4) on the prompt-paired batch
  student   one optimizer step of `Trainer._student_updates` over the batch, `noise_draws` rows per rollout, passes of
            `micro_batch` rows: three teacher-forced forwards (`default` with gradient, `old`, `ref`) and a backward
and, once, on `--law-clips` of the rollouts:
  reward    the check rewards: the world's per-clip `law_ok` (reward 'world_law', or `log_law`), darkness, D's score
  eval      `Trainer.evaluate` (the periodic / before-after evaluation: rollout + the world's scoring) per clip
Each figure is the minimum over `--repeat` runs after a warm-up (the machine is shared); the last lines estimate
an iteration's seconds for the oracle, darkness/random and discriminator rewards at each batch size.

    OMP_NUM_THREADS=1 python tools/bench_afd.py [--student causal_forcing] [--batches 8 32] [--draws 1 4]
        [--micro 8] [--law-clips 32] [--eval-prompts 2] [--repeat 1] [--threads 1]
"""
import argparse, os, time

import torch

from _cli import load_tiny_student


def best(fn, repeat: int) -> float:
    "Minimum wall seconds of `fn()` over `repeat` runs after one warm-up."
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); out.append(time.perf_counter() - t0)
    return min(out)


def once(fn) -> float:
    "Wall seconds of one `fn()` (for the slow world scoring: no warm-up)."
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def make_trainer(student: str, batch: int, draws: int, micro: int):
    "A Trainer on the shipped tiny student, no output folder, batch `batch` in groups of 4 (the job's grouping)."
    from accelerate import Accelerator
    from afd_nb.teachers import load_teacher
    from afd_nb.train import Trainer, TrainConfig
    cfg = TrainConfig(batch_size=batch, group_size=4, baseline='prompt', noise_draws=draws, micro_batch=micro or None,
                      eval_every=0, ckpt_every=0, iterations=1)
    st = load_tiny_student(student, device='cpu', quiet=True)
    return Trainer(st, load_teacher('physics'), cfg, None, progress=False, accelerator=Accelerator(cpu=True))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--batches', type=int, nargs='+', default=[8, 32])
    ap.add_argument('--draws', type=int, nargs='+', default=[1, 4], help="noise_draws values timed for the student step")
    ap.add_argument('--micro', type=int, default=8, help="micro_batch rows per pass (0: all rows in one pass)")
    ap.add_argument('--law-clips', type=int, default=32, help="rollouts of the last batch scored by the world's law_ok fit")
    ap.add_argument('--eval-prompts', type=int, default=2, help="prompts per domain for the evaluation timing")
    ap.add_argument('--repeat', type=int, default=1)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from afd_nb.advantage import darkness_reward
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores; student {a.student}")
    tr = make_trainer(a.student, max(a.batches), 1, a.micro)
    print(f"{tr.student!r}\n   weights from {tr.student.source}")
    per = {}
    for B in a.batches:
        g = torch.Generator().manual_seed(B)   # the job's kind of batch: B / 4 random teacher prompts, 4 rollouts each
        idx = torch.randperm(len(tr.data), generator=g)[:B // 4].repeat_interleave(4).tolist()
        prompts = [tr.data.prompts[i] for i in idx]
        emb, mask = tr.student.encode_prompts(prompts)
        y_T = tr.data.videos(idx)
        t_roll = best(lambda: tr.rollout(emb, mask), a.repeat)
        x0, y_S = tr.rollout(emb, mask)
        t_d = best(lambda: tr.d_update(y_T, y_S, prompts), a.repeat)
        r = torch.rand(B, generator=torch.Generator().manual_seed(0))
        t_st = {}
        for K in a.draws:
            tr.cfg.noise_draws = K
            t_st[K] = best(lambda: tr._student_updates(x0, emb, mask, r), a.repeat)
        tr.cfg.noise_draws = 1
        per[B] = dict(rollout=t_roll, d=t_d, student=t_st)
        st = ', '.join(f"{K} draw(s) {s:.2f} s ({1e3 * s / (B * K):.0f} ms per NFT sample)" for K, s in t_st.items())
        print(f"\nbatch {B}: rollout {t_roll:.2f} s ({1e3 * t_roll / B:.0f} ms per rollout); D ({tr.cfg.d_steps} steps) "
              f"{t_d:.2f} s ({1e3 * t_d / B:.0f} ms per rollout)\n   student step (micro_batch {a.micro or 'all'}): {st}")
    from afd_nb.world import parse_prompt
    n, law, by = min(a.law_clips, x0.shape[0]), [], {}
    for i in range(n):   # one clip at a time: the world's fit costs very different times per scenario
        dt = once(lambda: law.append(float(tr.world_score(y_S[i:i + 1], prompts[i:i + 1], tr.fmt['fps'], key='law_ok')[0])))
        by.setdefault(parse_prompt(prompts[i]).scenario, []).append(dt)
    t_law = sum(map(sum, by.values())) / n
    t_dark = once(lambda: darkness_reward(y_S)) / y_S.shape[0]
    t_dscore = once(lambda: tr.D_raw.score(y_S, prompts)) / y_S.shape[0]
    t_teach = once(lambda: tr.world_score(y_T[:8], prompts[:8], tr.fmt['fps'], key='law_ok')) / 8
    print(f"\nrewards per clip: world law_ok fit {1e3 * t_law:.0f} ms on rollouts ({1e3 * t_teach:.0f} ms on teacher clips), "
          f"darkness {1e3 * t_dark:.2f} ms, D score {1e3 * t_dscore:.1f} ms; law_ok share of those {n} rollouts "
          f"{sum(law) / n:.2f}\n   the fit by scenario: " + ', '.join(f"{k} {1e3 * sum(v) / len(v):.0f} ms ({len(v)} clips)"
                                                            for k, v in sorted(by.items())))
    from afd_nb.teachers import load_prompts
    ev = load_prompts('physics', 'eval')[:a.eval_prompts] + load_prompts('general', 'eval')[:a.eval_prompts]
    t_ev = once(lambda: tr.evaluate(ev, view='ref', batch_size=16)) / len(ev)
    print(f"evaluation: {t_ev:.2f} s per clip (rollout + the world's scoring); the job's before + after evaluation at "
          f"eval_prompts 16: about {2 * 32 * t_ev:.0f} s")
    print("\nestimated seconds per iteration (rollout + reward + D + one student step at 1 and at max draws):")
    Kmax = max(a.draws)
    for B, p in per.items():
        base = p['rollout'] + p['student'][1]
        print(f"   batch {B}: oracle (world_law, d_steps 0) {base + B * t_law:.1f} / {p['rollout'] + p['student'][Kmax] + B * t_law:.1f}; "
              f"darkness or random (d_steps 0) {base:.1f} / {p['rollout'] + p['student'][Kmax]:.1f}; "
              f"discriminator {base + p['d'] + B * t_dscore:.1f} / {p['rollout'] + p['student'][Kmax] + p['d']:.1f}")


if __name__ == '__main__':
    main()
