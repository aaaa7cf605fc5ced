#!/usr/bin/env python
"""Probe: how much of a student's 4-step failure comes from its first chunk? Prints the eval headline of plain
rollouts and of rollouts given the teacher's first chunk (the rest sampled), on 16 + 16 eval prompts.
Usage: python tools/first_chunk_probe.py [STUDENT_FOLDER [STUDENT]]   (default: the shipped self_forcing student;
'' as the folder: the shipped weights of STUDENT)"""
import torch, numpy as np
from afd_nb.attention import _blocks, history_layout, segment_plan
from afd_nb.student import load_student
from afd_nb.flow import few_step_sample
from afd_nb.core import frames_to_batch, batch_to_frames
from afd_nb.teachers import load_prompts
from afd_nb.corpus import render_clip, CorpusSpec
from afd_nb.evaluate import evaluate_clips
from afd_nb.video import Clip
import sys
torch.set_num_threads(2)
st = load_student(sys.argv[2] if len(sys.argv) > 2 else 'self_forcing', checkpoint=(sys.argv[1] or None) if len(sys.argv) > 1 else None); m = st.model
prompts = load_prompts('general', 'eval')[:16] + load_prompts('physics', 'eval')[:16]
spec = CorpusSpec()
gt = st.codec.encode(frames_to_batch([render_clip(p, 123 + i, 'general' if i < 16 else 'true', spec) for i, p in enumerate(prompts)]))
emb, mask = st.encode_prompts(prompts)
text = m.embed_text(emb, mask)
g = torch.Generator().manual_seed(0)
B = len(prompts)
for nprefix in [0, 1]:
    out = torch.zeros_like(gt); out[:, :, :3 * nprefix] = gt[:, :, :3 * nprefix]
    with torch.no_grad():
        for k, (f0, f1) in enumerate(_blocks(12, 3)):
            if k < nprefix: continue
            plan = segment_plan(history_layout(k, 12, 3), 64)
            def vfn(x, t):
                ts = t[:, None].expand(B, f1 - f0)
                return m._run(torch.cat([out[:, :, :f0], x], 2), 1000 * torch.cat([ts.new_zeros(B, f0), ts], 1),
                              tuple(range(f1)), text, plan, {}, out_from=f0).float()
            out[:, :, f0:f1] = few_step_sample(vfn, torch.randn(B, 96, f1 - f0, 8, 8, generator=g), list(st.preset.sigmas), g)
    pix = st.codec.decode(out).clamp(-1, 1)
    res = evaluate_clips([Clip(f, 8.0, p) for f, p in zip(batch_to_frames(pix), prompts)])
    print('prefix chunks', nprefix, {k: round(v, 3) for k, v in res.headline().items()}, flush=True)
