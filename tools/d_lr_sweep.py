"""The discriminator learning-rate sweep (issue 27, item 2): Δ law_ok and D's accuracy against d_lr, in one figure.

    python tools/d_lr_sweep.py --student causal_forcing            # runs/d_lr_sweep/, resumable
    python tools/d_lr_sweep.py --student causal_forcing --plot-only

Runs the main job (`nbs/train_afd.ipynb`, every other parameter its default) at each `--lrs` value with seed 0, and at
the default 5e-4 with `--default-seeds` (0 1 2); 0 keeps D at its initial weights (the paper's "stale" regime). A run
whose summary.json exists is not redone. The figure plots each run's paired Δ law_ok (± its SE) and its D's training
accuracy (the mean `d_acc` of its last 20 iterations, a twin axis), and labels each d_lr with the paper's regime the
run shows, by these rules, in order: 0 is stale; Δ law_ok at least one SE below 0, or general_score down by more than
0.02, is suppressing; Δ law_ok at least one SE above 0 is informative; otherwise saturated where D's accuracy is
≥ 0.95, else flat. The outcome comes first because the weights (E7) are normalised per batch: a D that wins every
pair still ranks the rollouts, so its accuracy alone does not say its signal is gone.
"""
from __future__ import annotations
import argparse, json, subprocess, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = 5e-4


def run(student: str, d_lr: float, seed: int, out: Path, params: list) -> Path:
    folder = out/f'{student}_dlr{d_lr:g}_s{seed}'
    if (folder/'summary.json').exists(): return folder
    cmd = ['papermill', str(ROOT/'nbs'/'train_afd.ipynb'), str(folder) + '.ipynb', '--cwd', str(ROOT), '-p', 'student', student,
           '-p', 'd_lr', str(d_lr), '-p', 'seed', str(seed), '-p', 'out_dir', str(folder)]
    for k, v in params: cmd += ['-p', k, v]
    t0 = time.time()
    with open(str(folder) + '.log', 'w') as log: rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    print(f"{folder.name}: rc {rc}, {(time.time() - t0) / 60:.1f} min", flush=True)
    return folder


def point(folder: Path) -> dict | None:
    "One run's d_lr, Δ law_ok ± SE, Δ general and D's accuracy over its last 20 iterations."
    if not (folder/'summary.json').exists(): return None
    s = json.loads((folder/'summary.json').read_text())
    rows = [json.loads(l) for l in (folder/'metrics.jsonl').read_text().splitlines() if l.strip()]
    acc = [r['d_acc'] for r in rows if r.get('kind') == 'train' and 'd_acc' in r][-20:]
    dl, dg = s['delta_paired']['law_ok'], s['delta_paired']['general_score']
    return dict(d_lr=s['config']['d_lr'], seed=s['config']['seed'], dlaw=dl['mean'], se=dl['se'], dgen=dg['mean'],
                acc=float(np.mean(acc)) if acc else float('nan'))


def regime(p: dict) -> str:
    "The paper's regime a run shows, by its outcome first: (E7)'s normalised advantages keep a confident D's ranking."
    if p['d_lr'] == 0: return 'stale'
    if p['dlaw'] <= -p['se'] or p['dgen'] < -0.02: return 'suppressing'
    if p['dlaw'] >= p['se']: return 'informative'
    return 'saturated' if p['acc'] >= 0.95 else 'flat'


def plot(points: list[dict], out: Path, student: str) -> None:
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    lrs = sorted({p['d_lr'] for p in points})
    pos = {lr: i for i, lr in enumerate(lrs)}
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax2 = ax.twinx()
    for p in points:
        ax.errorbar(pos[p['d_lr']] + 0.06 * p['seed'], p['dlaw'], yerr=p['se'], fmt='o', color='C0', capsize=3)
        ax2.plot(pos[p['d_lr']] + 0.06 * p['seed'], p['acc'], 's', color='C3', alpha=0.7)
    for lr in lrs:
        ps = [p for p in points if p['d_lr'] == lr]
        mean = dict(d_lr=lr, dlaw=np.mean([p['dlaw'] for p in ps]), se=np.mean([p['se'] for p in ps]) / np.sqrt(len(ps)),
                    dgen=np.mean([p['dgen'] for p in ps]), acc=np.mean([p['acc'] for p in ps]))
        ax.annotate(regime(mean), (pos[lr], 0), xycoords=('data', 'axes fraction'), xytext=(0, 4), textcoords='offset points',
                    ha='center', fontsize=8, color='0.3')
    ax.axhline(0, color='0.6', lw=0.8)
    ax.set_xticks(range(len(lrs)), [f'{lr:g}' for lr in lrs]); ax.set_xlabel('discriminator learning rate d_lr')
    ax.set_ylabel('Δ law_ok (paired, ± SE)', color='C0'); ax2.set_ylabel("D's training accuracy (last 20 it.)", color='C3')
    ax2.set_ylim(0.4, 1.02)
    ax.set_title(f"{student}: the discriminator's learning rate")
    fig.tight_layout(); fig.savefig(out/f'd_lr_sweep_{student}.png', dpi=90)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--lrs', nargs='+', type=float, default=[0, 5e-6, 5e-5, 5e-4, 5e-3, 5e-2])
    ap.add_argument('--default-seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--out', type=Path, default=ROOT/'runs'/'d_lr_sweep')
    ap.add_argument('--param', nargs=2, action='append', default=[], metavar=('NAME', 'VALUE'))
    ap.add_argument('--plot-only', action='store_true')
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    todo = [(lr, 0) for lr in a.lrs] + [(DEFAULT, s) for s in a.default_seeds if s != 0]
    if not a.plot_only:
        for lr, seed in todo: run(a.student, lr, seed, a.out, a.param)
    points = [p for lr, seed in todo if (p := point(a.out/f'{a.student}_dlr{lr:g}_s{seed}'))]
    for p in points: print(f"d_lr {p['d_lr']:g} s{p['seed']}: Δ law_ok {p['dlaw']:+.3f} ± {p['se']:.3f}, Δ general {p['dgen']:+.3f}, "
                           f"D accuracy {p['acc']:.2f} -> {regime(p)}")
    if points: plot(points, a.out, a.student)


if __name__ == '__main__':
    main()
