"""A pretrained discriminator for the main job (issue 27's ablation): the world's analogue of VideoAlign.

    python tools/pretrain_disc.py causal_forcing            # -> runs/pretrained_d/causal_forcing.safetensors
    papermill nbs/train_afd.ipynb out.ipynb -p student causal_forcing -p d_init runs/pretrained_d/causal_forcing.safetensors

The paper's discriminator starts from VideoAlign, a video reward model trained on human judgements, and is adapted
with LoRA. The embedded world's analogue: a `PhysicsDiscriminator` (the main job's, on the student's own text encoder)
trained by (E4) to rank the world's render of a physics training prompt under its true law above the same scene under
a wrong law (`afd_nb.corpus.WRONG_PHYSICS`, one per pair, cycled). Both clips are seen as the main job's D sees the
teacher's: conformed to the student's format and re-drawn by the reference student from σ (`--rerender`, the job's
`teacher_rerender`), so that only the law tells them apart. It prints the held-out share of eval prompts whose true
law it ranks above each wrong one, and writes the state that `-p d_init` loads (then trained on as usual at `d_lr`).
"""
from __future__ import annotations
import argparse, sys, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
from _cli import load_tiny_student   # noqa: E402
from parity_probe import rerender   # noqa: E402  the job's teacher_rerender, batched


def law_pairs(student, fmt: dict, prompts: list[str], sigma: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    "(true-law clips, wrong-law clips, the wrong law of each) `[N, 3, F, H, W]`, rendered as the teacher's and re-drawn."
    from afd_nb.core import frames_to_batch
    from afd_nb.corpus import WRONG_PHYSICS
    from afd_nb.video import Clip, conform
    from afd_nb.world import physics_variant, render, scene_from_prompt
    kinds = [WRONG_PHYSICS[i % len(WRONG_PHYSICS)] for i in range(len(prompts))]
    def clips(wrong: bool):
        fr = []
        for p, k in zip(prompts, kinds):
            sc = scene_from_prompt(p, seed)
            if wrong: sc = physics_variant(sc, k)
            fr.append(conform(Clip(render(sc, 64, 16.0, 48), 16.0, p), fmt['size'], fmt['fps'], fmt['num_frames']).frames)
        y = frames_to_batch(fr)
        return rerender(student, y, prompts, sigma, seed, mode='rollout') if sigma else y
    return clips(False), clips(True), kinds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('student', choices=['causal_forcing', 'self_forcing'])
    ap.add_argument('--prompts', type=int, default=256, help="physics training prompts (one true / wrong pair each)")
    ap.add_argument('--steps', type=int, default=400)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--width', type=int, default=32, help="must equal the job's d_width (32)")
    ap.add_argument('--rerender', type=float, default=0.625, help="the job's teacher_rerender on the tiny students; 0: the clips as they are")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from safetensors.torch import save_file
    from afd_nb.corpus import WRONG_PHYSICS
    from afd_nb.discriminator import PhysicsDiscriminator, bt_loss
    from afd_nb.teachers import load_prompts
    from afd_nb.train import disc_parameters, disc_state, pixel_format
    t0 = time.time()
    st = load_tiny_student(a.student, device='cpu', quiet=True)
    fmt = pixel_format(st)
    train_ps = (load_prompts('physics', 'train') * 8)[:a.prompts]
    eval_ps = load_prompts('physics', 'eval')
    yt, yw, _ = law_pairs(st, fmt, train_ps, a.rerender, a.seed)
    et, ew, ekinds = law_pairs(st, fmt, eval_ps, a.rerender, a.seed + 1)
    print(f"{len(train_ps)} training and {len(eval_ps)} eval pairs rendered and re-drawn in {time.time() - t0:.0f} s", flush=True)
    torch.manual_seed(a.seed)
    D = PhysicsDiscriminator(st.text, st.text.dim, a.width, dict(fmt))
    opt = torch.optim.AdamW(disc_parameters(D), a.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(a.seed)
    for step in range(1, a.steps + 1):
        i = torch.randint(len(train_ps), (a.batch,), generator=g)
        ps = [train_ps[k] for k in i.tolist()]
        loss = bt_loss(*D(torch.cat([yt[i], yw[i]]), ps * 2).float().chunk(2))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if step % 100 == 0: print(f"step {step}: BT loss {float(loss):.3f}", flush=True)
    with torch.no_grad():
        s_t, s_w = D(et, eval_ps).float(), D(ew, eval_ps).float()
    above = {k: float((s_t > s_w)[[j for j, x in enumerate(ekinds) if x == k]].float().mean()) for k in WRONG_PHYSICS if k in ekinds}
    print(f"held-out: the true law ranked above the wrong one in {float((s_t > s_w).float().mean()):.3f} of pairs; "
          + ", ".join(f"{k} {v:.2f}" for k, v in above.items()))
    out = a.out or ROOT/'runs'/'pretrained_d'/f'{a.student}.safetensors'
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(disc_state(D), out)
    print(f"wrote {out} ({time.time() - t0:.0f} s, {a.threads} thread(s))")


if __name__ == '__main__':
    main()
