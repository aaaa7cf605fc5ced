"""Long-horizon evaluation (issue 27, item 4): every trained student of a table, rolled out for twice its training length.

    python tools/long_horizon.py runs/afd_table            # every <student>_<method>_s<seed>/ with a summary.json
    python tools/long_horizon.py runs/afd_table --factor 2 --threads 2

For each run folder the trained adapter (`checkpoints/latest/adapter_default`) is loaded onto the run's student and
rolled out on the job's eval prompts (32 physics + 32 general, eval seed 1234) for `factor` × its latent frames; the base
student (no adapter) is rolled out once per student the same way. The general domain is scored per block of the
training length (`afd_nb.evaluate.split_clips`). The physics domain is scored on the whole long clip: the world's fit
models a clip from the scenario's start, so a later block of even the world's own render fails `law_ok` (5 of 32 pass;
nbs/25_evaluate.ipynb), while the whole long render passes every prompt. Writes `<run>/long_horizon.json`,
`<out>/long_horizon.png` and `<out>/long_horizon.md`; a run whose json exists is not redone.
"""
from __future__ import annotations
import argparse, json, math, warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
METHOD_ORDER = ('base', 'sft', 'gan', 'dmd', 'afd')


def _reports(student, prompts, seed, frames, block) -> dict:
    "Per-clip numbers: physics `law_ok`, `physics_score` on the whole clip; general `general_score` per block."
    from afd_nb.evaluate import evaluate_clips, sample_clips, split_clips
    clips = sample_clips(student, prompts, seed, 16, False, num_frames=frames)
    phys = [c for c in clips if c.prompt in prompts[:len(prompts) // 2]]
    gen = [c for c in clips if c.prompt not in prompts[:len(prompts) // 2]]
    ph = evaluate_clips(phys).reports
    out = {'prompts_physics': [c.prompt for c in phys], 'prompts_general': [c.prompt for c in gen],
           'law_ok': [r['law_ok'] for r in ph], 'physics_score': [r['physics_score'] for r in ph]}
    for b, blk in enumerate(split_clips(gen, block)):
        out[f'general_block{b + 1}'] = [r['general_score'] for r in evaluate_clips(blk).reports]
    return out


def _student(summary: dict, adapter: Path | None):
    from afd_nb.student import load_student
    p = summary['parameters']
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        st = load_student(p['student'], p.get('size', 'tiny'), p.get('checkpoint') or None, device='cpu')
    if adapter is not None: st.load_adapter(adapter, 'default')
    return st


def evaluate_run(folder: Path, base_cache: dict, factor: int) -> dict:
    "The long-horizon numbers of one run (and of its base student, computed once per student)."
    from afd_nb.run_state import latest_checkpoint
    from afd_nb.teachers import load_prompts
    summary = json.loads((folder/'summary.json').read_text())
    p = summary['parameters']
    n = p.get('eval_prompts', 32)
    prompts = load_prompts('physics', 'eval')[:n] + load_prompts('general', 'eval')[:n]
    seed = summary['config'].get('eval_seed', 1234)
    st = _student(summary, None)
    frames, block = factor * st.preset.num_frames, st.codec.pixel_shape((st.preset.num_frames, 1, 1))[0]
    key = (p['student'], seed, frames, n)
    if key not in base_cache: base_cache[key] = _reports(st, prompts, seed, frames, block)
    ck = latest_checkpoint(folder/'checkpoints')   # `latest` is a file naming the newest step folder
    trained = _reports(_student(summary, ck/'adapter_default'), prompts, seed, frames, block)
    return dict(student=p['student'], method=p['method'], seed=p['seed'], factor=factor, latent_frames=frames,
                block_frames=block, base=base_cache[key], trained=trained)


def paired(base: list, after: list) -> tuple[float, float]:
    "Mean of the per-prompt differences and its standard error."
    d = np.asarray(after, float) - np.asarray(base, float)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan


def table_and_figure(results: list[dict], out: Path) -> str:
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = ['law_ok', 'physics_score'] + sorted(k for k in results[0]['base'] if k.startswith('general_block'))
    rows = ["| student | method | runs | " + " | ".join(f"{k} (Δ ± paired SE)" for k in keys) + " |",
            "|---|---|---|" + "---|" * len(keys)]
    students = sorted({r['student'] for r in results})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), squeeze=False)
    for si, s in enumerate(students):
        rs = [r for r in results if r['student'] == s]
        base = rs[0]['base']
        rows.append(f"| {s} | base | - | " + " | ".join(f"{np.mean(base[k]):.3f}" for k in keys) + " |")
        methods = [m for m in METHOD_ORDER if m == 'base' or any(r['method'] == m for r in rs)]
        for mi, m in enumerate(methods):
            sel = [r['trained'] for r in rs if r['method'] == m] if m != 'base' else [base]
            cells = []
            for ki, k in enumerate(keys):
                vals = [np.mean(t[k]) for t in sel]
                if m != 'base':
                    d = [paired(r['base'][k], r['trained'][k]) for r in rs if r['method'] == m]
                    cells.append(f"{np.mean(vals):.3f} ({np.mean([x[0] for x in d]):+.3f} ± {np.mean([x[1] for x in d]):.3f})")
                x = mi + si * (len(METHOD_ORDER) + 1)
                axes[0, ki].bar(x, np.mean(vals), yerr=np.std(vals, ddof=1) if len(vals) > 1 else 0,
                                color=f"C{mi}", label=m if (ki == 0 and si == 0) else None)
            if m != 'base': rows.append(f"| {s} | {m} | {len(sel)} | " + " | ".join(cells) + " |")
    for ki, k in enumerate(keys):
        axes[0, ki].set_title(k.replace('_', ' ')); axes[0, ki].set_ylim(0, 1)
        axes[0, ki].set_xticks([2 + si * (len(METHOD_ORDER) + 1) for si in range(len(students))], students)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"rollouts {results[0]['factor']}x the training length: physics on the whole clip, general per block")
    fig.tight_layout(); fig.savefig(out/'long_horizon.png', dpi=90)
    return '\n'.join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('out', type=Path, help="a folder of runs (tools/afd_table.py's --out)")
    ap.add_argument('--factor', type=int, default=2)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from afd_nb.run_state import latest_checkpoint
    runs = sorted(f.parent for f in a.out.glob('*/summary.json') if latest_checkpoint(f.parent/'checkpoints') is not None)
    if not runs: raise SystemExit(f"no finished runs (summary.json and checkpoints/latest) under {a.out}")
    base_cache, results = {}, []
    for f in runs:
        js = f/'long_horizon.json'
        if js.exists() and json.loads(js.read_text()).get('factor') == a.factor: results.append(json.loads(js.read_text())); continue
        r = evaluate_run(f, base_cache, a.factor)
        js.write_text(json.dumps(r)); results.append(r)
        blocks = ' / '.join(f"{np.mean(v):.3f}" for k, v in sorted(r['trained'].items()) if k.startswith('general_block'))
        print(f"{f.name}: law_ok {np.mean(r['trained']['law_ok']):.3f} (base {np.mean(r['base']['law_ok']):.3f}), "
              f"general per block {blocks}", flush=True)
    md = table_and_figure(results, a.out)
    (a.out/'long_horizon.md').write_text(md + '\n')
    print(md)


if __name__ == '__main__':
    main()
