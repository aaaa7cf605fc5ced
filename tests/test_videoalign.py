"Tests of afd_nb.videoalign with random tiny weights (the real VideoReward weights are not available offline)."
import json, math
from pathlib import Path

import numpy as np
import pytest
import torch

from afd_nb.core import get_settings
from afd_nb.discriminator import bt_loss
from afd_nb.videoalign import (DIMS, REWARD_TOKENS, RELEASED_NORM, DEFAULT_TEMPLATE, VideoAlignPreprocess,
                               VideoAlignRewardModel, VideoAlignMQ, VideoAlignDiscriminator, released_to_native,
                               load_template, check_template)

torch.set_num_threads(1)
PROMPTS = ['a red ball is dropped from the upper left and bounces on the floor', 'a blue ball moves to the right',
           'two balls collide']


@pytest.fixture(scope='module')
def model():
    return VideoAlignRewardModel.tiny(seed=0)


@pytest.fixture(scope='module')
def videos():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 24, 32, 32, generator=g) * 2 - 1  # 3 s at 8 fps, the student's format


@pytest.fixture(scope='module')
def saved(model, tmp_path_factory):
    return model.save_pretrained(tmp_path_factory.mktemp('va') / 'videoalign', step=11)


def test_frame_sampling_and_pixel_budget():
    pp = VideoAlignPreprocess()
    assert pp.frame_indices(24, 8.0) == [0, 5, 9, 14, 18, 23]
    assert pp.frame_indices(48, 16.0) == [0, 9, 19, 28, 38, 47]
    assert len(pp.frame_indices(81, 16.0)) == 10 and len(pp.frame_indices(6, 16.0)) == 4  # at least 4 frames
    assert VideoAlignPreprocess(num_frames=8).frame_indices(48, 16.0) == torch.linspace(0, 47, 8).round().long().tolist()
    with pytest.raises(ValueError, match='at least 2 frames'): pp.frame_indices(1, 8.0)
    assert pp.frame_size(480, 832) == (336, 588) and pp.frame_size(32, 32) == (336, 336)
    for h, w in [(480, 832), (720, 1280), (32, 32), (64, 96), (1080, 1920)]:
        H, W = pp.frame_size(h, w)
        assert H % 28 == 0 and W % 28 == 0 and 100352 <= H * W <= 200704


def test_patch_layout_matches_transformers():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    pp = VideoAlignPreprocess(patch_size=4, merge_size=2, min_pixels=16, max_pixels=64 * 64)
    img = (np.random.RandomState(1).rand(16, 24, 3) * 255).astype(np.uint8)
    ref = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2)(images=[img], do_resize=False, return_tensors='pt')
    vid = torch.from_numpy(img).permute(2, 0, 1)[:, None].float().div(127.5).sub(1).repeat(1, 2, 1, 1)
    mine, grid = pp(vid, fps=2.0)
    assert grid == tuple(ref['image_grid_thw'][0].tolist())
    assert (mine - ref['pixel_values'].float()).abs().max() < 1e-5
    two = torch.stack([torch.full((3, 8, 8), -1.0), torch.full((3, 8, 8), 1.0)], 1)  # frame 0 black, frame 1 white
    pt = pp(two, fps=2.0)[0].view(-1, 3, 2, 4, 4)
    assert (pt[:, :, 0] < 0).all() and (pt[:, :, 1] > 0).all()


def test_preprocessing_passes_gradients_to_pixels():
    pp = VideoAlignPreprocess(patch_size=4, merge_size=2, min_pixels=48 * 48, max_pixels=64 * 64)  # 32x32 is enlarged
    v = (torch.rand(3, 8, 32, 32) * 2 - 1).requires_grad_()
    patches, grid = pp(v, fps=4.0)
    assert grid == (2, 12, 12)
    patches.sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0


