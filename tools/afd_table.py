"""Run `nbs/train_afd.ipynb` for students x methods x seeds and print the README's results table.

    python tools/afd_table.py --students causal_forcing self_forcing --methods afd sft --seeds 0 1 2

Each run is `papermill nbs/train_afd.ipynb <out>/<student>_<method>_s<seed>.ipynb -p student S -p method M -p seed K
-p out_dir <out>/<student>_<method>_s<seed>`, plus any `--param NAME VALUE` pairs (given to every run). A run whose
`summary.json` exists is not run again (delete its folder to redo it), so the command resumes after a stop. The
table gives mean ± standard deviation over the seeds (sample std, ddof 1) of physics_score and general_score before
and after, the paired standard error of one run's Δ (clip by clip over its eval prompts, `summary.json`'s
`delta_paired`; averaged over the seeds), and the wall time; `--markdown FILE` also writes it to a file.

`--jobs N` (N > 1) gives each run `threads = cores // N`. Two separate invocations started at the same moment do not know of
each other: each run's `threads 0` sees an idle machine and takes every core, and on the 2-core machine the
oversubscribed runs went 3 to 20 times slower. Run one invocation with `--jobs`, or pass `--param threads 1`.
"""
from __future__ import annotations
import argparse, itertools, json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_one(student: str, method: str, seed: int, out: Path, params: list[tuple[str, str]]) -> Path:
    "papermill one run (skipped when its summary.json exists); returns its folder."
    folder = out/f'{student}_{method}_s{seed}'
    if (folder/'summary.json').exists(): return folder
    cmd = ['papermill', str(ROOT/'nbs'/'train_afd.ipynb'), str(out/f'{folder.name}.ipynb'), '--cwd', str(ROOT),
           '-p', 'student', student, '-p', 'method', method, '-p', 'seed', str(seed), '-p', 'out_dir', str(folder)]
    for k, v in params: cmd += ['-p', k, v]
    t0 = time.time()
    with open(out/f'{folder.name}.log', 'w') as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    print(f"{folder.name}: rc {rc}, {(time.time() - t0) / 60:.1f} min", flush=True)
    if rc: raise RuntimeError(f"{folder.name} failed (rc {rc}): see {out/f'{folder.name}.log'}")
    return folder


def _ms(xs) -> str:
    xs = np.asarray(xs, float)
    return f"{xs.mean():.3f} ± {xs.std(ddof=1):.3f}" if len(xs) > 1 else f"{xs.mean():.3f}"


def _se(sums: list[dict], key: str) -> str:
    "The mean over runs of one run's paired standard error of Δ (summary `delta_paired`; '-' for older runs)."
    se = [d['delta_paired'][key]['se'] for d in sums if 'delta_paired' in d]
    return f"{np.mean(se):.3f}" if se else '-'


def table(out: Path, students, methods, seeds) -> str:
    "Markdown table of the finished runs under `out`."
    rows = ["| student | method | seeds | physics before | physics after | Δ physics | paired SE | general before "
            "| general after | Δ general | paired SE | wall min |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s, m in itertools.product(students, methods):
        sums = [json.loads(p.read_text()) for k in seeds if (p := out/f'{s}_{m}_s{k}'/'summary.json').exists()]
        if not sums: continue
        g = lambda when, key: [d[when][key] for d in sums]
        dp = [a - b for a, b in zip(g('after', 'physics_score'), g('before', 'physics_score'))]
        dg = [a - b for a, b in zip(g('after', 'general_score'), g('before', 'general_score'))]
        wall = [d['wall_time_s'] / 60 for d in sums]
        rows.append(f"| {s} | {m} | {len(sums)} | {_ms(g('before', 'physics_score'))} | {_ms(g('after', 'physics_score'))} "
                    f"| {_ms(dp)} | {_se(sums, 'physics_score')} | {_ms(g('before', 'general_score'))} "
                    f"| {_ms(g('after', 'general_score'))} | {_ms(dg)} | {_se(sums, 'general_score')} | {_ms(wall)} |")
    return '\n'.join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--students', nargs='+', default=['causal_forcing', 'self_forcing'])
    ap.add_argument('--methods', nargs='+', default=['afd', 'sft'])
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--jobs', type=int, default=1,
                    help="runs side by side (each gets cores // jobs torch threads unless --param threads is given)")
    ap.add_argument('--out', type=Path, default=ROOT/'runs'/'afd_table')
    ap.add_argument('--param', nargs=2, action='append', default=[], metavar=('NAME', 'VALUE'))
    ap.add_argument('--table-only', action='store_true', help="print the table of finished runs, run nothing")
    ap.add_argument('--markdown', type=Path)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.jobs > 1 and 'threads' not in dict(a.param):   # side-by-side runs must not each take every core
        a.param.append(('threads', str(max(1, (os.cpu_count() or 1) // a.jobs))))
    if not a.table_only:
        todo = list(itertools.product(a.seeds, a.students, a.methods))   # seed-major: a partial table has all cells
        with ThreadPoolExecutor(a.jobs) as ex:
            futs = [ex.submit(run_one, s, m, k, a.out, a.param) for k, s, m in todo]
            errors = [f.exception() for f in futs if f.exception() is not None]
        for e in errors: print(e, file=sys.stderr)
    md = table(a.out, a.students, a.methods, a.seeds)
    print(md)
    if a.markdown: a.markdown.write_text(md + '\n')


if __name__ == '__main__':
    main()
