"Settings overrides and the video tensor convention of afd_nb.core."
from pathlib import Path
import numpy as np, pytest, torch
from afd_nb.core import (SETTING_KEYS, get_settings, frames_to_video, video_to_frames, frames_to_batch,
                         batch_to_frames, default_dtype, seed_everything)


def test_shipped_settings_are_empty():
    s = get_settings()
    assert s.source is not None and all(s[k] == '' for k in SETTING_KEYS)


def test_env_overrides_file(tmp_path: Path):
    f = tmp_path/'settings.ini'
    f.write_text("[afd]\nwan_vae = vae\ndevice = cpu\n")
    s = get_settings(f, env={'AFD_WAN_VAE': '/abs/vae', 'AFD_DTYPE': 'bf16'})
    assert s.path('wan_vae') == Path('/abs/vae') and s.device == 'cpu' and s.dtype == 'bf16'
    assert get_settings(f, env={}).path('wan_vae') == tmp_path/'vae'


def test_env_settings_file_and_require(tmp_path: Path, monkeypatch):
    f = tmp_path/'mine.ini'
    f.write_text("[afd]\numt5 = missing_dir\n")
    monkeypatch.setenv('AFD_SETTINGS', str(f))
    s = get_settings()
    assert s.source == f
    with pytest.raises(FileNotFoundError, match='umt5'): s.require('umt5')
    with pytest.raises(FileNotFoundError, match='AFD_WAN_VAE'): s.require('wan_vae')


def test_unknown_key_lists_valid_ones(tmp_path: Path):
    f = tmp_path/'settings.ini'
    f.write_text("[afd]\nself_forcing = x\n")
    with pytest.raises(ValueError, match='self_forcing_ckpt'): get_settings(f, env={})


def test_video_round_trip_exact():
    clip = np.random.default_rng(1).integers(0, 256, size=(7, 6, 5, 3), dtype=np.uint8)
    v = frames_to_video(clip)
    assert v.shape == (3, 7, 6, 5) and v.dtype == torch.float32
    assert float(v.min()) >= -1 and float(v.max()) <= 1
    assert np.array_equal(video_to_frames(v), clip)
    assert np.array_equal(video_to_frames(v[None]), clip)
    b = frames_to_batch([clip, clip[::-1].copy()])
    assert b.shape == (2, 3, 7, 6, 5)
    assert np.array_equal(batch_to_frames(b)[1], clip[::-1])


def test_video_errors_name_the_problem():
    with pytest.raises(ValueError, match=r'\[F, H, W, 3\]'): frames_to_video(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match='conform'):
        frames_to_batch([np.zeros((2, 4, 4, 3), np.uint8), np.zeros((3, 4, 4, 3), np.uint8)])


def test_dtype_and_seed():
    assert default_dtype('cpu') == torch.float32
    with pytest.raises(ValueError, match='bfloat16'): default_dtype('cpu', 'half-ish')
    assert torch.equal(torch.randn(4, generator=seed_everything(3)), torch.randn(4, generator=seed_everything(3)))
