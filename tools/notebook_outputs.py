"""The numbered notebooks keep their outputs (figures, tables, printed checks), so that they read as documents on a
code host. This writes them and checks that they are current.

    python tools/notebook_outputs.py run              # execute every numbered notebook, keep its outputs (~7 min here, one at a time)
    python tools/notebook_outputs.py run nbs/02_theory.ipynb   # just one
    python tools/notebook_outputs.py check            # CI: fail when a notebook's code changed after its outputs were written

`run` executes each notebook as `nbdev-test --save` does (the fast path: `#| slow` cells skipped, `IN_TEST` set, one
torch thread; figures as plain PNG at the figure's dpi rather than execnb's double-size 'retina'), cleans it with `nbdev-clean` (outputs stay), and records in `nbs/outputs.lock.json` the hash of the
notebook's code cells. `check` recomputes the hashes: a notebook whose code cells differ from the recorded hash, or
that has no record, has stale outputs. What it cannot see: a change in another module that alters this notebook's
figures without touching its cells. Rerun `run` on the notebooks downstream of such a change.
"""
from __future__ import annotations
import argparse, hashlib, json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT/'nbs'/'outputs.lock.json'


def numbered_notebooks() -> list[Path]:
    "The library's notebooks (`nbs/NN_*.ipynb`); the job notebooks write runs, not documents."
    return sorted(p for p in (ROOT/'nbs').glob('[0-9][0-9]_*.ipynb'))


def code_hash(nb_path: Path) -> str:
    "sha256 of the notebook's code cells' sources, in order (prose edits do not make outputs stale)."
    cells = json.loads(nb_path.read_text())['cells']
    code = [''.join(c['source']) for c in cells if c['cell_type'] == 'code']
    return hashlib.sha256(json.dumps(code).encode()).hexdigest()


def read_lock() -> dict[str, str]:
    return json.loads(LOCK.read_text()) if LOCK.exists() else {}


def execute_one(path: Path) -> int:
    "Execute one notebook in this process and save its outputs (nbdev's `test_nb`, with plain-PNG figures)."
    import functools
    import nbdev.test
    from execnb.shell import CaptureShell
    from nbdev.config import get_config
    nbdev.test.CaptureShell = functools.partial(CaptureShell, mpl_format='png')   # 'retina' doubles every figure's pixels
    ok, _ = nbdev.test.test_nb(path, skip_flags=get_config().tst_flags.split(), save=True)
    return 0 if ok else 1


def run(paths: list[Path]) -> int:
    lock, failed = read_lock(), []
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    for p in paths:
        print(f"== {p.name}", flush=True)
        if subprocess.call([sys.executable, __file__, '_execute', str(p)], cwd=ROOT, env=env):   # one process per notebook
            failed.append(p.name); continue   # a failing notebook keeps its old outputs and its old hash
        subprocess.check_call(['nbdev-clean', '--fname', str(p)], cwd=ROOT)
        lock[p.name] = code_hash(p)
        LOCK.write_text(json.dumps(dict(sorted(lock.items())), indent=1) + '\n')   # after each: a stop keeps what was written
    if failed: print(f"FAILED (outputs not written): {', '.join(failed)}")
    return 1 if failed else 0


def check() -> int:
    lock = read_lock()
    stale = [p.name for p in numbered_notebooks() if lock.get(p.name) != code_hash(p)]
    if stale:
        print("notebook outputs older than their code (or never written): " + ", ".join(stale))
        print("rerun: python tools/notebook_outputs.py run " + " ".join(f"nbs/{n}" for n in stale) + "  and commit the notebooks")
        return 1
    print(f"notebook outputs current: {len(lock)} notebooks")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('command', choices=('run', 'check', '_execute'))
    ap.add_argument('notebooks', nargs='*', help="notebooks to run (default: every numbered notebook)")
    a = ap.parse_args(argv)
    if a.command == 'check': return check()
    if a.command == '_execute': return execute_one(Path(a.notebooks[0]).resolve())
    return run([Path(n).resolve() for n in a.notebooks] or numbered_notebooks())


if __name__ == '__main__':
    sys.exit(main())