def test_tiny_forward_shapes_and_batch_independence(model, videos):
    with torch.no_grad():
        r = model.rewards(videos, PROMPTS, fps=8.0)
        singles = torch.cat([model.rewards(videos[i:i + 1], PROMPTS[i:i + 1], fps=8.0) for i in range(3)])
        raw = model.raw_rewards(videos, PROMPTS, fps=8.0)
    assert r.shape == (3, 3) and torch.isfinite(r).all()
    assert (r - singles).abs().max() < 1e-5  # right padding: a sample's rewards do not depend on its batch
    mean = torch.tensor([RELEASED_NORM[d][0] for d in DIMS]); std = torch.tensor([RELEASED_NORM[d][1] for d in DIMS])
    assert torch.allclose(r, (raw - mean) / std)
    m3 = VideoAlignRewardModel.tiny(seed=0, output_dim=3)
    with torch.no_grad(): assert m3.rewards(videos[:2], PROMPTS[:2], fps=8.0).shape == (2, 3)


def test_input_errors(model, videos):
    with pytest.raises(ValueError, match='one prompt per video'): model.rewards(videos, PROMPTS[:2], fps=8.0)
    with pytest.raises(ValueError, match='must occur once'):  # a prompt that smuggles in a reward token
        model.rewards(videos[:1], [f'a ball {REWARD_TOKENS[1]}'], fps=8.0)
    with pytest.raises(ValueError, match='non-empty prompt'): model.rewards(videos[:1], ['  '], fps=8.0)


def test_save_load_roundtrip_is_exact_in_released_layout(model, videos, saved):
    ck = saved / 'checkpoint-11'
    assert (saved / 'model_config.json').exists() and (ck / 'model.pth').exists() and (ck / 'tokenizer').is_dir()
    mc = json.loads((saved / 'model_config.json').read_text())
    assert {'data_config', 'model_config', 'peft_lora_config', 'inference_config'} <= set(mc)
    assert mc['inference_config']['MQ_mean'] == 1.1646 and mc['model_config']['output_dim'] == 1
    sd = torch.load(ck / 'model.pth', weights_only=True)
    for k in ('base_model.model.model.layers.1.self_attn.k_proj.base_layer.weight',
              'base_model.model.model.layers.1.mlp.gate_proj.lora_A.default.weight',
              'base_model.model.visual.merger.mlp.0.weight', 'base_model.model.rm_head.weight', 'base_model.model.lm_head.weight'):
        assert k in sd, k
    assert not any(k.startswith('backbone') for k in sd)
    back = VideoAlignRewardModel.from_pretrained(saved, device='cpu', dtype='float32')
    a, b = model.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(model.rewards(videos, PROMPTS, fps=8.0), back.rewards(videos, PROMPTS, fps=8.0))
    assert back.template == model.template and back.preprocess == model.preprocess and back.norm == model.norm


def test_lora_pairs_are_merged(saved, tmp_path):
    W, A, B = torch.randn(6, 5), torch.randn(2, 5), torch.randn(6, 2)
    pre = 'base_model.model.model.layers.0.mlp.up_proj'
    out = released_to_native({f'{pre}.base_layer.weight': W, f'{pre}.lora_A.default.weight': A,
                              f'{pre}.lora_B.default.weight': B}, lora_scale=2.0)
    assert torch.allclose(out['backbone.language_model.layers.0.mlp.up_proj.weight'], W + 2.0 * B @ A)
    with pytest.raises(ValueError, match='incomplete LoRA'):
        released_to_native({f'{pre}.base_layer.weight': W, f'{pre}.lora_A.default.weight': A}, 2.0)
    # a checkpoint whose adapter is not zero loads merged with scale alpha / r from model_config.json
    import shutil
    d = tmp_path / 'va'; shutil.copytree(saved, d)
    ck = d / 'checkpoint-11' / 'model.pth'
    sd = torch.load(ck, weights_only=True)
    key = 'base_model.model.model.layers.0.self_attn.q_proj'
    sd[f'{key}.lora_B.default.weight'] = torch.randn_like(sd[f'{key}.lora_B.default.weight'])
    torch.save(sd, ck)
    lc = json.loads((d / 'model_config.json').read_text())['peft_lora_config']
    back = VideoAlignRewardModel.from_pretrained(d, device='cpu', dtype='float32')
    want = sd[f'{key}.base_layer.weight'] + lc['lora_alpha'] / lc['lora_r'] * sd[f'{key}.lora_B.default.weight'] @ sd[f'{key}.lora_A.default.weight']
    assert torch.allclose(back.backbone.language_model.layers[0].self_attn.q_proj.weight, want, atol=1e-6)


