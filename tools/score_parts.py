#!/usr/bin/env python
"""Where a student's world scores are lost: the parts of `general_score` and `physics_score`, per domain and per
single- / two-object scenes, for students evaluated like their cards (eval prompts, the preset's few steps) and for
the world's own renders of the same prompts (the teacher, true law).

It prints, per row, the mean of every part the score averages (`general_report` / `physics_report`), the median
trajectory error of the fit (`motion_rmse`, `position_rmse`, world units; the scores give exp(-(rmse / 0.2)²)), the
pass rate of each prompt check (direction, speed, size, ...), and `general_score` recomputed with motion_score set
to 1: how much the motion fit alone costs.

    python tools/score_parts.py causal_forcing [self_forcing:FOLDER ...] [--seed 123] [--n 32] [--threads 2]
"""
import argparse
import re

import numpy as np

from _cli import load_tiny_student, parse_student_specs, setup_threads

GENERAL_PARTS = ('shape_ok', 'temporal_flickering_norm', 'motion_smoothness_norm', 'dynamic', 'motion_score', 'prompt_score')
GENERAL_WEIGHTS = (1.0, 1.0, 1.0, 0.5, 1.0, 1.0)     # general_report's weights, in GENERAL_PARTS' order
PHYSICS_PARTS = ('accel_score', 'trajectory_score', 'prompt_score', 'bounce_score', 'momentum_score')
MULTI = ('two_objects', 'collision')


def world_clips(prompts, seed: int):
    "The world's renders of `prompts` (scene k from `seed + k`, true law), as `Clip`s."
    from afd_nb.corpus import CorpusSpec, render_clip
    from afd_nb.video import Clip
    from afd_nb.world import parse_prompt
    spec = CorpusSpec()
    return [Clip(render_clip(p, seed + k, 'true' if parse_prompt(p).domain == 'physics' else 'general', spec), spec.fps, p)
            for k, p in enumerate(prompts)]


def check_rates(clips, prompts) -> dict:
    "Pass rate of each prompt check (numbered object suffixes merged), over clips whose fit settled."
    from afd_nb.metrics import fit_track, prompt_checks, track
    from afd_nb.world import parse_prompt
    rates = {}
    for c, p in zip(clips, prompts):
        pp = parse_prompt(p)
        objs = pp.attributes['objects']
        tr = track(c.frames, c.fps, colors=[o['color'] for o in objs])
        try: fit = fit_track(tr, pp.scenario, pp.domain, [o['shape'] for o in objs],
                             g=None if pp.domain == 'physics' else 0.0)
        except Exception: fit = None
        if fit is None: continue
        for k, v in prompt_checks(pp, fit).items(): rates.setdefault(re.sub(r'_\d+$', '', k), []).append(float(v))
    return {k: float(np.mean(v)) for k, v in sorted(rates.items())}


def summarize(name: str, reports, clips, prompts) -> None:
    for dom, parts in (('general', GENERAL_PARTS), ('physics', PHYSICS_PARTS)):
        for multi in (False, True):
            idx = [i for i, r in enumerate(reports) if r['domain'] == dom and (r['scenario'] in MULTI) == multi]
            if not idx: continue
            rr = [reports[i] for i in idx]
            mean = lambda k: float(np.nanmean([r.get(k, np.nan) for r in rr])) if any(k in r for r in rr) else np.nan
            score = 'general_score' if dom == 'general' else 'physics_score'
            line = [f"{name:28s} {dom} {'two' if multi else 'one'}-object n={len(rr)}:",
                    f"{score} {mean(score):.3f} present {mean('present'):.2f} found {mean('found'):.2f}"]
            line += [f"{k} {mean(k):.2f}" for k in parts if np.isfinite(mean(k))]
            err = 'motion_rmse' if dom == 'general' else 'position_rmse'
            line.append(f"median {err} {np.nanmedian([r.get(err, np.nan) for r in rr]):.2f}")
            if dom == 'general':   # the score with a perfect motion fit: what the motion alone costs
                w = np.array(GENERAL_WEIGHTS)
                alt = [r['present'] * np.average([1.0 if k == 'motion_score' else float(np.nan_to_num(r.get(k, 0.0)))
                                                  for k in GENERAL_PARTS], weights=w) for r in rr if 'shape_ok' in r]
                line.append(f"score with motion_score 1: {np.mean(alt):.3f}")
            print(' | '.join(line))
            print(' ' * 30, 'prompt checks:', check_rates([clips[i] for i in idx], [prompts[i] for i in idx]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('students', nargs='*', help="NAME or NAME:FOLDER (default: both shipped students)")
    ap.add_argument('--seed', type=int, default=123)
    ap.add_argument('--n', type=int, default=32, help="eval prompts per domain")
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(argv)
    setup_threads(a.threads)
    from afd_nb.evaluate import evaluate_clips, sample_clips
    from afd_nb.teachers import load_prompts
    prompts = load_prompts('general', 'eval')[:a.n] + load_prompts('physics', 'eval')[:a.n]
    clips = world_clips(prompts, a.seed)
    summarize('world (teacher, true law)', evaluate_clips(clips, prompts).reports, clips, prompts)
    specs = a.students or ['causal_forcing', 'self_forcing']
    for spec, (name, folder) in zip(specs, parse_student_specs(specs)):
        clips = sample_clips(load_tiny_student(name, folder), prompts, seed=a.seed, progress=False)
        summarize(spec, evaluate_clips(clips, prompts).reports, clips, prompts)


if __name__ == '__main__':
    main()
