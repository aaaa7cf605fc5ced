"""Issue 29's real-size dry run, `tools/real_dry_run.py` (slow: 4.5 min at 1 torch thread beside two other runs, 13.4 GB peak)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'tools'))


@pytest.mark.slow
def test_the_real_size_student_rolls_out_trains_resumes_and_runs_sft(tmp_path):
    from real_dry_run import dry_run
    res = dry_run('self_forcing', frames=6, latent_hw=(8, 8), out=tmp_path/'dry')
    c = res['checks']
    assert res['parameters'] == 1_418_996_800                                 # Wan2.1-1.3B
    assert c['weights_pt'] and c['weights_diffusers']                         # both formats load the written weights
    assert c['rollout_shape'] == [1, 16, 6, 8, 8] and c['pixels_shape'] == [1, 3, 21, 64, 64]
    assert c['adapter_dtype'] == '{torch.float32}'                            # fp32 LoRA on the bf16 backbone
    assert c['old_moved'] and c['resumed_step'] == 1 and c['resumed_adapters_equal']
    assert all(v == v and abs(v) < 1e6 for v in c['afd_row'].values()) and c['sft_loss'] == c['sft_loss']


@pytest.mark.slow
def test_the_real_shape_videoalign_discriminator_takes_a_bt_step():
    "Qwen2-VL-2B's shape with random weights (36 s at 2 threads, 11 GB): one (E4) step moves the adapters and head."
    from real_dry_run import videoalign_step
    c = videoalign_step()
    assert c['parameters'] > 2_200_000_000 and 0 < c['trainable'] < c['parameters'] // 10
    assert 0 < c['bt_loss'] < 5 and c['tensors_moved'] > 0
