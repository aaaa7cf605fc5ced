#!/usr/bin/env python
"""Evaluate students like their cards (32 + 32 eval prompts, the preset's few steps) under several noise seeds, and
print the mean ± std of each headline figure over the seeds, then the per-seed general_score. The first line is the
teacher's (the world's own clips of the same prompts, scene seed = noise seed + prompt index): the reference for `area`.

    python tools/eval_student.py causal_forcing [self_forcing:runs/p12/sf_seed1/student ...] [--seeds 123 1 2] [--threads 2]

Each argument is a student name, optionally `:FOLDER` for a checkpoint (default: the shipped weights).
`--shift S [S ...]` evaluates each student with its 4 timesteps warped by (E3) with each shift S in turn (default:
its own shift). `--out FILE` writes the per-seed headlines as JSON.
"""
import argparse, json

import numpy as np

from _cli import load_tiny_student, parse_student_specs, setup_threads


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('students', nargs='+', help="NAME or NAME:FOLDER")
    ap.add_argument('--seeds', nargs='+', type=int, default=[123, 1, 2])
    ap.add_argument('--n', type=int, default=32, help="eval prompts per domain")
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--shift', nargs='+', type=float, default=[0.0], help="sampling shifts (0: the student's own)")
    ap.add_argument('--out', default=None)
    a = ap.parse_args(argv)
    setup_threads(a.threads)
    from afd_nb.evaluate import evaluate_student
    from afd_nb.flow import timesteps_to_sigmas
    from afd_nb.teachers import load_prompts
    from afd_nb.evaluate import evaluate_clips
    from afd_nb.video import Clip
    from afd_nb.world import render, scene_from_prompt
    prompts = load_prompts('general', 'eval')[:a.n] + load_prompts('physics', 'eval')[:a.n]
    out = {}
    def report(key: str, rows: list[dict]) -> None:
        out[key] = rows
        keys = dict.fromkeys(k for r in rows for k in r)   # `scoring_error` appears only where a clip raised
        stats = {k: (np.mean(v), np.std(v)) for k in keys for v in [[r.get(k, 0.0) for r in rows]]}
        print(key, ' '.join(f"{k} {m:.3f}±{s:.3f}" for k, (m, s) in stats.items()),
              '| general_score per seed', [round(r['general/general_score'], 3) for r in rows], flush=True)
    report('teacher', [evaluate_clips([Clip(render(scene_from_prompt(p, s + i), 32, 8.0, 24), 8.0, p)
                                       for i, p in enumerate(prompts)]).headline() for s in a.seeds])
    for spec, (name, folder) in zip(a.students, parse_student_specs(a.students)):
        st = load_tiny_student(name, folder)
        for shift in a.shift:
            st.model.sigmas = tuple(timesteps_to_sigmas(st.preset.timesteps, shift or st.preset.shift))
            rows = [evaluate_student(st, prompts, seed=s, batch_size=16, progress=False).headline() for s in a.seeds]
            report(f"{spec} shift {shift or st.preset.shift:g}", rows)
    if a.out: json.dump(out, open(a.out, 'w'), indent=1)


if __name__ == '__main__':
    main()
