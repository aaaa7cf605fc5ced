#!/usr/bin/env python
"""Issue 29's real-size dry run on the CPU: the 1.3B student, the Wan VAE and the training loop with random weights.

    python tools/real_dry_run.py [--student self_forcing] [--frames 6] [--latent-hw 8 8] [--out runs/real_dry_run]

1. Writes a random-weight Wan2.1-1.3B transformer (bf16) in both formats the kit reads: Self-Forcing's `.pt`
   (`generator_ema`, original Wan key names) and a diffusers `WanTransformer3DModel` folder; loads each with
   `load_student(name, size='real', checkpoint=...)` and checks that both give the written weights.
2. Builds the real student on a reduced clip (`--frames` latent frames of `--latent-hw`, e.g. 6 x 8 x 8: 21 pixel
   frames at 64x64) with diffusers' `AutoencoderKLWan` at its Wan2.1 config (random weights) and, in place of
   umT5-xxl, seeded random text embeddings of its shape (`[B, 512, 4096]`; the umT5 class is tested at tiny size).
3. In bf16 with fp32 LoRA adapters (rank 256): one rollout, one AFD iteration (rollout, discriminator step, NFT step,
   old-policy EMA, checkpoint), a resume from that checkpoint (adapters equal), then one SFT iteration.
4. With `--videoalign`: the VideoAlign discriminator at the real shape (Qwen2-VL-2B config, random weights, LoRA r 64
   on the language model), one Bradley-Terry step (E4) on 2 prompt-paired clips of 33 frames at 224x224, 16 fps.
   A word-level tokenizer with Qwen2-VL's chat and reward tokens stands in for Qwen's BPE (not on this machine).
Prints the seconds and the peak resident memory of each part; `tests/test_real_size.py` (slow) runs it.
"""
from __future__ import annotations
import argparse, gc, json, resource, shutil, sys, time, warnings, zlib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def peak_gb() -> float:
    "Peak resident memory of this process so far (GB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class RandomUMT5Embeddings(torch.nn.Module):
    """umT5-xxl's output shape without its 5.7B weights: per prompt, seeded random embeddings `[512, 4096]` (zero past
    the prompt's tokens) and the mask; the interface of `afd_nb.text.TextEncoder` that the student and D use."""
    dim, max_length = 4096, 512

    def __init__(self, dtype=torch.bfloat16):
        super().__init__()
        self.register_buffer('anchor', torch.zeros((), dtype=dtype))   # carries device and dtype

    @property
    def device(self): return self.anchor.device

    @torch.no_grad()
    def encode(self, prompts, device=None):
        hs, ms = [], []
        for p in prompts:
            g = torch.Generator().manual_seed(zlib.crc32(p.encode()))
            n = min(len(p.split()) + 1, self.max_length)
            m = torch.arange(self.max_length) < n
            hs.append((torch.randn(self.max_length, self.dim, generator=g) * 0.2).masked_fill(~m[:, None], 0)); ms.append(m)
        dev = device or self.device
        return torch.stack(hs).to(dev, self.anchor.dtype), torch.stack(ms).to(dev)

    encode_cached = encode
    def forward(self, prompts, device=None): return self.encode(prompts, device)


def random_transformer(dtype=torch.bfloat16):
    "A Wan2.1-1.3B `WanTransformer3DModel` with seeded random weights."
    from diffusers import WanTransformer3DModel
    from afd_nb.student import WAN_1_3B_TRANSFORMER
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return WanTransformer3DModel(**WAN_1_3B_TRANSFORMER).to(dtype).eval()


def write_checkpoints(model, folder: Path) -> tuple[Path, Path]:
    "Self-Forcing's `.pt` (`generator_ema`, original names under the wrapper's `model.`) and a diffusers folder."
    from afd_nb.checkpoints import diffusers_to_original
    folder.mkdir(parents=True, exist_ok=True)
    sd = {f'model.{k}': v for k, v in diffusers_to_original(model.state_dict()).items()}
    pt = folder/'self_forcing_random.pt'
    torch.save({'generator_ema': sd}, pt)
    del sd
    model.save_pretrained(folder/'diffusers_transformer')
    return pt, folder/'diffusers_transformer'


def reduced_student(name: str, checkpoint, frames: int, latent_hw: tuple[int, int], vae, device='cpu'):
    """The real student from `checkpoint` (a path or a state dict) in bf16 on `device`, on a clip of `frames` latent
    frames of `latent_hw` (21 x 60 x 104 is the full 81-frame 480x832 clip), with `vae` and random text embeddings."""
    import dataclasses
    from afd_nb.codec import WanVAECodec
    from afd_nb.student import CausalWan, Student, load_student
    s = load_student(name, 'real', checkpoint, device=device, dtype=torch.bfloat16)
    p = dataclasses.replace(s.preset, num_frames=frames, latent_hw=tuple(latent_hw))
    model = CausalWan(s.transformer, p.block_size, p.sigmas, p.num_frames, p.latent_hw, p.prediction).eval()
    return Student(model, p, text=RandomUMT5Embeddings().to(device), codec=WanVAECodec(vae).to(device), source=s.source)


