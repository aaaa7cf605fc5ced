"The causal student (afd_nb.student), its adapters (afd_nb.adapters) and checkpoints (afd_nb.checkpoints)."
import copy, json
import pytest, torch
from diffusers import WanTransformer3DModel
from afd_nb import student as S
from afd_nb.attention import block_causal_mask, history_layout, segment_plan, teacher_forcing_layout
from afd_nb.student import CausalWan, get_preset, load_student, save_student
from afd_nb.adapters import adapter_parameters, save_adapter, load_adapter
from afd_nb.checkpoints import (CheckpointMismatch, diffusers_to_original, original_to_diffusers, read_checkpoint,
                                load_transformer_weights)

CFG = dict(patch_size=(1, 1, 1), num_attention_heads=4, attention_head_dim=32, in_channels=96, out_channels=96,
           text_dim=64, freq_dim=256, ffn_dim=512, num_layers=2, cross_attn_norm=True,
           qk_norm='rms_norm_across_heads', eps=1e-6, rope_max_seq_len=32)
B, F, HW = 2, 6, (4, 4)


def rel(a, b): return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope='module')
def plain():
    torch.manual_seed(0)
    return WanTransformer3DModel(**CFG).eval()


@pytest.fixture(scope='module')
def cw(plain):
    return CausalWan(copy.deepcopy(plain), block_size=2, num_frames=F, latent_hw=HW).eval()


@pytest.fixture(scope='module')
def data():
    g = torch.Generator().manual_seed(1)
    return dict(x=torch.randn(B, 96, F, *HW, generator=g), clean=torch.randn(B, 96, F, *HW, generator=g),
                text=torch.randn(B, 16, 64, generator=g), mask=torch.arange(16)[None] < torch.tensor([[16], [9]]))


@pytest.mark.parametrize('attention', ['blocks', 'mask'])
def test_one_block_is_the_plain_forward(plain, cw, data, attention):
    t = torch.tensor([0.9, 0.35])
    with torch.no_grad():
        ref = plain(data['x'], 1000 * t, data['text']).sample
        v = cw.velocity(data['x'], t, data['clean'], data['text'], block_size=F, attention=attention)
    assert rel(v, ref) < 1e-5


def test_plain_forward_unchanged_by_processors(plain, cw, data):
    with torch.no_grad():
        a = plain(data['x'], torch.tensor([10., 990.]), data['text']).sample
        b = cw.transformer(data['x'], torch.tensor([10., 990.]), data['text']).sample
    assert rel(b, a) < 1e-5


