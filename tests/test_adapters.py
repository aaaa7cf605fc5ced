"fp32 LoRA adapters on a half-precision backbone (afd_nb.adapters, issue 26): dtypes, one lr-1e-5 step, the EMA."
import pytest, torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file
from afd_nb import adapters as A
from afd_nb import student as S
from afd_nb.adapters import adapter_parameters, load_adapter, save_adapter
from afd_nb.student import CausalWan, _place, get_preset

CFG = dict(patch_size=(1, 1, 1), num_attention_heads=4, attention_head_dim=32, in_channels=96, out_channels=96,
           text_dim=64, freq_dim=256, ffn_dim=512, num_layers=2, cross_attn_norm=True,
           qk_norm='rms_norm_across_heads', eps=1e-6, rope_max_seq_len=32)
B, F, HW = 2, 6, (4, 4)


@pytest.fixture(scope='module')
def data():
    g = torch.Generator().manual_seed(1)
    return dict(x=torch.randn(B, 96, F, *HW, generator=g), clean=torch.randn(B, 96, F, *HW, generator=g),
                text=torch.randn(B, 16, 64, generator=g), target=torch.randn(B, 96, F, *HW, generator=g))


def half_student(dtype=torch.bfloat16, fp32_adapters=True, trained_b=True):
    "A tiny student placed in `dtype` as on CUDA, with adapters; `lora_B` ~ N(0, 0.01²) as after some training."
    torch.manual_seed(0)
    tr = _place(WanTransformer3DModel(**CFG).eval(), torch.device('cpu'), dtype)
    st = S.Student(CausalWan(tr, 2, (1.0, 0.5), F, HW), get_preset('self_forcing')).add_adapters(rank=4)
    with torch.no_grad():
        if not fp32_adapters:   # what peft alone gives: adapters in the backbone's dtype
            for p in adapter_parameters(tr, 'default') + adapter_parameters(tr, 'old'): p.data = p.data.to(dtype)
        if trained_b:
            g = torch.Generator().manual_seed(2)
            for n, p in tr.named_parameters():
                if '.lora_B.default.' in n: p.copy_(torch.randn(p.shape, generator=g) * 1e-2)
        for a, b in zip(adapter_parameters(tr, 'old'), adapter_parameters(tr, 'default')): a.copy_(b)
    return st


def adapter_dtypes(st): return {p.dtype for n in ('default', 'old') for p in adapter_parameters(st.transformer, n)}


def one_step(st, data):
    "One AdamW step at lr 1e-5 on a flow-matching-style loss, then the old-policy EMA at d = 0.5: entries moved."
    opt = torch.optim.AdamW(st.trainable_parameters(), lr=1e-5, weight_decay=1e-4)
    v = st.model.velocity(data['x'], 0.6, data['clean'], data['text'])
    (v.float() - data['target']).square().mean().backward()
    tr = st.transformer
    d0, o0 = ([p.detach().clone() for p in adapter_parameters(tr, n)] for n in ('default', 'old'))
    opt.step()
    moved_d = sum((p != q).sum().item() for p, q in zip(adapter_parameters(tr, 'default'), d0))
    st.ema_update(0.5)
    moved_o = sum((p != q).sum().item() for p, q in zip(adapter_parameters(tr, 'old'), o0))
    return v, opt, moved_d, moved_o


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_adapters_fp32_backbone_half(dtype, data):
    st = half_student(dtype, trained_b=False)
    tr = st.transformer
    assert adapter_dtypes(st) == {torch.float32}
    assert tr.blocks[0].attn1.to_q.base_layer.weight.dtype == dtype
    assert {p.dtype for n, p in tr.named_parameters() if '.lora_' not in n and 'blocks.' in n and '.weight' in n
            and 'norm' not in n} == {dtype}
    assert st.model.dtype == dtype          # what CausalWan casts its inputs and KV cache to
    assert {id(p) for p in st.trainable_parameters()} == {id(p) for p in adapter_parameters(tr, 'default')}
    with torch.no_grad():
        for v in ('default', 'old', 'ref'):
            with st.view(v): assert st.model.velocity(data['x'], 0.6, data['clean'], data['text']).dtype == dtype


