#!/usr/bin/env python
"""Re-evaluate finished `tools/afd_table.py` runs on a larger eval: every eval prompt, several noise seeds.

The job's before/after evaluation uses 16 physics + 16 general eval prompts and one noise seed, so one run's paired
standard error of Δ physics_score is about 0.02-0.03, as large as the changes it measures. This loads each run's
final LoRA adapter (`checkpoints/step_<iterations>/adapter_default`) onto the shipped student and rolls out all 32 +
32 eval prompts under each of `--seeds` noise seeds, with the adapter (after) and without it (before, the same
rollouts for every run), then prints each run's Δ, paired clip by clip (n = 32 x seeds per domain), of
physics_score, general_score and `g_law_ok` (the share of physics rollouts whose fitted gravity is nearest the true
law's; paired over the clips fitted both times).

    python tools/afd_reeval.py --student causal_forcing [--table runs/afd_table_1206] [--seeds 1234 1 2] [--threads 1]

Writes the per-clip scores to `<table>/reeval_<student>.json`.
"""
import argparse, json, time
from pathlib import Path
import numpy as np, torch
from afd_nb.student import load_student
from afd_nb.evaluate import EvalResult, evaluate_student, paired_delta
from afd_nb.run_state import checkpoint_name
from afd_nb.teachers import load_prompts

KEYS = ('physics_score', 'general_score', 'g_law_ok')


def rollouts(st, prompts, seeds, view) -> EvalResult:
    "One `EvalResult` of `prompts` rolled out under each seed in turn (clips in seed-major order), under view `view`."
    clips, reports = [], []
    with st.view(view):
        for s in seeds:
            r = evaluate_student(st, prompts, s, 16, False)
            clips += r.clips; reports += r.reports
    return EvalResult(clips, reports)


def per_clip(res: EvalResult) -> list:
    "Each clip's physics_score and general_score (None outside its domain), for the JSON file."
    return [[rep.get(k) for k in KEYS] for rep in res.reports]


def paired(before: EvalResult, after: EvalResult, key: str) -> str:
    d = paired_delta(before, after, key)
    return f"{d['mean']:+.3f} (SE {d['se']:.3f}, n {d['n']})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--table', default='runs/afd_table', help="tools/afd_table.py's --out")
    ap.add_argument('--methods', nargs='+', default=['afd', 'sft'])
    ap.add_argument('--run-seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--seeds', nargs='+', type=int, default=[1234, 1, 2], help='noise seeds of the evaluation')
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    table = Path(a.table)
    runs = {f'{m}_s{k}': table/f'{a.student}_{m}_s{k}' for m in a.methods for k in a.run_seeds}
    missing = [str(p) for p in runs.values() if not (p/'summary.json').exists()]
    if missing: raise SystemExit(f"unfinished or absent runs (run tools/afd_table.py first): {missing}")
    summaries = {tag: json.loads((run/'summary.json').read_text()) for tag, run in runs.items()}
    sources = {s['student_source'] for s in summaries.values()}   # the weights every run started from
    if len(sources) != 1: raise SystemExit(f"the runs started from different students {sorted(sources)}: re-evaluate them apart")
    st = load_student(a.student, 'tiny', checkpoint=sources.pop(), device='cpu').add_adapters()
    prompts = load_prompts('physics', 'eval') + load_prompts('general', 'eval')
    t0 = time.time()
    base = rollouts(st, prompts, a.seeds, 'ref')
    out = {'seeds': a.seeds, 'base': per_clip(base)}
    print(f"{a.student} base: physics {np.mean([r['physics_score'] for r in base.reports if 'physics_score' in r]):.3f}, "
          f"general {np.mean([r['general_score'] for r in base.reports if 'general_score' in r]):.3f}, "
          f"true-law share {np.nanmean([r.get('g_law_ok', np.nan) for r in base.reports]):.3f} "
          f"({len(prompts)} prompts x {len(a.seeds)} seeds, {time.time() - t0:.0f} s)", flush=True)
    for tag, run in runs.items():
        step = summaries[tag]['iterations_done']
        st.load_adapter(run/'checkpoints'/checkpoint_name(step)/'adapter_default', 'default')
        after = rollouts(st, prompts, a.seeds, 'default')
        out[tag] = per_clip(after)
        print(f"{a.student} {tag}: Δ physics {paired(base, after, 'physics_score')}, "
              f"Δ general {paired(base, after, 'general_score')}, Δ true-law share {paired(base, after, 'g_law_ok')} "
              f"({time.time() - t0:.0f} s)", flush=True)
    (table/f'reeval_{a.student}.json').write_text(json.dumps(out))


if __name__ == '__main__':
    main()