@pytest.mark.parametrize('bs', [1, 2, 4])
def test_causality(cw, data, bs):
    x, clean, text = data['x'], data['clean'], data['text']
    K = -(-F // bs)
    t = torch.rand(B, K, generator=torch.Generator().manual_seed(bs))
    with torch.no_grad():
        v = cw.velocity(x, t, clean, text, block_size=bs)
        for j in range(K):
            f0, f1 = j * bs, min(F, (j + 1) * bs)
            c2 = clean.clone(); c2[:, :, f0:f1] += 1
            d = (cw.velocity(x, t, c2, text, block_size=bs) - v).abs().amax((0, 1, 3, 4))
            assert d[:f1].max() == 0                      # chunks <= j never see clean chunk j
            if f1 < F: assert d[f1:].min() > 0            # later chunks do
            x2 = x.clone(); x2[:, :, f0:f1] += 1
            d = (cw.velocity(x2, t, clean, text, block_size=bs) - v).abs().amax((0, 1, 3, 4))
            assert (d[:f0] == 0).all() and (d[f1:] == 0).all() and d[f0:f1].min() > 0


def test_block_sparse_equals_mask_with_gradients(cw, data):
    t = torch.rand(B, F)  # per frame
    outs = {}
    for attention in ('blocks', 'mask'):
        cw.zero_grad()
        v = cw.velocity(data['x'], t, data['clean'], data['text'], data['mask'], attention=attention)
        v.square().mean().backward()
        outs[attention] = (v.detach(), [p.grad.clone() for p in cw.parameters()])
    assert rel(outs['blocks'][0], outs['mask'][0]) < 1e-5
    assert max(rel(a, b) for a, b in zip(outs['blocks'][1], outs['mask'][1])) < 1e-4
    cw.zero_grad()


def test_gradient_checkpointing_same_gradients(plain, data):
    grads = []
    for ckpt in (False, True):
        m = CausalWan(copy.deepcopy(plain), block_size=2, num_frames=F, latent_hw=HW)
        if ckpt: m.transformer.enable_gradient_checkpointing()
        m.velocity(data['x'], 0.5, data['clean'], data['text']).square().mean().backward()
        grads.append([p.grad for p in m.parameters()])
    assert max(rel(a, b) for a, b in zip(*grads)) < 1e-5


def test_mask_cache_is_keyed_by_layout():
    a, b = teacher_forcing_layout(6, 2), history_layout(2, 6, 2)
    assert block_causal_mask(a, 4) is block_causal_mask(a, 4)
    assert block_causal_mask(a, 4) is not block_causal_mask(a, 2) and block_causal_mask(b, 4).shape == (24, 24)
    # the plan and the mask say the same thing
    m, p = block_causal_mask(a, 1), segment_plan(a, 1)
    starts = [0]
    for s in p.sizes: starts.append(starts[-1] + s)
    for i, vis in enumerate(p.visible):
        row = m[starts[i]]
        assert all(row[starts[j]:starts[j + 1]].all() == (j in vis) for j in range(len(p.sizes)))


@pytest.mark.parametrize('bs', [2, 1])
def test_kv_cache_equals_teacher_forcing(cw, data, bs):
    rec = []
    with torch.no_grad():
        lat = cw.rollout(data['text'], F, torch.Generator().manual_seed(0), text_mask=data['mask'],
                         block_size=bs, callback=rec.append)
        errs = []
        for j, s in enumerate(cw.sigmas):
            r = sorted([r for r in rec if r.step == j], key=lambda r: r.block)
            v_tf = cw.velocity(torch.cat([q.x_t for q in r], 2), s, lat, data['text'], data['mask'], block_size=bs)
            errs += [rel(v_tf[:, :, q.block * bs:(q.block + 1) * bs], q.v) for q in r]
    assert len(errs) == len(cw.sigmas) * F // bs and max(errs) < 1e-4
    assert [q.cache_frames for q in rec if q.step == 0] == list(range(0, F, bs))


def test_rollout_prefix_determinism_and_no_cache(cw, data):
    g = lambda: torch.Generator().manual_seed(7)
    with torch.no_grad():
        four = cw.rollout(data['text'], 8, g(), block_size=2)
        two = cw.rollout(data['text'], 4, g(), block_size=2)
        nocache = cw.rollout(data['text'], 8, g(), block_size=2, use_cache=False)
    assert four.shape == (B, 96, 8, *HW) and not torch.isnan(four).any()
    assert rel(two, four[:, :, :4]) < 1e-6
    assert torch.equal(cw.rollout(data['text'], 8, g(), block_size=2), four)
    assert rel(nocache, four) < 1e-5


def test_bad_times_are_refused(cw, data):
    with pytest.raises(ValueError, match='divide by 1000'): cw.velocity(data['x'], 500.0, data['clean'], data['text'])
    with pytest.raises(ValueError, match='per chunk'): cw.velocity(data['x'], torch.rand(B, 5), data['clean'], data['text'])
    with pytest.raises(ValueError, match='clean history'): cw.velocity(data['x'], 0.5, None, data['text'])


def test_key_conversion_round_trip(plain):
    sd = plain.state_dict()
    orig = diffusers_to_original(sd)
    assert 'blocks.0.norm3.weight' in orig and 'blocks.0.norm2.weight' not in orig   # Wan's cross-attn norm
    assert 'blocks.1.ffn.0.weight' in orig and 'head.head.bias' in orig and 'blocks.0.modulation' in orig
    back = original_to_diffusers(orig)
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_real_student_on_meta():
    st = load_student('self_forcing', 'real', device='meta')
    n = sum(p.numel() for p in st.transformer.parameters())
    assert n == 1_418_996_800                      # Wan2.1-T2V-1.3B: 1.419B parameters
    assert st.preset.sigmas == (1.0, 0.9375, 0.8333333333333334, 0.625) and st.preset.block_size == 3
    sd = st.transformer.state_dict()
    orig = {'model.' + k: v for k, v in diffusers_to_original(sd).items()}
    assert list(original_to_diffusers(diffusers_to_original(sd))) == list(sd)
    st2 = load_student('causal_forcing', 'real', checkpoint=orig, device='meta', block_size=1)
    assert sum(p.numel() for p in st2.transformer.parameters()) == n and st2.model.block_size == 1


def test_original_pt_file_loads_exactly(plain, tmp_path):
    f = tmp_path/'sf.pt'
    torch.save({'generator': {}, 'generator_ema': {'model.' + k: v for k, v in diffusers_to_original(plain.state_dict()).items()}}, f)
    m = load_transformer_weights(WanTransformer3DModel(**CFG), read_checkpoint(f), str(f))
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), m.state_dict().values()))
    bad = diffusers_to_original(plain.state_dict())
    del bad['blocks.1.self_attn.q.weight'], bad['blocks.1.self_attn.q.bias']
    bad['blocks.0.gamma'] = torch.zeros(3)
    with pytest.raises(CheckpointMismatch, match=r"missing keys: blocks.1.attn1.to_q.bias, blocks.1.attn1.to_q.weight \(2\)"):
        load_transformer_weights(WanTransformer3DModel(**CFG), bad)
    with pytest.raises(CheckpointMismatch, match='missing keys'):   # a 2-layer file into the 4-layer tiny preset
        load_student('self_forcing', 'tiny', checkpoint=f, device='cpu')


