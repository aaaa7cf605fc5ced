"""Benchmark: render and track 64 clips of 24 frames at 32x32 (the student's format), as issue 3 asks.

Usage: python tools/bench_world.py [--clips 64] [--reports]
Prints the wall time of rendering + tracking (target: under 5 s on the 2-core machine); with --reports it
also times physics_report / general_report per clip (fits and optical flow, not part of the target).
"""
import argparse, time
import numpy as np
from afd_nb.world import render, sample_prompts, scene_from_prompt
from afd_nb.metrics import general_report, physics_report, track


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--clips', type=int, default=64)
    ap.add_argument('--reports', action='store_true', help='also time physics_report and general_report')
    args = ap.parse_args()
    half = args.clips // 2
    prompts = sample_prompts('physics', half, seed=0) + sample_prompts('general', args.clips - half, seed=0)
    scenes = [scene_from_prompt(p, seed=i) for i, p in enumerate(prompts)]   # prompt parsing not timed
    t0 = time.perf_counter()
    clips = [render(s, 32, 8.0, 24) for s in scenes]
    t1 = time.perf_counter()
    tracks = [track(c, 8.0, colors=[b.color for b in s.bodies]) for c, s in zip(clips, scenes)]
    t2 = time.perf_counter()
    assert all(t.present.all() for t in tracks)
    print(f"render {len(clips)} clips of 24 frames at 32x32: {t1 - t0:.3f} s; track: {t2 - t1:.3f} s; "
          f"render+track: {t2 - t0:.3f} s (target < 5 s)")
    if args.reports:
        t3 = time.perf_counter()
        ph = [physics_report(c, p, 8.0)['physics_score'] for c, p in zip(clips[:half], prompts[:half])]
        t4 = time.perf_counter()
        ge = [general_report(c, p, 8.0)['general_score'] for c, p in zip(clips, prompts)]
        t5 = time.perf_counter()
        print(f"physics_report: {(t4 - t3) / max(1, half) * 1e3:.0f} ms/clip (mean score {np.mean(ph):.3f}); "
              f"general_report: {(t5 - t4) / len(clips) * 1e3:.0f} ms/clip (mean score {np.mean(ge):.3f})")


if __name__ == '__main__':
    main()
