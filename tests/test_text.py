"afd_nb.text: the world tokenizer, the tiny umT5 encoder, loading, and the real size on the meta device."
import pytest, torch
from afd_nb.text import (TextEncoder, build_world_tokenizer, build_tiny_text_encoder, load_text_encoder,
                         umt5_xxl_config, tiny_umt5_config, clean_prompt, TEXT_SIZES)

WORDS = ['a', 'an', 'red', 'blue', 'green', 'ball', 'balls', 'two', 'falls', 'bounces', 'rolls', 'collide',
         'left', 'right', 'slowly', 'quickly', 'on', 'the', 'floor', 'from', 'and']
PROMPTS = ['a red ball falls', 'two balls collide', 'a blue ball rolls left slowly on the floor', 'the green ball']


@pytest.fixture(scope='module')
def enc():
    return build_tiny_text_encoder(WORDS)


def test_tokenizer_ids_eos_unk_and_case():
    tok = build_world_tokenizer(WORDS, max_length=8)
    v = tok.get_vocab()
    out = tok(['A Red ball, FALLS!', 'a purple ball'], padding='max_length', max_length=8, truncation=True)
    assert out.input_ids[0] == [v['a'], v['red'], v['ball'], v[','], v['falls'], v['!'], 1, 0]
    assert out.input_ids[1][:4] == [v['a'], 2, v['ball'], 1], "unknown words map to [UNK] (2)"
    assert out.attention_mask[1] == [1, 1, 1, 1, 0, 0, 0, 0]
    long = tok(['a ' * 20], padding='max_length', max_length=8, truncation=True).input_ids[0]
    assert len(long) == 8 and long[-1] == 1, "truncation keeps [EOS]"
    with pytest.raises(ValueError, match='non-empty'): build_world_tokenizer([])


def test_padding_is_zero_and_mask_counts_tokens(enc):
    h, m = enc.encode(PROMPTS)
    assert h.shape == (4, 32, enc.dim) == (4, 32, 64) and m.dtype == torch.bool
    assert m.sum(1).tolist() == [5, 4, 10, 4]  # words + [EOS]
    assert torch.all(h[~m] == 0) and torch.all(h[m].abs().amax(-1) > 0)
    assert not h.requires_grad


def test_embedding_independent_of_batch_companions(enc):
    h, _ = enc.encode(PROMPTS)
    for i, p in enumerate(PROMPTS):
        alone, _ = enc.encode([p])
        assert torch.allclose(alone[0], h[i], atol=1e-6)
    h2, _ = enc.encode([PROMPTS[0], 'a ' * 30])  # a companion that fills the whole length
    assert torch.allclose(h2[0], h[0], atol=1e-6)


def test_unknown_words_and_cleaning(enc):
    ids, _ = enc.tokenize(['a zebra ball', 'a  red\n ball &amp;'])
    assert ids[0, 1] == 2 and clean_prompt(' a  red\n ball &amp;amp; ') == 'a red ball &'
    # two unknown words are indistinguishable to the encoder: both are [UNK]
    assert torch.equal(enc.encode(['a zebra ball'])[0], enc.encode(['a unicorn ball'])[0])


def test_cached_encoding(enc):
    enc.clear_cache()
    h, m = enc.encode(PROMPTS)
    hc, mc = enc.encode_cached(PROMPTS + PROMPTS[:1])
    assert torch.equal(hc[:4], h) and torch.equal(hc[4], h[0]) and torch.equal(mc[:4], m)
    assert len(enc._cache) == 4
    enc._cache[PROMPTS[0]][0].fill_(7.0)  # proves the second call reads the cache
    assert torch.all(enc.encode_cached(PROMPTS[:1])[0][0] == 7.0)
    enc.clear_cache()
    assert torch.equal(enc.encode_cached(PROMPTS[:1])[0][0], h[0])