def test_load_student_errors(monkeypatch):
    with pytest.raises(ValueError, match='self_forcing, causal_forcing'): load_student('selfforcing')
    with pytest.raises(FileNotFoundError, match='causal_forcing_ckpt') as e:
        load_student('causal_forcing', 'tiny', checkpoint='/no/such/file.pt', device='cpu')
    assert '/no/such/file.pt' in str(e.value)
    monkeypatch.setenv('AFD_SELF_FORCING_CKPT', '')
    with pytest.raises(FileNotFoundError, match='self_forcing_ckpt'): load_student('self_forcing', 'real', device='cpu')


def test_tiny_student_folder_and_shipped_weights(tmp_path, monkeypatch):
    with pytest.warns(UserWarning, match='RANDOMLY INITIALISED'):
        monkeypatch.setattr(S, 'data_samples_dir', lambda: tmp_path)
        st = load_student('causal_forcing', 'tiny', device='cpu')
    assert sum(p.numel() for p in st.transformer.parameters()) == 2_885_184
    emb, _ = st.encode_prompts(['a red ball'])                                # loads the tiny text encoder
    save_student(st, tmp_path/'students'/'causal_forcing')                    # ... so it is saved in text/
    shipped = load_student('causal_forcing', 'tiny', device='cpu')           # found in data_samples/students/
    assert shipped.source.endswith('causal_forcing') and shipped.text_path.name == 'text'
    assert torch.equal(shipped.encode_prompts(['a red ball'])[0], emb)
    assert all(torch.equal(a, b) for a, b in zip(st.transformer.state_dict().values(), shipped.transformer.state_dict().values()))
    px = shipped.sample(['a red ball'], seed=3, num_frames=3)
    assert px.shape == (1, 3, 6, 32, 32) and px.abs().max() <= 1


