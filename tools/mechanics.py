#!/usr/bin/env python
"""Issue 26's mechanics checks: the main job (`nbs/train_afd.ipynb`) with a reward whose answer is known, per seed.

    python tools/mechanics.py world_law           # the oracle: each rollout's per-clip law_ok
    python tools/mechanics.py darkness            # the trivial reward: mean darkness of the rollout
    python tools/mechanics.py random              # the null control: uniform noise
        [--seeds 0 1 2] [--student causal_forcing] [--out runs/mechanics] [--jobs 1] [-p NAME VALUE ...]

Each run is `papermill nbs/train_afd.ipynb <out>/<reward>_s<seed>.ipynb -p reward <reward> -p seed <seed>
-p out_dir <out>/<reward>_s<seed>` with the settings below (printed first; `-p NAME VALUE` overrides or adds any job
parameter). A run whose `summary.json` exists is not run again (delete its folder to redo it). With `--jobs 1` the
job's own output streams live (its `print_every` line: the mean reward and the training rollouts' `law_ok` share);
afterwards, per run, the curve of the training rollouts every 10 iterations (mean reward, `law_ok` share where
scored) and the paired eval change (eval `law_ok` share and general_score, before -> after, with the paired SE),
then the verdict of the issue's done-when for this reward over the seeds:
  world_law: eval law_ok share after >= 0.6 and |Δ general_score| <= 0.03;
  random:    |Δ law_ok share| < 0.03 and |Δ general_score| < 0.03;
  darkness:  the training reward rises steadily (every 10-iteration mean above the previous one, bar one).

`--jobs 2` runs two seeds at once with one torch thread each (the 2-core machine); logs go to <out>/<run>.log.
A variant of the settings needs its own `--out` (a finished run in the folder is not run again).
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REWARDS = ('world_law', 'darkness', 'random')
# The measured settings (EXPERIMENTS.md, "Does the update follow a reward?"): 32 rollouts per optimizer step (4 prompts
# x 8) with the anchors' baseline and adaptive x0-space loss, trained at the sampler's first level only (train_levels 1,
# one draw: the same gain as all levels at half the student's cost), lr 2e-3 (5e-4 moved the eval nowhere in 40
# iterations), 8 general-domain anchor prompts per iteration held to the reference at weight 10 (without them the
# oracle cost 0.04-0.05 general_score), no discriminator, 80 iterations, all 32 eval prompts per domain.
SETTINGS = dict(batch_size=32, group_size=8, baseline='prompt_global_std', t_dist='sigmas_each', train_levels=1,
                noise_draws=1, micro_batch=8, adaptive=True, lr=2e-3, anchor_prompts=8, anchor_weight=10.0, d_steps=0,
                iterations=80, eval_every=0, eval_prompts=32, print_every=10, max_minutes=25.0)


def settings_for(reward: str, overrides: list[tuple[str, str]]) -> list[tuple[str, str]]:
    "The job parameters of one check, as papermill `-p` pairs (strings; papermill types them)."
    p = {**{k: str(v) for k, v in SETTINGS.items()}, 'reward': reward,
         'log_law': '0' if reward == 'world_law' else '10'}   # the oracle logs law_ok every iteration anyway
    p.update(dict(overrides))
    return list(p.items())


def run_one(reward: str, seed: int, out: Path, params: list[tuple[str, str]], live: bool) -> Path:
    "papermill one run (skipped when its summary.json exists); returns its folder."
    folder = out/f'{reward}_s{seed}'
    if (folder/'summary.json').exists(): return folder
    cmd = [sys.executable, '-m', 'papermill', str(ROOT/'nbs'/'train_afd.ipynb'), str(out/f'{folder.name}.ipynb'),
           '--cwd', str(ROOT), '--log-output', '--no-progress-bar', '-p', 'seed', str(seed), '-p', 'out_dir', str(folder)]
    for k, v in params: cmd += ['-p', k, v]
    t0 = time.time()
    if live: rc = subprocess.call(cmd)
    else:
        with open(out/f'{folder.name}.log', 'w') as log: rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    print(f"{folder.name}: rc {rc}, {(time.time() - t0) / 60:.1f} min", flush=True)
    if rc: raise RuntimeError(f"{folder.name} failed (rc {rc})" + ('' if live else f": see {out/f'{folder.name}.log'}"))
    return folder


def curve(rows: list[dict], every: int = 10) -> list[tuple[int, float, float]]:
    "(last iteration, mean reward, mean law_ok share or NaN) of the training rows, per block of `every` iterations."
    tr = [r for r in rows if r.get('kind') == 'train']
    out = []
    for s in range(0, len(tr), every):
        block = tr[s:s + every]
        law = [r['law_ok'] for r in block if r.get('law_ok') is not None]
        out.append((block[-1]['iteration'], float(np.mean([r['score_mean'] for r in block])),
                    float(np.mean(law)) if law else float('nan')))
    return out


def report(folder: Path) -> dict:
    "Print one run's curve and paired eval change; return the numbers the verdict needs."
    s = json.loads((folder/'summary.json').read_text())
    rows = [json.loads(l) for l in (folder/'metrics.jsonl').read_text().splitlines() if l.strip()]
    cur = curve(rows)
    tr = [r for r in rows if r.get('kind') == 'train']
    flat = sum(1 for r in tr if not r.get('score_std'))   # every rollout scored alike: r = 1/2, no signal (E7)
    law = lambda x: x['parts'].get('physics', {}).get('law_ok', float('nan'))
    d = s['delta_paired']
    print(f"\n{folder.name}: {s['iterations_done']} iterations, wall {s['wall_time_s'] / 60:.1f} min "
          f"(train {s['train_time_s'] / 60:.1f}), {s['threads']} thread(s); seconds by part {s.get('time_parts')}")
    for it, rew, lo in cur: print(f"   iteration {it:4d}: training reward {rew:.4f}   law_ok share {lo:.3f}")
    if flat: print(f"   WARNING: {flat} of {len(tr)} iterations had no reward spread (every weight 1/2: nothing to follow)")
    print(f"   eval law_ok share {law(s['before']):.3f} -> {law(s['after']):.3f} (paired Δ {d['law_ok']['mean']:+.3f} "
          f"± {d['law_ok']['se']:.3f}); general_score {s['before']['general_score']:.3f} -> {s['after']['general_score']:.3f} "
          f"(paired Δ {d['general_score']['mean']:+.3f} ± {d['general_score']['se']:.3f})")
    return dict(law_after=law(s['after']), d_law=d['law_ok']['mean'], d_general=d['general_score']['mean'],
                rewards=[c[1] for c in cur], wall=s['wall_time_s'])


def plot_curves_of(folders: list[Path], reward: str, path: Path, labels: list[str] | None = None) -> None:
    "One line per run (`labels`, default the folder names): the training rollouts' mean reward per iteration (thin) and per 10 iterations (thick)."
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for k, f in enumerate(folders):
        rows = [json.loads(l) for l in (f/'metrics.jsonl').read_text().splitlines() if l.strip()]
        tr = [r for r in rows if r.get('kind') == 'train']
        ax.plot([r['iteration'] for r in tr], [r['score_mean'] for r in tr], color=f'C{k}', lw=0.6, alpha=0.4)
        cur = curve(rows)
        ax.plot([c[0] - 5 for c in cur], [c[1] for c in cur], color=f'C{k}', lw=2, marker='o', label=labels[k] if labels else f.name)
    what = {'world_law': 'law_ok share', 'darkness': 'mean darkness', 'random': 'mean random reward'}[reward]
    ax.set(xlabel='iteration', ylabel=what, title=f"reward {reward}: the training rollouts' {what}")
    ax.legend(fontsize=7); fig.tight_layout(); path.parent.mkdir(parents=True, exist_ok=True); fig.savefig(path, dpi=110)
    print(f"curves saved to {path}")


def verdict(reward: str, res: list[dict]) -> str:
    "The issue's done-when for `reward`, over the runs `res` (see the module docstring)."
    if reward == 'world_law':
        ok = all(r['law_after'] >= 0.6 and abs(r['d_general']) <= 0.03 for r in res)
        what = "eval law_ok share >= 0.6 and |Δ general| <= 0.03 in every seed"
    elif reward == 'random':
        ok = all(abs(r['d_law']) < 0.03 and abs(r['d_general']) < 0.03 for r in res)
        what = "|Δ law_ok share| < 0.03 and |Δ general| < 0.03 in every seed"
    else:
        ok = all(len(r['rewards']) > 1 and sum(b <= a for a, b in zip(r['rewards'], r['rewards'][1:])) <= 1 for r in res)
        what = "the darkness reward rises from block to block (at most one dip) in every seed"
    return f"{'PASS' if ok else 'FAIL'}: {what}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('reward', choices=REWARDS)
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--student', default='causal_forcing')
    ap.add_argument('--out', default=str(ROOT/'runs'/'mechanics'))
    ap.add_argument('--jobs', type=int, default=1, help="runs at once (each gets cores // jobs torch threads)")
    ap.add_argument('-p', '--param', nargs=2, action='append', default=[], metavar=('NAME', 'VALUE'))
    ap.add_argument('--plot', default='', help="save the training reward curves of the seeds to this image file")
    a = ap.parse_args(argv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    threads = [('threads', str(max(1, (os.cpu_count() or 1) // a.jobs)))] if a.jobs > 1 else []
    params = settings_for(a.reward, [('student', a.student), *threads, *map(tuple, a.param)])
    print(f"{a.reward}, seeds {a.seeds}: " + ' '.join(f"-p {k} {v}" for k, v in params), flush=True)
    with ThreadPoolExecutor(a.jobs) as ex:
        folders = list(ex.map(lambda s: run_one(a.reward, s, out, params, a.jobs == 1), a.seeds))
    res = [report(f) for f in folders]
    print(f"\n{a.reward} over seeds {a.seeds}: Δ law_ok share {np.mean([r['d_law'] for r in res]):+.3f} "
          f"(sd {np.std([r['d_law'] for r in res], ddof=1) if len(res) > 1 else float('nan'):.3f}), Δ general_score "
          f"{np.mean([r['d_general'] for r in res]):+.3f}, wall {np.mean([r['wall'] for r in res]) / 60:.1f} min per run")
    print(verdict(a.reward, res))
    if a.plot: plot_curves_of(folders, a.reward, Path(a.plot))


if __name__ == '__main__':
    main()
