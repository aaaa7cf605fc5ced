#!/usr/bin/env python
"""Issue 29's GPU check: the real-size student at full size on one GPU, with random weights, in one run.

    python tools/gpu_check.py [--student self_forcing] [--frames 21] [--latent-hw 60 104]
    python tools/gpu_check.py --device cpu --frames 3 --latent-hw 8 8     # the same steps on a CPU, a small clip

Full size is 21 latent frames of 60x104: 81 frames at 480x832, the Wan2.1-1.3B student in bf16 with fp32 LoRA
adapters (rank 256), the Wan2.1 VAE, batch 1, umT5-xxl-shaped random text embeddings (as `tools/real_dry_run.py`).
Gradient checkpointing is on (`--no-checkpointing` turns it off). It prints the seconds per rollout (under θ_old's
adapters), per AFD iteration with its parts (rollout, discriminator step, NFT step, EMA) and per SFT iteration (each
timed after a warm-up), and the peak GPU memory the allocator reserved. It also prints the FLOPs of one AFD iteration
as counted by `torch.utils.flop_counter.FlopCounterMode`, and their rate against the card's dense bf16 peak. That
count is of what ran (the VAE decode, the discriminator, checkpointing's recomputation, attention's backward counted
as 2.5 forwards), so its rate is a hardware figure. The MFU divides the README's analytic transformer FLOPs
(`model_pflop`) by the iteration's time. Without a GPU it says so and exits 0. The discriminator is the embedded
world's 3-D CNN at the student's format (a real run uses VideoAlign).
"""
from __future__ import annotations
import argparse, gc, json, sys, time, warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched on the device name
BF16_PEAK = {'H200 NVL': 835.0, 'H200': 989.4, 'H100 SXM': 989.4, 'H100 80GB HBM3': 989.4, 'H100 PCIe': 756.0, 'H100 NVL': 835.0,
             'H100': 989.4, 'A100': 312.0, 'L40S': 362.1, 'A10G': 70.0, 'RTX 4090': 165.2}