def test_lora_views_gradients_and_ema(plain, data, tmp_path):
    st = S.Student(CausalWan(copy.deepcopy(plain), 2, (1.0, 0.5), F, HW), get_preset('self_forcing'))
    x, clean, text = data['x'], data['clean'], data['text']
    with torch.no_grad(): ref = st.model.velocity(x, 0.6, clean, text)
    st.add_adapters(rank=4)
    with torch.no_grad():
        for v in ('default', 'old', 'ref'):
            with st.view(v): assert torch.equal(st.model.velocity(x, 0.6, clean, text), ref)
    opt = torch.optim.Adam(st.trainable_parameters(), lr=1e-2)
    assert {id(p) for p in st.trainable_parameters()} == {id(p) for p in adapter_parameters(st.transformer, 'default')}
    with st.view('old'), torch.no_grad(): v_old = st.model.velocity(x, 0.6, clean, text)
    loss = (st.model.velocity(x, 0.6, clean, text) - v_old + 1).square().mean()
    loss.backward(); opt.step()
    assert all(p.grad is None for n, p in st.transformer.named_parameters() if '.default.' not in n)
    before = [p.detach().double().clone() for p in adapter_parameters(st.transformer, 'old')]
    new = [p.detach().double().clone() for p in adapter_parameters(st.transformer, 'default')]
    st.ema_update(0.75)
    after = adapter_parameters(st.transformer, 'old')
    assert max((a.double() - (0.75 * b + 0.25 * c)).abs().max().item() for a, b, c in zip(after, before, new)) < 1e-7
    with torch.no_grad():
        with st.view('ref'): assert torch.equal(st.model.velocity(x, 0.6, clean, text), ref)
        assert not torch.equal(st.model.velocity(x, 0.6, clean, text), ref)
    # peft-format save / load round trip
    save_adapter(st.transformer, tmp_path/'a', 'default')
    saved = [p.detach().clone() for p in adapter_parameters(st.transformer, 'default')]
    with torch.no_grad():
        for p in adapter_parameters(st.transformer, 'default'): p.zero_()
    load_adapter(st.transformer, tmp_path/'a', 'default')
    assert all(torch.equal(a, b) for a, b in zip(adapter_parameters(st.transformer, 'default'), saved))
    assert (tmp_path/'a'/'adapter_config.json').exists()


def test_bf16_student_runs_close_to_fp32(plain, data):
    from afd_nb.student import _place
    lo = CausalWan(_place(copy.deepcopy(plain), torch.device('cpu'), torch.bfloat16), 2, (1.0, 0.5), F, HW)
    hi = CausalWan(copy.deepcopy(plain), 2, (1.0, 0.5), F, HW)
    assert lo.transformer.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32   # kept fp32
    assert lo.transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    with torch.no_grad():
        v_lo, v_hi = (m.velocity(data['x'], 0.4, data['clean'], data['text']) for m in (lo, hi))
        r = lo.rollout(data['text'], 4, torch.Generator().manual_seed(0))
    assert v_lo.dtype == torch.bfloat16 and rel(v_lo.float(), v_hi) < 3e-2 and r.dtype == torch.float32


def test_diffusers_folder_loads(plain, tmp_path):
    "A diffusers save_pretrained folder (its own config.json) sets the transformer config and the weights."
    plain.save_pretrained(tmp_path/'d')
    st = load_student('self_forcing', 'tiny', checkpoint=tmp_path/'d', device='cpu')
    assert st.transformer.config.num_layers == 2 and st.preset.transformer['num_layers'] == 2
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), st.transformer.state_dict().values()))


def test_real_patching_layout():
    "Patch (1, 2, 2) over 16 channels as the real students: plain equivalence and KV cache = teacher forcing."
    torch.manual_seed(0)
    cfg = dict(CFG, patch_size=(1, 2, 2), in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=24)
    plain = WanTransformer3DModel(**cfg).eval()
    cw = CausalWan(copy.deepcopy(plain), block_size=2, sigmas=(1.0, 0.9375, 0.8333, 0.625), num_frames=4, latent_hw=(6, 4))
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(1, 16, 4, 6, 4, generator=g), torch.randn(1, 16, 64, generator=g)
    with torch.no_grad():
        assert rel(cw.velocity(x, 0.3, None, text, block_size=4), plain(x, torch.tensor([300.]), text).sample) < 1e-5
        rec = []
        lat = cw.rollout(text, generator=g, callback=rec.append)
        for j, s in enumerate(cw.sigmas):
            r = sorted([q for q in rec if q.step == j], key=lambda q: q.block)
            v = cw.velocity(torch.cat([q.x_t for q in r], 2), s, lat, text)
            assert max(rel(v[:, :, 2 * q.block:2 * q.block + 2], q.v) for q in r) < 1e-4

