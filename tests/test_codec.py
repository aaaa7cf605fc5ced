"afd_nb.codec: the exact pixel codec and the Wan VAE codec (tiny config, random weights)."
import json
from pathlib import Path
import pytest, torch
from afd_nb.codec import (Codec, PixelCodec, WanVAECodec, load_codec, wan_vae_from_state_dict, CODEC_KINDS)

KEYS = Path(__file__).parent/'data'/'wan2.1_vae_keys.json'  # original Wan2.1_VAE.pth key names and shapes


def test_pixel_codec_shape_and_exact_round_trip():
    pc = PixelCodec()
    x = torch.rand(3, 3, 24, 32, 32) * 2 - 1
    z = pc.encode(x)
    assert z.shape == (3, 96, 12, 8, 8) == (3, *pc.latent_shape((24, 32, 32)))
    assert torch.equal(pc.decode(z), x)
    assert pc.pixel_shape(z.shape[1:]) == (24, 32, 32)
    # a latent channel holds one (time, row, column) phase of one colour channel
    c, i, j, k = 1, 1, 2, 3
    assert torch.equal(z[:, ((c * 2 + i) * 4 + j) * 4 + k], x[:, c, i::2, j::4, k::4])


@pytest.mark.parametrize('factors', [(1, 1, 1), (1, 2, 2), (4, 8, 8), (3, 2, 1)])
def test_pixel_codec_other_factors(factors):
    pc = PixelCodec(factors)
    x = torch.randn(2, 3, 12, 16, 8)
    z = pc.encode(x)
    assert z.shape[1] == 3 * factors[0] * factors[1] * factors[2] == pc.latent_channels
    assert torch.equal(pc.decode(z), x)


def test_pixel_codec_errors():
    pc = PixelCodec()
    with pytest.raises(ValueError, match='H=30'): pc.encode(torch.zeros(1, 3, 24, 30, 32))
    with pytest.raises(ValueError, match=r'\[B, 3, F, H, W\]'): pc.encode(torch.zeros(1, 4, 24, 32, 32))
    with pytest.raises(ValueError, match=r'\[B, 96'): pc.decode(torch.zeros(1, 95, 12, 8, 8))
    with pytest.raises(ValueError, match='three positive'): PixelCodec((2, 4))


def test_gradient_flows_through_decode():
    "The GAN baseline backpropagates through Dec: neither codec may cut the graph."
    for codec, shape in ((PixelCodec(), (1, 96, 2, 2, 2)), (WanVAECodec.tiny(), (1, 16, 2, 2, 2))):
        z = torch.randn(shape, requires_grad=True)
        codec.decode(z).square().sum().backward()
        assert z.grad is not None and z.grad.abs().sum() > 0
        assert isinstance(codec, Codec)


@pytest.fixture(scope='module')
def wan():
    return WanVAECodec.tiny()


def test_wan_tiny_shapes(wan):
    assert wan.stride == (4, 8, 8) and wan.latent_channels == 16
    assert wan.latent_shape((9, 32, 32)) == (16, 3, 4, 4) and wan.latent_shape((81, 480, 832)) == (16, 21, 60, 104)
    assert wan.pixel_shape((16, 21, 60, 104)) == (81, 480, 832)
    with torch.no_grad():
        z = wan.encode(torch.rand(2, 3, 9, 32, 32) * 2 - 1)
        assert z.shape == (2, 16, 3, 4, 4)
        assert wan.decode(z).shape == (2, 3, 9, 32, 32)
        assert wan.encode(torch.zeros(1, 3, 1, 16, 16)).shape == (1, 16, 1, 2, 2)