def test_one_lr_1e5_step_moves_fp32_adapters_and_ema(data):
    st = half_student()
    v, opt, moved, ema_moved = one_step(st, data)
    n = sum(p.numel() for p in adapter_parameters(st.transformer, 'default'))
    assert v.dtype == torch.bfloat16
    assert {s[k].dtype for s in opt.state.values() for k in ('exp_avg', 'exp_avg_sq')} == {torch.float32}
    assert moved == n and ema_moved == n      # every adapter entry moves (fp32 resolves a 1e-5 step)
    # the contrast: the same step with bf16 adapters (peft's default here) loses most updates and most EMA moves
    _, opt16, moved16, ema16 = one_step(half_student(fp32_adapters=False), data)
    assert {s['exp_avg'].dtype for s in opt16.state.values()} == {torch.bfloat16}
    assert moved16 < 0.3 * n and ema16 < 0.3 * n, (moved16, ema16, n)
    with torch.no_grad():
        r = st.model.rollout(data['text'], 4, torch.Generator().manual_seed(0))
        with st.view('old'): r_old = st.model.rollout(data['text'], 4, torch.Generator().manual_seed(0))
    assert r.shape == r_old.shape == (B, 96, 4, *HW) and torch.isfinite(r).all() and torch.isfinite(r_old).all()


def test_fresh_adapter_still_a_no_op(data):
    "fp32 adapters with lora_B = 0 keep every view equal to the bf16 backbone alone."
    st = half_student(trained_b=False)
    with torch.no_grad():
        with st.view('ref'): ref = st.model.velocity(data['x'], 0.6, data['clean'], data['text'])
        for v in ('default', 'old'):
            with st.view(v): assert torch.equal(st.model.velocity(data['x'], 0.6, data['clean'], data['text']), ref)


def test_save_load_keeps_fp32(data, tmp_path):
    st = half_student()
    one_step(st, data)
    for name in ('default', 'old'): st.save_adapter(tmp_path/name, name)
    assert {t.dtype for t in load_file(tmp_path/'default'/'adapter_model.safetensors').values()} == {torch.float32}
    fresh = half_student(trained_b=False)                  # existing fp32 adapters: copied in exactly
    for name in ('default', 'old'): fresh.load_adapter(tmp_path/name, name)
    bare = _place(WanTransformer3DModel(**CFG).eval(), torch.device('cpu'), torch.bfloat16)
    load_adapter(bare, tmp_path/'default', 'default')      # no adapter yet: added in fp32
    for m in (fresh.transformer, bare):
        assert {p.dtype for p in adapter_parameters(m, 'default')} == {torch.float32}
        assert all(torch.equal(a, b) for a, b in zip(adapter_parameters(m, 'default'), adapter_parameters(st.transformer, 'default')))
    assert all(torch.equal(a, b) for a, b in zip(adapter_parameters(fresh.transformer, 'old'), adapter_parameters(st.transformer, 'old')))
    # a bf16 adapter file (written before this change) loads into fp32 adapters
    half_sd = tmp_path/'half'; save_adapter(half_student(fp32_adapters=False).transformer, half_sd, 'default')
    load_adapter(bare, half_sd, 'default')
    assert {p.dtype for p in adapter_parameters(bare, 'default')} == {torch.float32}


def test_fallback_upcast_without_peft_helper(monkeypatch):
    "peft 0.17 has no module-level cast_adapter_dtype: the hand-written upcast gives the same dtypes."
    monkeypatch.setattr(A, 'cast_adapter_dtype', None)
    st = half_student(trained_b=False)
    assert adapter_dtypes(st) == {torch.float32}
    assert st.transformer.blocks[0].attn1.to_q.base_layer.weight.dtype == torch.bfloat16