def timed(rows: list, what: str, fn):
    t0 = time.time(); out = fn(); dt = time.time() - t0
    rows.append(dict(part=what, seconds=round(dt, 1), peak_gb=round(peak_gb(), 2)))
    print(f"{what:<44} {dt:7.1f} s   peak RSS so far {peak_gb():5.1f} GB", flush=True)
    return out


def adapters_equal(a, b) -> bool:
    from afd_nb.adapters import adapter_parameters
    return all(torch.equal(x, y) for v in ('default', 'old')
               for x, y in zip(adapter_parameters(a.transformer, v), adapter_parameters(b.transformer, v)))


def dry_run(student: str = 'self_forcing', frames: int = 6, latent_hw=(8, 8), out: Path = ROOT/'runs'/'real_dry_run') -> dict:
    "Steps 1-3 of the module docstring; returns the timing rows and the checks."
    from accelerate import Accelerator
    from diffusers import AutoencoderKLWan
    from afd_nb.adapters import adapter_parameters
    from afd_nb.teachers import load_teacher
    from afd_nb.train import Trainer, TrainConfig
    out = Path(out)
    for own in ('ckpt', 'afd', 'sft'): shutil.rmtree(out/own, ignore_errors=True)   # only what an earlier dry run left
    rows, checks = [], {}
    model = timed(rows, 'random 1.3B transformer (bf16)', random_transformer)
    n_params = sum(p.numel() for p in model.parameters())
    written = {k: v.clone() for k, v in model.state_dict().items()}   # every tensor, compared after each load
    pt, folder = timed(rows, 'write .pt and diffusers folder', lambda: write_checkpoints(model, out/'ckpt'))
    del model; gc.collect()
    for tag, ck in (('pt', pt), ('diffusers', folder)):
        from afd_nb.student import load_student
        s = timed(rows, f'load_student(real) from the {tag}', lambda: load_student(student, 'real', ck, device='cpu', dtype=torch.bfloat16))
        sd = s.transformer.state_dict()
        checks[f'weights_{tag}'] = sd.keys() == written.keys() and all(torch.equal(sd[k].to(v.dtype), v) for k, v in written.items())
        del s, sd; gc.collect()
    vae = timed(rows, 'AutoencoderKLWan (Wan2.1 config, random)', lambda: AutoencoderKLWan().to(torch.bfloat16).eval())
    cfg = TrainConfig(batch_size=2, group_size=1, baseline='batch', d_steps=1, n_teacher_prompts=2, eval_every=0,
                      ckpt_every=1, micro_batch=1, iterations=1, t_dist='sigmas_each')
    teacher = load_teacher('physics')
    acc = Accelerator(cpu=True)   # one per Trainer, emptied after it (accelerate keeps what it prepared)
    s = reduced_student(student, folder, frames, latent_hw, vae)
    x0 = timed(rows, f'rollout, 1 prompt ({frames}x{latent_hw[0]}x{latent_hw[1]} latents)', lambda: s.rollout(['a red ball falls'], seed=0))
    y = timed(rows, 'VAE decode of the rollout', lambda: s.codec.decode(x0))
    checks['rollout_shape'], checks['pixels_shape'] = list(x0.shape), list(y.shape)
    tr = timed(rows, 'Trainer (LoRA rank 256 fp32, teacher set)', lambda: Trainer(s, teacher, cfg, out/'afd', accelerator=acc, progress=False,
                                                                        teacher_cache=out/'teacher_cache'))
    checks['adapter_dtype'] = str({p.dtype for p in adapter_parameters(s.transformer, 'default')})
    checks['lora_parameters'] = sum(p.numel() for p in tr.params)
    before = [p.detach().clone() for p in adapter_parameters(s.transformer, 'old')]
    row = timed(rows, 'AFD iteration (2 rollouts, D step, NFT step, EMA)', tr.iteration)
    checks['afd_row'] = {k: row[k] for k in ('loss', 'd_loss', 'grad_norm', 'old_decay') if k in row}
    checks['old_moved'] = any(not torch.equal(a, b) for a, b in zip(before, adapter_parameters(s.transformer, 'old'))) or row.get('old_decay', 1) == 1
    timed(rows, 'checkpoint save', tr.save)
    del tr; acc.free_memory(); gc.collect()
    s2, acc = reduced_student(student, folder, frames, latent_hw, vae), Accelerator(cpu=True)
    tr2 = timed(rows, 'resume from the checkpoint', lambda: Trainer(s2, teacher, cfg, out/'afd', accelerator=acc, progress=False,
                                                                      teacher_cache=out/'teacher_cache'))
    checks['resumed_step'] = tr2.step
    checks['resumed_adapters_equal'] = adapters_equal(s, s2)
    del tr2, s, s2; acc.free_memory(); gc.collect()
    s3, acc = reduced_student(student, folder, frames, latent_hw, vae), Accelerator(cpu=True)
    tr3 = Trainer(s3, teacher, TrainConfig(**{**cfg.to_dict(), 'method': 'sft'}), out/'sft', accelerator=acc, progress=False,
                  teacher_cache=out/'teacher_cache')
    row = timed(rows, 'SFT iteration (2 teacher clips)', tr3.iteration)
    checks['sft_loss'] = row['loss']
    res = dict(student=student, parameters=n_params, frames=frames, latent_hw=list(latent_hw), threads=torch.get_num_threads(),
               rows=rows, checks=checks, peak_gb=round(peak_gb(), 2))
    (out/'dry_run.json').write_text(json.dumps(res, indent=1, default=str))
    for big in ('ckpt', 'afd', 'sft'): shutil.rmtree(out/big, ignore_errors=True)   # about 11 GB of random weights
    print(json.dumps(checks, indent=1, default=str))
    return res


