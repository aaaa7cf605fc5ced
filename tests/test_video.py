"Clip validation, mp4 round trips, atomic writes, corrupt-file errors and conform of afd_nb.video."
from pathlib import Path
import numpy as np, pytest, torch
from afd_nb.video import (Clip, CorruptVideoError, MissingVideoError, write_video, read_video, conform, psnr,
                          resize_frames, show_video, frame_grid)


def square_clip(F=48, H=64, W=64, fps=16.0, side=8, v=(14.0, 6.0), start=(8.0, 20.0)) -> Clip:
    "A red square on white, centre (x, y) = start + v t pixels, drawn with exact area coverage."
    fr = np.full((F, H, W, 3), 255, np.uint8)
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    for i in range(F):
        cx, cy = start[0] + v[0] * i / fps, start[1] + v[1] * i / fps
        cov = (np.clip(np.minimum(xs + .5, cx + side / 2) - np.maximum(xs - .5, cx - side / 2), 0, 1) *
               np.clip(np.minimum(ys + .5, cy + side / 2) - np.maximum(ys - .5, cy - side / 2), 0, 1))
        fr[i] = np.round(255 + cov[..., None] * (np.array([220, 30, 30]) - 255)).astype(np.uint8)
    return Clip(fr, fps, prompt="a red square", meta={"v": v, "start": start})


def centre(frame):
    w = 255.0 - frame[..., 1].astype(float)
    ys, xs = np.mgrid[0:frame.shape[0], 0:frame.shape[1]] + 0.5
    return np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()


def test_clip_validation_and_properties():
    c = square_clip(F=24, fps=8)
    assert c.num_frames == 24 and c.size == (64, 64) and c.duration == 3.0
    assert np.array_equal(Clip.from_video(c.to_video(), 8).frames, c.frames)
    with pytest.raises(ValueError, match=r'\[F, H, W, 3\]'): Clip(c.frames.astype(np.float32), 8)
    with pytest.raises(ValueError, match=r'\[F, H, W, 3\]'): Clip(torch.zeros(2, 4, 4, 3, dtype=torch.uint8), 8)
    with pytest.raises(ValueError, match='fps'): Clip(c.frames, -1)
    with pytest.raises(ValueError, match='prompt'): Clip(c.frames, 8, prompt=3)


@pytest.mark.parametrize('shape', [(6, 64, 64), (5, 33, 31)])
def test_lossless_round_trip_exact(tmp_path: Path, shape):
    frames = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    back = read_video(write_video(tmp_path / 'x.mp4', Clip(frames, 12.5, prompt='noise "q" é'), lossless=True))
    assert np.array_equal(back.frames, frames) and back.fps == 12.5 and back.prompt == 'noise "q" é'


@pytest.mark.parametrize('size', [(64, 64), (32, 32), (33, 47)])
def test_lossy_round_trip_psnr(tmp_path: Path, size):
    c = square_clip(F=12, H=size[0], W=size[1], side=6)
    back = read_video(write_video(tmp_path / 'y.mp4', c))
    assert back.frames.shape == c.frames.shape and back.fps == 16.0
    assert psnr(back.frames, c.frames) > 30   # measured 36-39 dB (yuv420p, crf 18)


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path: Path):
    c = square_clip(F=4, H=16, W=16)
    p = write_video(tmp_path / 'sub' / 'a.mp4', c, lossless=True)
    assert [q.name for q in p.parent.iterdir()] == ['a.mp4']
    before = p.read_bytes()
    with pytest.raises(Exception):   # an encoder failure mid-write (unknown pixel format)
        write_video(p, c, pix_fmt='not_a_format')
    assert [q.name for q in p.parent.iterdir()] == ['a.mp4'] and p.read_bytes() == before
    with pytest.raises(ValueError, match='.mp4'): write_video(tmp_path / 'a.avi', c)
    with pytest.raises(ValueError, match='fps'): write_video(tmp_path / 'b.mp4', c.frames)


def test_corrupt_truncated_missing_files_name_the_file(tmp_path: Path):
    good = write_video(tmp_path / 'good.mp4', square_clip(F=8, H=32, W=32)).read_bytes()
    for name, data in [('half.mp4', good[: len(good) // 2]), ('tail.mp4', good[:-300]), ('junk.mp4', b'\x00' * 999),
                       ('empty.mp4', b'')]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CorruptVideoError, match=name) as e: read_video(tmp_path / name)
        assert isinstance(e.value, ValueError) and 'again' in str(e.value)
    with pytest.raises(MissingVideoError, match='nope.mp4') as e: read_video(tmp_path / 'nope.mp4')
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, CorruptVideoError)


def test_conform_teacher_to_student_keeps_motion():
    t = square_clip()   # 64x64, 16 fps, 48 frames
    s = conform(t, size=(32, 32), fps=8, num_frames=24)
    assert (s.num_frames, s.size, s.fps, s.prompt) == (24, (32, 32), 8.0, t.prompt)
    for k in range(24):   # frame k shows time k/8 s: the teacher's frame 2k, halved
        want = (np.array(t.meta['start']) + np.array(t.meta['v']) * k / 8) / 2
        assert np.abs(centre(s.frames[k]) - want).max() < 0.05
    assert np.array_equal(s.frames[3], resize_frames(t.frames[6:7], (32, 32))[0])


def test_conform_timing_padding_and_crop():
    t = square_clip(F=10, H=48, W=96, fps=10, side=12, v=(0.0, 0.0), start=(48.0, 24.0))
    assert conform(t).num_frames == 10 and conform(t, fps=25).num_frames == 25   # default: cover the duration
    up = conform(t, fps=20, num_frames=20)
    assert np.array_equal(up.frames[3], t.frames[2])   # 3/20 s -> nearest source frame round(1.5) = 2
    held = conform(t, num_frames=14)
    assert np.array_equal(held.frames[13], t.frames[9])
    with pytest.raises(ValueError, match='pad=True'): conform(t, num_frames=14, pad=False)
    sq = conform(t, size=(24, 24))   # centre crop 48x48, then 2x down: square stays centred and square
    assert np.allclose(centre(sq.frames[0]), [12, 12], atol=0.05)
    ink = (sq.frames[0, ..., 1] < 128)
    assert ink.any(0).sum() == ink.any(1).sum() == 6
    assert conform(t, size=(24, 24), crop='none').size == (24, 24)
    with pytest.raises(ValueError, match='crop'): conform(t, crop='left')


def test_show_video_and_frame_grid():
    c = square_clip(F=6, H=32, W=32)
    h = show_video(c, width=128)
    assert h.data.startswith('<video') and 'data:video/mp4;base64,' in h.data and 'a red square' in h.data
    fig = frame_grid([c, c.frames], n_frames=3, titles=['a', 'b'])
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == 't = 0.00 s' and fig.axes[5].get_title() == 'frame 5'
    with pytest.raises(ValueError, match='one title per clip'): frame_grid([c], titles=['a', 'b'])
