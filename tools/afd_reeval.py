#!/usr/bin/env python
"""Re-evaluate finished `tools/afd_table.py` runs on a larger eval: every eval prompt, several noise seeds.

The job's before/after evaluation uses 16 physics + 16 general eval prompts and one noise seed, so one run's paired
standard error of Δ physics_score is about 0.02-0.03, as large as the changes it measures. This loads each run's
final LoRA adapter (`checkpoints/step_<iterations>/adapter_default`) onto the shipped student and rolls out all 32 +
32 eval prompts under each of `--seeds` noise seeds, with the adapter (after) and without it (before, the same
rollouts for every run), then prints each run's Δ, paired clip by clip (n = 32 x seeds per domain).

    python tools/afd_reeval.py --student causal_forcing [--table runs/afd_table_1206] [--seeds 1234 1 2] [--threads 1]

Writes the per-clip scores to `<table>/reeval_<student>.json`.
"""
import argparse, json, time
from pathlib import Path
import numpy as np, torch
from afd_nb.student import load_student
from afd_nb.evaluate import evaluate_student
from afd_nb.teachers import load_prompts

KEYS = ('physics_score', 'general_score')


def scores(st, prompts, seeds, view) -> np.ndarray:
    "`[len(seeds) * len(prompts), 2]`: each clip's physics_score and general_score (NaN outside its domain)."
    rows = []
    with st.view(view):
        for s in seeds:
            r = evaluate_student(st, prompts, s, 16, False)
            rows += [[rep.get(k, np.nan) for k in KEYS] for rep in r.reports]
    return np.array(rows, float)


def paired(d: np.ndarray) -> str:
    x = d[np.isfinite(d)]
    return f"{x.mean():+.3f} (SE {x.std(ddof=1) / np.sqrt(len(x)):.3f}, n {len(x)})"


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
    st = load_student(a.student, 'tiny', device='cpu').add_adapters()
    prompts = load_prompts('physics', 'eval') + load_prompts('general', 'eval')
    t0 = time.time()
    base = scores(st, prompts, a.seeds, 'ref')
    out = {'seeds': a.seeds, 'base': base.tolist()}
    print(f"{a.student} base: physics {np.nanmean(base[:, 0]):.3f}, general {np.nanmean(base[:, 1]):.3f} "
          f"({len(prompts)} prompts x {len(a.seeds)} seeds, {time.time() - t0:.0f} s)", flush=True)
    for tag, run in runs.items():
        it = json.loads((run/'summary.json').read_text())['iterations_done']
        st.load_adapter(run/'checkpoints'/f'step_{it:06d}'/'adapter_default', 'default')
        after = scores(st, prompts, a.seeds, 'default')
        out[tag] = after.tolist()
        d = after - base
        print(f"{a.student} {tag}: Δ physics {paired(d[:, 0])}, Δ general {paired(d[:, 1])} "
              f"({time.time() - t0:.0f} s)", flush=True)
    (table/f'reeval_{a.student}.json').write_text(json.dumps(out))


if __name__ == '__main__':
    main()