def real_videoalign(dtype=torch.bfloat16):
    "VideoAlign's reward model at Qwen2-VL-2B's shape with seeded random weights, as a discriminator (LoRA r 64)."
    from afd_nb.videoalign import (CHAT_TOKENS, RELEASED_NORM, VideoAlignDiscriminator, VideoAlignPreprocess,
                                   VideoAlignRewardModel, build_tiny_tokenizer, qwen2vl_2b_config)
    from afd_nb.world import vocabulary
    tok = build_tiny_tokenizer(list(vocabulary()))
    cfg = qwen2vl_2b_config()
    ids = {t: tok.convert_tokens_to_ids(t) for t in CHAT_TOKENS}   # the stand-in tokenizer's ids of the vision tokens
    cfg.image_token_id, cfg.video_token_id = ids['<|image_pad|>'], ids['<|video_pad|>']
    cfg.vision_start_token_id, cfg.vision_end_token_id = ids['<|vision_start|>'], ids['<|vision_end|>']
    cfg.text_config.pad_token_id, cfg.text_config.eos_token_id = tok.pad_token_id, ids['<|im_end|>']
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rm = VideoAlignRewardModel(cfg, tok, 1, VideoAlignPreprocess(), RELEASED_NORM).to(dtype).eval()
    return VideoAlignDiscriminator(rm, pixel_format=dict(size=(224, 224), fps=16.0, num_frames=33))


def videoalign_step(rows: list | None = None) -> dict:
    "Step 4 of the module docstring: one BT step of the real-shape VideoAlign discriminator; returns the checks."
    from afd_nb.discriminator import bt_loss
    rows = [] if rows is None else rows
    D = timed(rows, 'VideoAlign discriminator (Qwen2-VL-2B shape)', real_videoalign)
    n_params = sum(p.numel() for p in D.parameters())
    opt = torch.optim.AdamW(D.trainable_parameters(), lr=5e-6)
    g = torch.Generator().manual_seed(0)
    y_T, y_S = (torch.rand(2, 3, 33, 224, 224, generator=g) * 2 - 1 for _ in range(2))
    prompts = ['a red ball falls', 'a blue ball is thrown to the right']
    def step():
        d_t, d_s = D(torch.cat([y_T, y_S]), prompts * 2).float().chunk(2)
        loss = bt_loss(d_t, d_s); opt.zero_grad(); loss.backward(); opt.step()
        return float(loss.detach())
    before = [p.detach().clone() for p in D.trainable_parameters()]
    loss = timed(rows, 'BT step (E4), 2 + 2 clips of 33x224x224', step)
    moved = sum(int(not torch.equal(a, b)) for a, b in zip(before, D.trainable_parameters()))
    return dict(parameters=n_params, trainable=sum(p.numel() for p in D.trainable_parameters()), bt_loss=loss,
                tensors_moved=moved, tensors=len(before))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--student', default='self_forcing', choices=['self_forcing', 'causal_forcing'])
    ap.add_argument('--frames', type=int, default=6, help="latent frames (a multiple of the block size, 3)")
    ap.add_argument('--latent-hw', type=int, nargs=2, default=[8, 8])
    ap.add_argument('--out', type=Path, default=ROOT/'runs'/'real_dry_run')
    ap.add_argument('--videoalign', action='store_true', help="also step 4: the real-shape VideoAlign discriminator")
    ap.add_argument('--videoalign-only', action='store_true', help="step 4 alone")
    a = ap.parse_args()
    warnings.filterwarnings('ignore', message='.*randomly initialised.*')
    if not a.videoalign_only: dry_run(a.student, a.frames, tuple(a.latent_hw), a.out)
    if a.videoalign or a.videoalign_only: print(json.dumps(videoalign_step(), indent=1))
