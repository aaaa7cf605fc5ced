"""One AFD student step on a fixed global batch, run by tests/test_multiprocess.py with 1 process (the whole batch) or
under `accelerate launch` with 2 (half each): writes the default adapter's all-reduced gradients to argv[1]. With
argv[2] == 'half', one process takes only the first half (what a rank would take without the all-reduce)."""
import sys, warnings
import torch
from accelerate import Accelerator
from afd_nb.student import load_student
from afd_nb.teachers import load_teacher
from afd_nb.train import Trainer, TrainConfig

B = 8   # the global batch: 4 prompts x 2 rollouts


def row_noise(tr, x0, groups=None, draws=1):
    "(t, ε) per row from a seed of the row's own content: the same rows get the same draws however they are split."
    ts, ns = [], []
    for x in x0:
        g = torch.Generator().manual_seed(int(x.double().abs().sum() * 1e4) % 2**31)
        ts.append(torch.rand(1, generator=g).expand(x.shape[1]) * 0.8 + 0.1); ns.append(torch.randn(x.shape, generator=g))
    return torch.stack(ts), torch.stack(ns)


def main(out: str, half: bool = False) -> None:
    acc = Accelerator()
    n, k = (2, 0) if half else (acc.num_processes, acc.process_index)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        student = load_student('causal_forcing', 'tiny', device=acc.device)
    cfg = TrainConfig(batch_size=B // n, group_size=2, baseline='prompt_global_std', reward='darkness', d_steps=0,
                      n_teacher_prompts=4, eval_every=0, micro_batch=2, grad_clip=0.0, lr=1e-3)
    tr = Trainer(student, load_teacher('physics'), cfg, accelerator=acc, progress=False)
    idx = [i // 2 for i in range(B)]                       # prompt ids of the global batch
    prompts = [tr.data.prompts[i] for i in idx]
    emb, mask = student.encode_prompts(prompts)
    with torch.no_grad(), student.view('old'):            # the same rollouts on every process
        x0 = student.model.rollout(emb, generator=torch.Generator().manual_seed(0), text_mask=mask).float()
        y = student.codec.decode(x0).float().clamp(-1, 1)
    mine = slice(k * B // n, (k + 1) * B // n)
    r, _, _ = tr.weights(y[mine], prompts[mine], idx[mine])   # (E6)-(E7) over the gathered global batch
    tr._draw_t_noise = lambda x, groups=None, draws=1: row_noise(tr, x, groups, draws)
    grads = {}
    step = tr.opt.step
    def record_then_step(*a, **kw):
        grads.update({f'p{i}': p.grad.detach().clone() for i, p in enumerate(tr.params)})
        return step(*a, **kw)
    tr.opt.step = record_then_step
    tr._student_updates(x0[mine], emb[mine], mask[mine], r)
    if acc.is_main_process: torch.save(dict(grads=grads, r=r), out)
    acc.wait_for_everyone()


if __name__ == '__main__': main(sys.argv[1], sys.argv[2:] == ['half'])