def test_missing_pieces_are_named(saved, tmp_path):
    import shutil
    with pytest.raises(FileNotFoundError, match='does not exist'): VideoAlignRewardModel.from_pretrained(tmp_path / 'nope')
    d = tmp_path / 'va'; shutil.copytree(saved, d)
    (d / 'model_config.json').rename(d / 'mc.json')
    with pytest.raises(FileNotFoundError, match='model_config.json'): VideoAlignRewardModel.from_pretrained(d)
    (d / 'mc.json').rename(d / 'model_config.json')
    shutil.move(d / 'checkpoint-11' / 'tokenizer', d / 'tok')
    with pytest.raises(FileNotFoundError, match='tokenizer'): VideoAlignRewardModel.from_pretrained(d, device='cpu')
    (d / 'checkpoint-11' / 'model.pth').rename(d / 'model.pth')
    with pytest.raises(FileNotFoundError, match='model.pth'): VideoAlignRewardModel.from_pretrained(d)
    (d / 'checkpoint-11' / 'adapter_model.safetensors').write_bytes(b'')
    with pytest.raises(FileNotFoundError, match='LoRA-only'): VideoAlignRewardModel.from_pretrained(d)
    with pytest.raises(FileNotFoundError, match='checkpoint-3'): VideoAlignRewardModel.from_pretrained(d, step=3)
    shutil.rmtree(d / 'checkpoint-11')
    with pytest.raises(FileNotFoundError, match='checkpoint-<step>'): VideoAlignRewardModel.from_pretrained(d)
    sd = torch.load(d / 'model.pth', weights_only=True); sd.pop('base_model.model.rm_head.weight')
    (d / 'checkpoint-2').mkdir(); torch.save(sd, d / 'checkpoint-2' / 'model.pth'); shutil.move(d / 'tok', d / 'checkpoint-2' / 'tokenizer')
    with pytest.raises(ValueError, match='rm_head.weight'): VideoAlignRewardModel.from_pretrained(d, device='cpu')


def test_template_loading_never_executes(tmp_path):
    body = "Judge it.\nVQ: <|VQ_reward|>\nMQ: <|MQ_reward|>\nPrompt {text_prompt}\nTA: <|TA_reward|>\n"
    py = tmp_path / 'prompt_template.py'
    py.write_text(f"raise SystemExit('executed')\nDETAILED_PROMPT_WITH_SPECIAL_TOKEN = {body!r}\n")
    assert load_template(py) == body and load_template(body) == body
    (tmp_path / 't.txt').write_text(body); assert load_template(tmp_path / 't.txt') == body
    with pytest.raises(ValueError, match='exactly once'): check_template(body.replace('<|MQ_reward|>', ''))
    with pytest.raises(ValueError, match='in that order'): check_template(body.replace('VQ_reward', 'X').replace('MQ_reward', 'VQ_reward').replace('X', 'MQ_reward'))
    assert check_template(DEFAULT_TEMPLATE) == DEFAULT_TEMPLATE


def test_empty_setting_names_the_key():
    s = get_settings(env={'AFD_VIDEOALIGN': ''})
    for make in (lambda: VideoAlignMQ(settings=s), lambda: VideoAlignDiscriminator.from_settings(settings=s)):
        with pytest.raises(FileNotFoundError) as e: make()
        assert 'videoalign' in str(e.value) and 'AFD_VIDEOALIGN' in str(e.value)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        VideoAlignMQ(settings=get_settings(env={'AFD_VIDEOALIGN': '/no/such/folder'}))


def test_metric_and_discriminator_from_settings(model, saved):
    from afd_nb.teachers import PhysicsTeacher
    s = get_settings(env={'AFD_VIDEOALIGN': str(saved)})
    clip = PhysicsTeacher(size=32, fps=8.0, num_frames=24).sample([PROMPTS[0]], seed=0)[0]
    metric = VideoAlignMQ(settings=s, device='cpu')
    assert metric.path == saved
    with torch.no_grad(): want = model.rewards(clip.to_video()[None], [clip.prompt], fps=8.0)[0]
    rep = metric.rewards(clip)
    assert abs(metric.score(clip) - float(want[1])) < 1e-5 and abs(rep['Overall'] - float(want.sum())) < 1e-5
    assert abs(metric.score(clip.frames, prompt=clip.prompt, fps=8.0) - rep['MQ']) < 1e-6
    with pytest.raises(ValueError, match='prompt'): metric.score(clip.frames, fps=8.0)
    D = VideoAlignDiscriminator.from_settings(settings=s, device='cpu', lora_r=4, lora_alpha=8)
    with torch.no_grad(): assert abs(float(D.score(clip.to_video()[None], [clip.prompt])[0]) - float(want[1])) < 1e-5