def test_save_load_round_trip_exact(enc, tmp_path):
    enc.save_pretrained(tmp_path/'te')
    enc2 = load_text_encoder('tiny', path=tmp_path/'te', device='cpu')
    assert enc2.max_length == enc.max_length and enc2.tokenizer.get_vocab() == enc.tokenizer.get_vocab()
    assert torch.equal(enc2.encode(PROMPTS)[0], enc.encode(PROMPTS)[0])
    sd, sd2 = enc.model.state_dict(), enc2.model.state_dict()
    assert set(sd) == set(sd2) and all(torch.equal(sd[k], sd2[k]) for k in sd)
    # the Wan diffusers layout (text_encoder/ + tokenizer/) loads the same
    enc.model.save_pretrained(tmp_path/'wan'/'text_encoder'); enc.tokenizer.save_pretrained(tmp_path/'wan'/'tokenizer')
    enc3 = TextEncoder.from_pretrained(tmp_path/'wan', device='cpu', dtype=torch.float32)
    assert torch.equal(enc3.encode(PROMPTS)[0], enc.encode(PROMPTS)[0])


def test_seeded_build_is_deterministic():
    a, b = build_tiny_text_encoder(WORDS), build_tiny_text_encoder(list(reversed(WORDS)))
    assert torch.equal(a.encode(PROMPTS)[0], b.encode(PROMPTS)[0])
    c = build_tiny_text_encoder(WORDS, seed=1)
    assert not torch.equal(a.encode(PROMPTS)[0], c.encode(PROMPTS)[0])


def test_load_errors(monkeypatch, tmp_path):
    assert TEXT_SIZES == ('tiny', 'real')
    with pytest.raises(ValueError, match='tiny, real'): load_text_encoder('xxl')
    monkeypatch.setenv('AFD_UMT5', ''); monkeypatch.setenv('AFD_WAN_BASE', '')
    with pytest.raises(FileNotFoundError, match=r'`umt5`.*AFD_UMT5'): load_text_encoder('real')
    with pytest.raises(ValueError, match='holds no text encoder'): TextEncoder.from_pretrained(tmp_path, device='cpu')


def test_real_loads_from_settings(enc, tmp_path, monkeypatch):
    "The real path reads the `umt5` setting and uses 512 tokens (a tiny folder stands in for umT5-xxl)."
    enc.save_pretrained(tmp_path/'umt5')
    monkeypatch.setenv('AFD_UMT5', str(tmp_path/'umt5'))
    real = load_text_encoder('real', device='cpu')
    h, m = real.encode(PROMPTS[:2])
    assert real.max_length == 512 and h.shape == (2, 512, 64) and torch.all(h[~m] == 0)
    assert torch.allclose(h[:, :32], enc.encode(PROMPTS[:2])[0], atol=1e-6)


def test_world_vocabulary_covers_the_grammar():
    "Every sentence of the world's grammar tokenises without [UNK] and fits the tiny length with room to spare."
    world = pytest.importorskip('afd_nb.world')
    enc = load_text_encoder('tiny', device='cpu')
    ps = world.sample_prompts('general', 1000, seed=3) + world.sample_prompts('physics', 1000, seed=3)
    ids, mask = enc.tokenize(ps)
    assert (ids != 2).all() and (ids[:, -1] == 0).all()
    assert mask.sum(1).max() <= 24 < enc.max_length


def test_real_size_on_meta_device():
    from transformers import UMT5EncoderModel
    cfg = umt5_xxl_config()
    with torch.device('meta'): m = UMT5EncoderModel(cfg)
    assert m.shared.weight.is_meta and m.config.d_model == 4096 and len(m.encoder.block) == 24
    att, ff = m.encoder.block[0].layer[0].SelfAttention, m.encoder.block[0].layer[1].DenseReluDense
    assert att.q.weight.shape == (4096, 4096) and att.n_heads == 64
    assert ff.wi_0.weight.shape == (10240, 4096) and ff.wo.weight.shape == (4096, 10240)
    # embeddings + 24 x (attention 4*4096^2 + bias 32*64 + 2 norms + gated FFN 3*4096*10240) + final norm
    per_layer = 4 * 4096**2 + 32 * 64 + 2 * 4096 + 3 * 4096 * 10240
    assert sum(p.numel() for p in m.parameters()) == 256384 * 4096 + 24 * per_layer + 4096 == 5_680_910_336
    assert tiny_umt5_config(30).d_model == 64
