"The inspectors on a trained run: the job's snapshots (afd_nb.snapshots) and `advantage_inspector.from_run` / `nft_inspector.from_run`."
import dataclasses, os
import numpy as np
import pytest, torch
from afd_nb.advantage import advantage_inspector, advantage_table
from afd_nb.nft import nft_inspector, noised_state_views
from afd_nb.snapshots import load_snapshot, load_run_student, snapshot_iterations
from afd_nb.core import video_to_frames
from test_train import TINY, trainer


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "A 3-iteration AFD run (batch 4 = 2 prompts x 2) that saves iterations 1 and 2, every checkpoint kept."
    cache, out = tmp_path_factory.mktemp('cache'), tmp_path_factory.mktemp('run')
    cfg = dataclasses.replace(TINY, iterations=3, batch_size=4, group_size=2, baseline='prompt', inspect_every=2, lr=1e-2)
    tr = trainer(cache, out, cfg)
    tr.fit()
    return tr, out


def test_the_job_saves_iteration_one_and_every_nth_batch(run):
    tr, out = run
    assert snapshot_iterations(out) == [1, 2]
    s = load_snapshot(out, 2)
    B = tr.cfg.batch_size
    assert len(s.student) == len(s.teacher) == len(s.prompts) == len(s.scores) == B
    assert s.meta['baseline'] == 'prompt' and s.meta['beta'] == tr.cfg.beta
    for c, p, i in zip(s.teacher, s.prompts, s.prompt_ids):   # each row's teacher clip is its prompt's
        assert p == tr.data.prompts[i] and np.array_equal(c.frames, video_to_frames(tr.data.videos([i])[0]))
    # the latents nft_inspector.from_run re-encodes from the frames give the frames back (the student's own codec)
    y = tr.student.codec.decode(tr.student.codec.encode(s.student[0].to_video()[None])).clamp(-1, 1)
    assert np.abs(video_to_frames(y[0]).astype(int) - s.student[0].frames.astype(int)).max() <= 1
    # the weights r are (E6)-(E7) of the saved scores under the run's baseline
    rows = {d['index']: d['r'] for d in advantage_table(s.scores, 'prompt', s.prompt_ids, tr.cfg.adv_clip)}
    assert np.allclose([rows[i] for i in range(B)], s.r.numpy(), atol=1e-6)


def test_advantage_inspector_from_run_shows_the_batch_by_advantage(run):
    tr, out = run
    w = advantage_inspector.from_run(out, iteration=1)
    slider, view = w.children
    assert slider.max == tr.cfg.batch_size - 1 and slider.description == "rank"   # (the figure itself: tests/test_browser.py)
    with pytest.raises(ValueError, match=r"saved: \[1, 2\]"): advantage_inspector.from_run(out, iteration=3)
    with pytest.raises(FileNotFoundError, match="inspect_every > 0"): advantage_inspector.from_run(out/'checkpoints')


def test_nft_inspector_from_run_uses_the_trained_adapters(run):
    tr, out = run
    student = load_run_student(out)
    for name in ('default', 'old'):   # the run's newest checkpoint, both views
        with student.view(name), tr.student.view(name):
            for (k, a), b in zip(student.transformer.named_parameters(), tr.student.transformer.parameters()):
                if 'lora' in k: assert torch.equal(a, b), k
    s = load_snapshot(out)
    x0 = student.codec.encode(s.student[0].to_video()[None])
    v = noised_state_views(student, x0, s.prompts[0], t=0.8, chunk=0, beta=s.meta['beta'])
    assert not torch.allclose(v['v_θ'], v['v_old'])   # trained: θ has moved away from θ_old
    w = nft_inspector.from_run(out, row=1, chunk=0)
    assert w.children[0].description == 't'
    with pytest.raises(ValueError, match=r"row must be in \[0, 4\)"): nft_inspector.from_run(out, row=4)