def test_bt_step_trains_only_lora_head_and_weights(videos):
    torch.manual_seed(0)
    rm = VideoAlignRewardModel.tiny(seed=3)
    with torch.no_grad(): mq = rm.rewards(videos, PROMPTS, fps=8.0)[:, 1]
    D = VideoAlignDiscriminator(rm, lora_r=4, lora_alpha=8)
    assert D.pixel_format['fps'] == 8.0
    with torch.no_grad(): assert torch.equal(D.score(videos, PROMPTS), mq)  # init: D is the normalised MQ (B = 0)
    y_t, y_s = videos, videos.flip(2)  # a fixed prompt-paired batch: clips and the same clips played backwards
    frozen = {n: p.detach().clone() for n, p in D.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW(D.trainable_parameters(), lr=1e-3)
    before = bt_loss(D.score(y_t, PROMPTS), D.score(y_s, PROMPTS))
    opt.zero_grad(); before.backward()
    grads = {n for n, p in D.named_parameters() if p.grad is not None}
    assert grads and all('lora_' in n or 'rm_head' in n or n == 'weights' for n in grads)
    assert any('lora_B' in n for n in grads) and 'weights' in grads and 'reward_model.rm_head.weight' in grads
    opt.step()
    with torch.no_grad(): after = bt_loss(D.score(y_t, PROMPTS), D.score(y_s, PROMPTS))
    assert after < before
    assert all(torch.equal(p, frozen[n]) for n, p in D.named_parameters() if n in frozen)  # backbone untouched
    sd = D.trainable_state_dict()
    assert set(sd) == grads | {n for n in sd if 'lora_A' in n}
    D2 = VideoAlignDiscriminator(VideoAlignRewardModel.tiny(seed=3), lora_r=4, lora_alpha=8)
    D2.load_trainable_state_dict(sd)
    with torch.no_grad(): assert torch.equal(D2.score(y_t, PROMPTS), D.score(y_t, PROMPTS))


def test_trained_discriminator_saves_as_a_videoalign_folder(videos, tmp_path):
    torch.manual_seed(0)
    D = VideoAlignDiscriminator(VideoAlignRewardModel.tiny(seed=4), lora_r=4, lora_alpha=8, learn_weights=False)
    for n, p in D.named_parameters():
        if 'lora_B' in n: p.data.normal_(0, 0.1)  # a trained adapter
    D.reward_model.save_pretrained(tmp_path / 'd')
    back = VideoAlignRewardModel.from_pretrained(tmp_path / 'd', device='cpu', dtype='float32')  # LoRA merged on load
    with torch.no_grad():
        assert (back.rewards(videos, PROMPTS, fps=8.0)[:, 1] - D.score(videos, PROMPTS)).abs().max() < 1e-4


def test_config_sources(saved, model, tmp_path):
    import shutil
    d, base = tmp_path / 'va', tmp_path / 'base'
    shutil.copytree(saved, d); base.mkdir()
    cfg = json.loads((d / 'config.json').read_text())
    cfg['text_config']['vocab_size'] += 100  # a base config without the 3 added tokens: the file's embedding decides
    (base / 'config.json').write_text(json.dumps(cfg)); (d / 'config.json').unlink()
    back = VideoAlignRewardModel.from_pretrained(d, base=base, device='cpu', dtype='float32')
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    with pytest.raises(FileNotFoundError, match='no config.json'): VideoAlignRewardModel.from_pretrained(d, base=tmp_path)
    with pytest.raises(RuntimeError, match='size mismatch'):  # no config anywhere: Qwen2-VL-2B's, which the tiny weights do not fit
        VideoAlignRewardModel.from_pretrained(d, device='cpu')