def test_wan_normalisation_is_the_pipelines(wan):
    "encode = (mode - mean) / std and decode inverts it before the raw VAE decode (diffusers' Wan pipelines)."
    x = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    mean = torch.tensor(wan.vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(wan.vae.config.latents_std).view(1, 16, 1, 1, 1)
    with torch.no_grad():
        raw = wan.vae.encode(x).latent_dist.mode()
        z = wan.encode(x)
        assert torch.allclose(z, (raw - mean) / std, atol=1e-6)
        y, y_raw = wan.decode(z), wan.vae.decode(raw).sample
    assert (y - y_raw).abs().max() < 1e-5
    assert y.min() >= -1 and y.max() <= 1


def test_wan_frame_count_errors(wan):
    for f in (8, 2, 24, 0):
        with pytest.raises(ValueError, match=r'1 \+ 4k'): wan.encode(torch.zeros(1, 3, f, 32, 32))
    with pytest.raises(ValueError, match='divisible by 8'): wan.encode(torch.zeros(1, 3, 9, 30, 32))


def test_wan_sampling_with_generator(wan):
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        a = wan.encode(x, generator=torch.Generator().manual_seed(3))
        b = wan.encode(x, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and not torch.equal(a, wan.encode(x))


def test_wan_save_load_round_trip(wan, tmp_path, monkeypatch):
    wan.vae.save_pretrained(tmp_path/'base'/'vae')
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad(): z = wan.encode(x)
    for p in (tmp_path/'base'/'vae', tmp_path/'base'):
        w2 = WanVAECodec.from_pretrained(p, device='cpu', dtype=torch.float32)
        with torch.no_grad(): assert torch.equal(w2.encode(x), z)
    # through the settings: wan_vae first, else wan_base's vae/
    monkeypatch.setenv('AFD_WAN_VAE', str(tmp_path/'base'/'vae')); monkeypatch.setenv('AFD_WAN_BASE', '')
    assert isinstance(load_codec('wan', device='cpu', dtype='fp32'), WanVAECodec)
    monkeypatch.setenv('AFD_WAN_VAE', ''); monkeypatch.setenv('AFD_WAN_BASE', str(tmp_path/'base'))
    with torch.no_grad(): assert torch.equal(load_codec('wan', device='cpu', dtype='fp32').encode(x), z)
    with pytest.raises(ValueError, match='holds no Wan VAE'): WanVAECodec.from_pretrained(tmp_path, device='cpu')


def test_load_codec_errors(monkeypatch):
    assert isinstance(load_codec(), PixelCodec) and CODEC_KINDS == ('pixel', 'wan')
    with pytest.raises(ValueError, match='pixel, wan'): load_codec('vae')
    monkeypatch.setenv('AFD_WAN_VAE', ''); monkeypatch.setenv('AFD_WAN_BASE', '')
    with pytest.raises(FileNotFoundError, match='AFD_WAN_VAE'): load_codec('wan')
    monkeypatch.setenv('AFD_WAN_VAE', '/nonexistent/vae')
    with pytest.raises(FileNotFoundError, match='wan_vae'): load_codec('wan')


def _meta_original():
    return {k: torch.empty(s, device='meta') for k, s in json.loads(KEYS.read_text()).items()}


def test_original_wan_keys_load_strictly():
    sd = _meta_original()
    assert len(sd) == 194 and 'decoder.upsamples.3.time_conv.weight' in sd and 'conv1.weight' in sd
    vae = wan_vae_from_state_dict(sd)
    assert sum(p.numel() for p in vae.parameters()) == sum(t.numel() for t in sd.values())
    del sd['encoder.head.2.weight']; sd['encoder.head.9.weight'] = torch.empty(1, device='meta')
    with pytest.raises(ValueError, match=r'1 keys missing.*1 unexpected'): wan_vae_from_state_dict(sd)


@pytest.mark.slow
def test_original_wan_pth_round_trip(tmp_path):
    "A full-size random Wan2.1 VAE written in the original key format loads back bit for bit."
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
    torch.manual_seed(0)
    ref = AutoencoderKLWan().eval()
    ref_sd = ref.state_dict()
    names = {k: next(iter(convert_wan_vae_to_diffusers({k: None}))) for k in _meta_original()}
    torch.save({k: ref_sd[d].clone() for k, d in names.items()}, tmp_path/'Wan2.1_VAE.pth')
    codec = WanVAECodec.from_pretrained(tmp_path/'Wan2.1_VAE.pth', device='cpu', dtype=torch.float32)
    got = codec.vae.state_dict()
    assert set(got) == set(ref_sd) and all(torch.equal(got[k], ref_sd[k]) for k in ref_sd)
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad(): assert torch.equal(codec.vae.encode(x).latent_dist.mode(), ref.encode(x).latent_dist.mode())