def bf16_peak(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def model_pflop(frames: int, latent_hw: tuple[int, int], block: int = 3, steps: int = 4, rank: int = 256) -> dict:
    """The README's estimate of one AFD iteration's transformer FLOPs per rollout (PFLOP), Wan2.1-1.3B: the rollout
    (`steps` passes per chunk plus a cache pass for all but the last, under θ_old's adapters) and the NFT step
    (teacher-forced forwards of θ_old, the reference and θ, and θ's backward through the frozen backbone)."""
    d, L, ffn, text = 1536, 30, 8960, 512
    n = (latent_hw[0] // 2) * (latent_hw[1] // 2) * block                 # tokens per chunk (patch 1x2x2)
    K = frames // block                                                   # chunks
    lin = 2 * L * (6 * d * d + 2 * d * ffn)                               # backbone linear layers, per token
    lora = 2 * L * rank * (6 * 2 * d + 2 * (d + ffn))                     # 6 d->d projections and the 2 FFN ones
    cross = 4 * L * d * text
    att = 4 * L * d                                                       # x context length, per query token
    rollout = (steps * K + K - 1) * n * (lin + lora + cross) + (steps * K * (K + 1) / 2 + (K - 1) * K / 2) * n * n * att
    T_tf = (2 * K - 1) * n                                                # clean history + noisy chunks
    att_tf = (K * (K + 1) / 2 + (K - 1) * K / 2) * n * n * att            # block-causal
    fwd_ref, fwd_lora = T_tf * (lin + cross) + att_tf, T_tf * (lin + lora + cross) + att_tf
    backward = T_tf * (lin + cross) + 2 * T_tf * lora + 2 * att_tf        # input grads only for the frozen backbone
    nft = 2 * fwd_lora + fwd_ref + backward
    return dict(rollout=rollout / 1e15, nft_step=nft / 1e15, total=(rollout + nft) / 1e15)


def sync() -> None:
    if torch.cuda.is_available(): torch.cuda.synchronize()


def seconds(fn, warmup: int = 1):
    "Run `fn` `warmup` times, then once more timed (CUDA synchronised); returns (seconds, result)."
    for _ in range(warmup): fn()
    sync(); t0 = time.time(); out = fn(); sync()
    return time.time() - t0, out


def peak_memory_gb(dev: torch.device, reset: bool = False) -> float:
    "Peak GPU memory reserved by torch's allocator (or this process's peak resident memory on a CPU), GB."
    if dev.type != 'cuda':
        from real_dry_run import peak_gb; return peak_gb()
    out = torch.cuda.max_memory_reserved() / 2**30   # what the allocator held: closer to what the card must have
    if reset: gc.collect(); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    return out


def main(student: str, frames: int, latent_hw: tuple[int, int], device: str = 'cuda', checkpointing: bool = True) -> int:
    if device == 'cuda' and not torch.cuda.is_available():
        print("gpu_check: no GPU here (torch.cuda.is_available() is False), so nothing to check. On a machine with one, "
              "this times the real-size student at 81 frames, 480x832 (tools/gpu_check.py's docstring).")
        return 0
    from accelerate import Accelerator
    from diffusers import AutoencoderKLWan
    from torch.utils.flop_counter import FlopCounterMode
    from afd_nb.teachers import load_teacher
    from afd_nb.train import Trainer, TrainConfig
    from real_dry_run import random_transformer, reduced_student
    warnings.filterwarnings('ignore')
    dev = torch.device(device)
    name = torch.cuda.get_device_name() if dev.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'
    print(f"gpu_check on {name}, torch {torch.__version__}: {student}, {frames} latent frames of {latent_hw}", flush=True)
    sd = random_transformer().state_dict()   # CPU, bf16: each student below is loaded from it
    vae = AutoencoderKLWan().to(dev, torch.bfloat16).eval()
    cfg = TrainConfig(batch_size=1, group_size=1, baseline='batch', d_steps=1, n_teacher_prompts=2, eval_every=0,
                      micro_batch=1, t_dist='sigmas_each', iterations=10, grad_checkpointing=checkpointing)
    res = dict(device=name, student=student, frames=frames, latent_hw=list(latent_hw), grad_checkpointing=checkpointing)
    s = reduced_student(student, sd, frames, latent_hw, vae, dev)
    peak_memory_gb(dev, reset=True)
    acc = Accelerator(cpu=dev.type == 'cpu')
    tr = Trainer(s, load_teacher('physics'), cfg, accelerator=acc, progress=False)
    with s.view('old'):   # as in training: θ_old's fp32 adapters on the bf16 backbone
        res['rollout_s'], x0 = seconds(lambda: s.rollout(['a red ball falls'], seed=0))
    res['latents'] = list(x0.shape)
    res['afd_iteration_s'], row = seconds(tr.iteration)
    res['afd_parts_s'] = {k: round(v, 2) for k, v in row.items() if k.startswith('time_')}
    with FlopCounterMode(display=False) as fc: tr.iteration()
    res['afd_iteration_tflop'] = fc.get_total_flops() / 1e12
    del tr, s; acc.free_memory()
    res['afd_peak_memory_gb'] = peak_memory_gb(dev, reset=True)
    s, acc = reduced_student(student, sd, frames, latent_hw, vae, dev), Accelerator(cpu=dev.type == 'cpu')
    tr = Trainer(s, load_teacher('physics'), TrainConfig(**{**cfg.to_dict(), 'method': 'sft'}), accelerator=acc, progress=False)
    res['sft_iteration_s'], _ = seconds(tr.iteration)
    res['sft_peak_memory_gb'] = peak_memory_gb(dev)
    peak = bf16_peak(name) if dev.type == 'cuda' else None
    res['bf16_peak_tflops'] = peak
    res['model_pflop_estimate'] = model_pflop(frames, latent_hw, s.preset.block_size)
    res['afd_flop_rate_of_peak'] = res['afd_iteration_tflop'] / res['afd_iteration_s'] / peak if peak else None
    res['afd_mfu'] = res['model_pflop_estimate']['total'] * 1e3 / res['afd_iteration_s'] / peak if peak else None
    print(json.dumps(res, indent=1))
    if peak is None and dev.type == 'cuda': print(f"(no bf16 peak known for {name!r}: add it to BF16_PEAK for the MFU)")
    return 0


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--student', default='self_forcing', choices=['self_forcing', 'causal_forcing'])
    ap.add_argument('--frames', type=int, default=21, help="latent frames (21: 81 pixel frames)")
    ap.add_argument('--latent-hw', type=int, nargs=2, default=[60, 104], help="latent height and width (480x832 / 8)")
    ap.add_argument('--device', default='cuda', choices=['cuda', 'cpu'], help="cpu: check this script's steps on a small clip")
    ap.add_argument('--no-checkpointing', action='store_true', help="keep every block's activations (needs far more memory)")
    a = ap.parse_args()
    sys.exit(main(a.student, a.frames, tuple(a.latent_hw), a.device, not a.no_checkpointing))
