"""Several processes (issue 29): `accelerate launch` on the CPU (gloo) with the tiny student.

`accelerate launch --cpu` starts one process unless MPI is set up, so the CPU runs use
`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2` (torch.distributed with gloo)."""
import json, os, re, subprocess, sys
from pathlib import Path

import pytest, torch

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'ACCELERATE_USE_CPU': '1', 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg', 'PYTHONPATH': str(ROOT)}
LAUNCH2 = [sys.executable, '-m', 'accelerate.commands.launch', '--multi_gpu', '--num_processes', '2',
           '--num_machines', '1', '--mixed_precision', 'no', '--dynamo_backend', 'no']


def run(cmd: list[str], env: dict = ENV, timeout: int = 600) -> str:
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd[:8])} ... failed (rc {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return p.stdout + p.stderr


def test_two_processes_with_half_the_batch_take_the_one_process_step(tmp_path):
    one, two, half = tmp_path/'one.pt', tmp_path/'two.pt', tmp_path/'half.pt'
    run([sys.executable, 'tests/mp_step.py', str(one)])
    run([sys.executable, 'tests/mp_step.py', str(half), 'half'])
    run(LAUNCH2 + ['tests/mp_step.py', str(two)])
    a, b, h = (torch.load(p)['grads'] for p in (one, two, half))
    scale = max(g.abs().max() for g in a.values())
    assert scale > 0
    assert max((a[k] - b[k]).abs().max() for k in a) <= 1e-5 * scale        # the same gradient into the same AdamW
    assert max((a[k] - h[k]).abs().max() for k in a) > 1e-2 * scale         # half the batch alone is another step


JOB = ['-m', 'afd_nb.launch', 'nbs/train_afd.ipynb', '-p', 'batch_size', '4', '-p', 'group_size', '2',
       '-p', 'n_teacher_prompts', '4', '-p', 'eval_prompts', '1', '-p', 'eval_prompts_periodic', '1', '-p', 'eval_every', '0',
       '-p', 'n_clips', '1', '-p', 'threads', '1', '-p', 'anchor_prompts', '2', '-p', 'inspect_every', '0']


def adapters(out: Path) -> dict:
    from safetensors.torch import load_file
    from afd_nb.run_state import latest_checkpoint
    ck = latest_checkpoint(out/'checkpoints')
    return {f'{v}/{k}': t for v in ('default', 'old') for f in (ck/f'adapter_{v}').glob('*.safetensors') for k, t in load_file(f).items()}


def test_the_job_on_two_processes_fetches_once_writes_once_and_resumes(tmp_path):
    env = {**ENV, 'AFD_RUNS_DIR': str(tmp_path/'runs')}   # a fresh teacher cache
    full, stopped = tmp_path/'full', tmp_path/'stopped'
    log = run(LAUNCH2 + JOB + ['-p', 'iterations', '2', '-p', 'out_dir', str(full)], env)
    assert log.count('2 process(es)') == 2
    fetches = sorted(re.findall(r'\((\d+) hits, (\d+) misses so far\)', log))
    assert fetches == [('0', '4'), ('4', '0')], fetches   # the main process fetched the 4 clips, the other read its cache
    rows = [json.loads(l) for l in (full/'metrics.jsonl').read_text().splitlines()]
    assert [r['iteration'] for r in rows if r['kind'] == 'train'] == [1, 2]   # written once, not once per process
    ck = full/'checkpoints'
    assert sorted(p.name for p in ck.iterdir()) == ['latest', 'step_000002']   # one checkpoint (at the end), no leftovers
    assert sorted(p.name for p in (ck/'step_000002').glob('rng_*.pt')) == ['rng_0.pt', 'rng_1.pt']   # each process's RNG
    assert json.loads((full/'summary.json').read_text())['iterations_done'] == 2
    # stop after one iteration, then run again with the same out_dir: it resumes and ends where the full run ended
    run(LAUNCH2 + JOB + ['-p', 'iterations', '1', '-p', 'out_dir', str(stopped)], env)
    log = run(LAUNCH2 + JOB + ['-p', 'iterations', '2', '-p', 'out_dir', str(stopped)], env)
    assert 'RESUMING from' in log and '(iteration 1)' in log
    a, b = adapters(full), adapters(stopped)
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