def test_prediction_head_round_trips_and_legacy_folders_are_flow(tmp_path):
    "A tiny student predicts x0 by default; its folder keeps that; a kit folder saved before the field loads as 'flow'."
    preset = S.get_preset('self_forcing')
    assert preset.prediction == 'sample' and S.get_preset('causal_forcing', 'real').prediction == 'flow'
    st = S.Student(CausalWan(WanTransformer3DModel(**preset.transformer), prediction=preset.prediction), preset)
    folder = save_student(st, tmp_path/'new', text=False)
    assert load_student('self_forcing', 'tiny', checkpoint=folder, device='cpu').model.prediction == 'sample'
    cfg = json.loads((folder/'config.json').read_text()); del cfg['prediction']
    (folder/'config.json').write_text(json.dumps(cfg))
    old = load_student('self_forcing', 'tiny', checkpoint=folder, device='cpu')
    assert old.preset.prediction == 'flow' and old.model.prediction == 'flow'


def test_coordinate_planes_and_edm_head_round_trip(tmp_path):
    "A tiny student with (x, y) input planes and the 'edm' head saves and loads back to the same velocities and rollout."
    from afd_nb.pretrain import random_student
    st = random_student('causal_forcing', seed=3, prediction='edm', transformer={'in_channels': 98})
    assert st.model.coord_channels == 2 and st.model.prediction == 'edm'
    folder = save_student(st, tmp_path/'s', text=False, dtype=torch.float32)
    back = load_student('causal_forcing', 'tiny', checkpoint=folder, device='cpu')
    assert back.model.coord_channels == 2 and back.model.prediction == 'edm'
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 96, 3, 8, 8, generator=g), torch.randn(2, 8, 64, generator=g)
    with torch.no_grad():
        assert torch.equal(st.model.velocity(x, 0.6, None, text), back.model.velocity(x, 0.6, None, text))
        lat = back.model.rollout(text, num_frames=6, generator=torch.Generator().manual_seed(1))
    assert lat.shape == (2, 96, 6, 8, 8) and torch.isfinite(lat).all()


