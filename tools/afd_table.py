"""Run `nbs/train_afd.ipynb` for students x methods x seeds and print the README's results table.

    python tools/afd_table.py --students causal_forcing self_forcing --methods afd sft gan dmd --seeds 0 1 2

Each run is `papermill nbs/train_afd.ipynb <out>/<student>_<method>_s<seed>.ipynb -p student S -p method M -p seed K
-p out_dir <out>/<student>_<method>_s<seed>`, plus any `--param NAME VALUE` pairs (given to every run). A run whose
`summary.json` exists is not run again (delete its folder to redo it), so the command resumes after a stop. The
table gives, per student, the base (the runs' 'before') and per method the mean ± standard deviation over the seeds
(sample std, ddof 1) of the physics `law_ok` share, physics_score, general_score and its parts after training, each Δ
with the paired standard error of one run's Δ (clip by clip over its eval prompts, `summary.json`'s `delta_paired`;
averaged over the seeds), and the wall time; `--markdown FILE` also writes it to a file.

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


def _ms(xs, sign: str = '') -> str:
    "Mean ± sample std (one value: the value); `sign='+'` writes the sign of a change."
    xs = np.asarray(xs, float)
    m = f"{xs.mean():{sign}.3f}"
    return f"{m} ± {xs.std(ddof=1):.3f}" if len(xs) > 1 else m


def _se(sums: list[dict], key: str) -> str:
    "The mean over runs of one run's paired standard error of Δ (summary `delta_paired`; '-' for older runs)."
    se = [d['delta_paired'][key]['se'] for d in sums if key in d.get('delta_paired', {})]
    return f"{np.mean(se):.3f}" if se else '-'


def _part(d: dict, when: str, dom: str, key: str) -> float:
    return d[when]['parts'].get(dom, {}).get(key, float('nan'))


GENERAL_PARTS = ('found', 'object_ok', 'direction_ok', 'place_ok', 'temporal_flickering_norm', 'motion_smoothness_norm')


def table(out: Path, students, methods, seeds) -> str:
    """Markdown table of the finished runs under `out`: a `base` row per student (the 'before' of its runs), then one
    row per method: mean ± std over seeds, Δ with the mean paired SE of one run, and the general parts after."""
    head = ("| student | method | seeds | law_ok | Δ law_ok (paired SE) | physics_score | Δ physics (SE) | general_score "
            "| Δ general (SE) | " + " | ".join(GENERAL_PARTS) + " | wall min |")
    rows = [head, "|" + "---|" * (10 + len(GENERAL_PARTS))]
    for s in students:
        runs = {m: [json.loads(p.read_text()) for k in seeds if (p := out/f'{s}_{m}_s{k}'/'summary.json').exists()] for m in methods}
        if not any(runs.values()): continue
        first = next(v for v in runs.values() if v)
        b = lambda key, dom: _ms([_part(d, 'before', dom, key) for d in first])
        rows.append(f"| {s} | base | - | {b('law_ok', 'physics')} | | {b('physics_score', 'physics')} | | {b('general_score', 'general')} | | "
                    + " | ".join(b(k, 'general') for k in GENERAL_PARTS) + " | |")
        for m, sums in runs.items():
            if not sums: continue
            a = lambda key, dom: [_part(d, 'after', dom, key) for d in sums]
            dl = lambda key, dom: [_part(d, 'after', dom, key) - _part(d, 'before', dom, key) for d in sums]
            wall = [d['wall_time_s'] / 60 for d in sums]
            rows.append(f"| {s} | {m} | {len(sums)} | {_ms(a('law_ok', 'physics'))} | {_ms(dl('law_ok', 'physics'), '+')} ({_se(sums, 'law_ok')}) "
                        f"| {_ms(a('physics_score', 'physics'))} | {_ms(dl('physics_score', 'physics'), '+')} ({_se(sums, 'physics_score')}) "
                        f"| {_ms(a('general_score', 'general'))} | {_ms(dl('general_score', 'general'), '+')} ({_se(sums, 'general_score')}) | "
                        + " | ".join(_ms(a(k, 'general')) for k in GENERAL_PARTS) + f" | {np.mean(wall):.1f} |")
    return '\n'.join(rows)


def criterion(out: Path, students, seeds, method: str = 'afd', gain: float = 0.15, n_se: float = 3.0, general: float = 0.02) -> str:
    """Issue 27's headline check, run by run: Δ law_ok >= `gain` and >= `n_se` paired SE, |Δ general_score| <= `general`."""
    lines = []
    for s in students:
        for k in seeds:
            p = out/f'{s}_{method}_s{k}'/'summary.json'
            d = json.loads(p.read_text()) if p.exists() else {}
            if 'law_ok' not in d.get('delta_paired', {}): continue   # unfinished, or a summary older than delta_paired's law_ok
            dl, dg = d['delta_paired']['law_ok'], d['delta_paired']['general_score']['mean']
            ok = dl['mean'] >= gain and dl['mean'] >= n_se * dl['se'] and abs(dg) <= general
            z = f"{dl['mean'] / dl['se']:.1f} SE" if dl['se'] > 0 else "SE 0"
            lines.append(f"{s} {method} s{k}: Δ law_ok {dl['mean']:+.3f} = {z}, Δ general {dg:+.3f}, "
                         f"{d['wall_time_s'] / 60:.1f} min ({d['threads']} threads) -> {'meets' if ok else 'misses'} "
                         f"(>= {gain}, >= {n_se:g} SE, |Δ general| <= {general})")
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--students', nargs='+', default=['causal_forcing', 'self_forcing'])
    ap.add_argument('--methods', nargs='+', default=['afd', 'sft', 'gan', 'dmd'])
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
    if 'afd' in a.methods: print(criterion(a.out, a.students, a.seeds))


if __name__ == '__main__':
    main()
