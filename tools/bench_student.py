#!/usr/bin/env python
"""Benchmark of the causal student (afd_nb.student) at the tiny size; prints figures, asserts nothing.

1. Rollout of 24 pixel frames (12 latent frames of 8x8, 4 steps per block): KV cache vs recomputing the clean
   history at every step (`use_cache=False`), in one run, as a ratio; for Self-Forcing's 3-frame blocks and
   Causal-Forcing's frame-wise blocks.
2. Teacher-forced `velocity` for a batch of 8 tiny clips, forward + backward, with and without LoRA adapters.
3. The token patch: the same forward + backward for a random tiny student with patch (1, 1, 1) at width 128 (the
   students shipped before 2026-11-25) and with the preset's patch (1, 2, 2) (4x fewer tokens), as a ratio.
4. One pretraining step as `afd_nb.pretrain` takes it (batch 8, own-history share 0.5, flow loss forward + backward):
   its FLOPs (torch's flop counter) and the rate achieved, for the preset's width (192) and twice it: what a
   wall-clock budget buys on this machine (issue 5's 60 minutes).

Timings are the minimum over `--repeat` runs (the machine is shared); CPU time is printed beside wall time.
Usage: python tools/bench_student.py [--repeat 5] [--batch 1] [--device cpu] [--threads 0]
"""
import argparse, os, time
import torch
from _cli import load_tiny_student, setup_threads


def best(fn, repeat):
    "Minimum wall and CPU seconds of `fn()` over `repeat` runs (after one warm-up)."
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        if torch.cuda.is_available(): torch.cuda.synchronize()
        w, c = time.perf_counter(), time.process_time()
        fn()
        if torch.cuda.is_available(): torch.cuda.synchronize()
        wall.append(time.perf_counter() - w); cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--batch', type=int, default=1, help='prompts per rollout')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default); 1 is steadier on a busy machine')
    a = ap.parse_args()
    setup_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    st = load_tiny_student('self_forcing', device=a.device, quiet=True)   # an untrained tiny student is fine for timing
    print(st)
    emb = torch.randn(a.batch, 32, st.transformer.config.text_dim)
    print(f"\n1. rollout of {st.preset.num_frames} latent frames (24 pixel frames), batch {a.batch}, "
          f"{len(st.preset.sigmas)} steps per block")
    for bs in (3, 1):
        run = lambda cache: st.model.rollout(emb, generator=torch.Generator().manual_seed(0), block_size=bs, use_cache=cache)
        with torch.no_grad():
            (wc, cc), (wn, cn) = best(lambda: run(True), a.repeat), best(lambda: run(False), a.repeat)
        K, s = -(-st.preset.num_frames // bs), len(st.preset.sigmas)
        bound = s * K * (K + 1) / 2 / (s * K + K - 1)
        print(f"   block {bs}: KV cache {wc * 1e3:7.1f} ms (cpu {cc * 1e3:7.1f}), recomputed history {wn * 1e3:7.1f} ms "
              f"(cpu {cn * 1e3:7.1f}): {wn / wc:.2f}x faster with the cache (cpu {cn / cc:.2f}x; "
              f"token-passes ratio {bound:.2f})")
    print("\n2. teacher-forced velocity, batch 8 tiny clips (12 latent frames, 4 blocks), forward + backward")
    g = torch.Generator().manual_seed(0)
    x, clean = (torch.randn(8, 96, 12, 8, 8, generator=g).to(a.device) for _ in range(2))
    t, text = torch.rand(8, 4, generator=g), torch.randn(8, 32, st.transformer.config.text_dim, generator=g)
    st.model.train()
    def step():
        st.model.velocity(x, t, clean, text).square().mean().backward()
        st.model.zero_grad(set_to_none=True)
    w, c = best(step, a.repeat)
    print(f"   backbone trainable:       {w:.3f} s (cpu {c:.3f} s)")
    st.add_adapters()
    w, c = best(step, a.repeat)
    print(f"   LoRA rank {st.preset.lora_rank} 'default' only: {w:.3f} s (cpu {c:.3f} s)   target < 2 s")
    with torch.no_grad(): w, c = best(lambda: st.model.velocity(x, t, clean, text), a.repeat)
    print(f"   forward only (no grad):   {w:.3f} s (cpu {c:.3f} s)")
    print("\n3. token patch: forward + backward as in 2., random tiny students (no adapters)")
    from afd_nb.pretrain import random_student
    times = {}
    for name, arch in [('width 128, ffn 512', dict(patch_size=(1, 1, 1), attention_head_dim=32, ffn_dim=512)),
                       ('the preset', {})]:
        m = random_student('self_forcing', transformer=arch).model.to(a.device).train()
        def step():
            m.velocity(x, t, clean, text).square().mean().backward()
            m.zero_grad(set_to_none=True)
        times[name] = best(step, a.repeat)[0]
        print(f"   {name}, patch {tuple(m.transformer.config.patch_size)}: {sum(p.numel() for p in m.parameters()):,} params, "
              f"{times[name]:.3f} s")
    print(f"   the preset is {times[next(iter(times))] / times['the preset']:.2f}x faster per step")
    pretrain_step_flops(a)


def pretrain_step_flops(a):
    "Section 4: FLOPs and achieved GFLOP/s of one pretraining step (own history + flow loss) per model width."
    from torch.utils.flop_counter import FlopCounterMode
    from afd_nb.pretrain import chunk_times, flow_loss, random_student, self_history
    from afd_nb.text import load_text_encoder
    print("\n4. one pretraining step: batch 8, own-history share 0.5, flow loss forward + backward")
    text, prompts = load_text_encoder('tiny', device=a.device), ['a red ball falls'] * 8
    x0 = torch.randn(8, 96, 12, 8, 8, generator=torch.Generator().manual_seed(0)).to(a.device)
    for name, arch in [('the preset (width 192)', {}), ('width 384', dict(attention_head_dim=96))]:
        st = random_student('causal_forcing', transformer=arch, device=a.device)
        def step():
            g = torch.Generator().manual_seed(0)
            h = self_history(st.model, text, x0, prompts, 0.5, st.preset.sigmas, g)
            flow_loss(st.model, text, x0, prompts, chunk_times(8, 4, st.preset.sigmas, generator=g),
                      torch.randn(x0.shape, generator=g).to(x0), history=h).backward()
            st.model.zero_grad(set_to_none=True)
        with FlopCounterMode(display=False) as fc: step()
        flops, (w, _) = fc.get_total_flops(), best(step, a.repeat)
        print(f"   {name}: {flops / 1e9:.1f} GFLOP per step, {w:.3f} s -> {flops / w / 1e9:.1f} GFLOP/s; "
              f"an hour buys {3600 / w:,.0f} steps ({3600 * flops / w / 1e15:.2f} PFLOP)")


if __name__ == '__main__':
    main()