def test_one_frame_layout_round_trip(tmp_path):
    "A student with one pixel frame per latent frame keeps its codec through save/load and still renders 24 frames."
    from afd_nb.pretrain import random_student
    st = random_student('causal_forcing', seed=3, frames_per_latent=1)
    assert st.codec.stride == (1, 4, 4) and (st.preset.num_frames, st.model.block_size) == (24, 6)
    folder = save_student(st, tmp_path/'s', text=False, dtype=torch.float32)
    assert json.loads((folder/'config.json').read_text())['codec'] == 'pixel:1x4x4'
    back = load_student('causal_forcing', 'tiny', checkpoint=folder, device='cpu')
    assert back.codec.stride == (1, 4, 4) and back.model.block_size == 6
    text = torch.randn(1, 8, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lat = back.model.rollout(text, generator=torch.Generator().manual_seed(1))
        pix = back.codec.decode(lat)
    assert lat.shape == (1, 48, 24, 8, 8) and pix.shape == (1, 3, 24, 32, 32)
    with torch.no_grad():   # same weights, same noise: the reloaded student is the one saved
        assert torch.equal(lat, st.model.rollout(text, generator=torch.Generator().manual_seed(1)))


def test_rollout_from_init_starts_each_chunk_at_its_noised_clip(cw, data):
    "SDEdit (`init`): one step from σ is x̂0 = x_σ - σ v, x_σ = (1-σ) init + σ ε per chunk, history = the earlier chunks' x̂0."
    init = torch.randn(B, 96, 4, *HW, generator=torch.Generator().manual_seed(3))
    run = lambda sig, **kw: cw.rollout(data['text'], 4, torch.Generator().manual_seed(0), text_mask=data['mask'],
                                       block_size=2, init=init, sigmas=sig, **kw)
    with torch.no_grad():
        near, out, nocache = run([1e-4]), run([0.5]), run([0.5], use_cache=False)
        g = torch.Generator().manual_seed(0)   # the rollout's draws: chunk 0's ε, then chunk 1's (one step: no re-noise)
        eps = torch.cat([torch.randn(B, 96, 2, *HW, generator=g) for _ in range(2)], 2)
        x = 0.5 * init + 0.5 * eps
        ref = x - 0.5 * cw.velocity(x, 0.5, out, data['text'], data['mask'], block_size=2).float()  # teacher-forced on out
    assert (near - init).abs().max() < 1e-2            # at σ → 0 the clip comes back
    assert rel(out, ref) < 1e-4 and rel(nocache, out) < 1e-5
    assert rel(out, init) > 0.1                         # from σ 0.5 the student redraws it


def test_sdedit_sigmas_start_at_the_level_asked():
    from afd_nb.student import sdedit_sigmas
    s = (1.0, 0.9375, 0.8333333, 0.625)
    assert sdedit_sigmas(s, 0.625) == [0.625] and sdedit_sigmas(s, 0.9) == [0.9, 0.8333333, 0.625]
    assert sdedit_sigmas(s, 0.5) == [0.5]
    with pytest.raises(ValueError, match='SDEdit'): sdedit_sigmas(s, 0.0)


def test_exit_steps_rollout_is_the_sampler_with_a_gradient_through_one_step(cw, data):
    "Self-Forcing's training rollout: each chunk stops at its exit step; only that step's x̂0 carries a gradient."
    g = lambda: torch.Generator().manual_seed(0)
    kw = dict(text_mask=data['mask'], block_size=2)
    last = len(cw.sigmas) - 1
    with torch.no_grad(): plain = cw.rollout(data['text'], 4, g(), **kw)
    full = cw.rollout(data['text'], 4, g(), exit_steps=[last, last], **kw)
    assert torch.equal(full.detach(), plain) and full.requires_grad and not plain.requires_grad
    rec = []
    with torch.no_grad(): cw.rollout(data['text'], 4, g(), callback=rec.append, **kw)
    early = cw.rollout(data['text'], 4, g(), exit_steps=[1, last], **kw)
    step1 = next(q for q in rec if q.block == 0 and q.step == 1)
    assert torch.equal(early[:, :, :2].detach(), step1.x0_hat)          # chunk 0 is x̂0 at its exit step
    params = [p for p in cw.parameters() if p.requires_grad]
    got = torch.autograd.grad(early[:, :, :2].sum(), params, allow_unused=True)
    x_t, s = step1.x_t, cw.sigmas[1]                                     # the exit step alone, by (E2)
    want = torch.autograd.grad((x_t - s * cw.velocity(x_t, s, None, data['text'], data['mask'], block_size=2).float()).sum(),
                               params, allow_unused=True)
    assert all((a is None and b is None) or rel(a, b) < 1e-4 for a, b in zip(got, want))
    # chunk 1 sees chunk 0 only through the KV cache, written without gradient (Self-Forcing's): its exit step's input
    # carries none, its output does
    rec = []
    late = cw.rollout(data['text'], 4, g(), exit_steps=[last, 1], callback=rec.append, **kw)
    q = next(q for q in rec if q.block == 1 and q.step == 1)
    assert not q.x_t.requires_grad and late[:, :, 2:].requires_grad
    assert any(a is not None and a.abs().sum() > 0 for a in torch.autograd.grad(late[:, :, 2:].sum(), params, allow_unused=True))
    with pytest.raises(ValueError, match='use_cache'): cw.rollout(data['text'], 4, g(), exit_steps=[1, last], use_cache=False, **kw)
    with pytest.raises(ValueError, match='exit_steps'): cw.rollout(data['text'], 4, g(), exit_steps=[0], **kw)
