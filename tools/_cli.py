"""The preamble the tools' scripts share: the student's options, torch's threads, a student load, `NAME:FOLDER` specs.

A script run as `python tools/x.py` has `tools/` on its path, so it imports this as `from _cli import ...`.
"""
from __future__ import annotations
import argparse, warnings


def student_args(ap: argparse.ArgumentParser, positional: bool = False, checkpoint: bool = True,
                 threads: int | None = 2, default: str = 'causal_forcing') -> argparse.ArgumentParser:
    """Add the student's options to `ap`: `--student NAME` (default `default`), or the positional `student` with
    `positional`; `--checkpoint FOLDER` (default: the shipped weights) unless `checkpoint` is False; `--threads N`
    (default `threads`, 0: torch's own) unless `threads` is None."""
    if positional: ap.add_argument('student', help="student name (self_forcing | causal_forcing)")
    else: ap.add_argument('--student', default=default, help="student name (self_forcing | causal_forcing)")
    if checkpoint: ap.add_argument('--checkpoint', default=None, help="a student folder (default: the shipped weights)")
    if threads is not None: ap.add_argument('--threads', type=int, default=threads, help="torch threads (0: torch's default)")
    return ap


def setup_threads(n: int) -> None:
    "Use `n` torch threads for intra-op work; 0 leaves torch's default."
    if n:
        import torch
        torch.set_num_threads(n)


def load_tiny_student(name: str, checkpoint: str | None = None, *, device: str | None = None, quiet: bool = False):
    """The tiny student `name` from `checkpoint` (a folder; None or '': the shipped weights) on `device` (None: the
    kit's default device). With `quiet` its warnings are silenced (an untrained, randomly initialised student is fine
    for timing); without, a probe says so when it runs on one."""
    from afd_nb.student import load_student
    with warnings.catch_warnings():
        if quiet: warnings.simplefilter('ignore')
        return load_student(name, 'tiny', checkpoint or None, device=device)


def parse_student_specs(specs: list[str]) -> list[tuple[str, str | None]]:
    "`['NAME', 'NAME:FOLDER', ...]` -> `[(NAME, None), (NAME, FOLDER), ...]` (None: the shipped weights)."
    out = []
    for spec in specs:
        name, _, folder = spec.partition(':')
        out.append((name, folder or None))
    return out
