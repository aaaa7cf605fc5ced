"""Teachers (issue 3, item 2) and data_samples/ (item 4): HTTP resilience on loopback, FolderTeacher on the shipped
clips, CachedTeacher across processes, the tiny Wan pipeline as DiffusersTeacher, prompt splits that cannot drift."""
import json, subprocess, sys, time, warnings
from pathlib import Path

import numpy as np, pytest, torch
from afd_nb.core import data_samples_dir
from afd_nb.video import read_video, write_video
from afd_nb.world import parse_prompt, sample_prompts
from afd_nb.teachers import (PROMPT_SPLITS, CachedTeacher, DiffusersTeacher, FolderTeacher, HTTPTeacher, PhysicsTeacher,
                             Teacher, TeacherError, TeacherServer, load_prompts, load_teacher, make_prompt_splits,
                             read_manifest, tiny_wan_pipeline, write_data_samples)

SMALL = PhysicsTeacher(size=16, fps=4.0, num_frames=4)   # cheap clips for plumbing tests
P = sample_prompts('physics', 6, seed=11, unique=True)


class Counting(Teacher):
    "Records every batch it is asked for."
    def __init__(self, inner=SMALL): self.inner, self.teacher_id, self.asked = inner, inner.teacher_id, []
    def sample(self, prompts, seed): self.asked.append(list(prompts)); return self.inner.sample(prompts, seed)


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv('AFD_TEACHER_TOKEN', 'tok-123')
    return 'tok-123'


def entries(cache_dir: Path) -> set[str]:
    return {f.stem for f in Path(cache_dir).rglob('*.json')}


# ---------------------------------------------------------------- PhysicsTeacher
def test_physics_teacher_own_format_and_seed_semantics():
    t = PhysicsTeacher()
    a = t.sample(P[:3], seed=4)
    assert [c.frames.shape for c in a] == [(48, 64, 64, 3)] * 3 and {c.fps for c in a} == {16.0}
    assert [c.prompt for c in a] == P[:3] and a[0].meta['seed'] == 4
    assert np.array_equal(t.sample([P[2]], seed=4)[0].frames, a[2].frames)        # independent of the batch
    assert not np.array_equal(t.sample([P[0]], seed=5)[0].frames, a[0].frames)
    with pytest.raises(ValueError, match='domain=None'): t.sample(sample_prompts('general', 1, seed=0), 0)
    assert PhysicsTeacher(domain=None).sample(sample_prompts('general', 1, seed=0), 0)[0].frames.shape[0] == 48
    with pytest.raises(TypeError, match='list of prompts'): t.sample(P[0], 0)


# ---------------------------------------------------------------- HTTPTeacher (Done when: resilience on loopback)
def test_http_survives_errors_and_a_timeout_then_malformed_body_is_clear_and_not_cached(token, tmp_path):
    p_ok, p_bad, p_also = P[:3]
    script = {p_ok: ['error', 'error', 'stall'], p_bad: ['malformed']}
    with TeacherServer(SMALL, script=script, token=token, stall=10.0) as srv:
        api = HTTPTeacher(srv.url, timeout=0.5, max_retries=3, backoff=0.05)
        t0 = time.monotonic()
        clip = api.sample([p_ok], seed=2)[0]
        elapsed = time.monotonic() - t0
        assert [a for _, a in srv.log] == ['error', 'error', 'stall', 'ok'] and api.requests == 4
        assert np.array_equal(clip.frames, SMALL.sample([p_ok], 2)[0].frames) and clip.fps == 4.0   # lossless
        assert elapsed < 6, elapsed     # 0.05 + 0.1 + 0.5 (timeout) + 0.2 s of waiting plus work, not the 10 s stall
        cached = CachedTeacher(api, tmp_path)
        with pytest.raises(TeacherError) as err: cached.sample([p_also, p_bad], seed=2)
        msg = str(err.value)
        assert repr(p_bad) in msg and 'not JSON' in msg and '1 of 2 prompts failed' in msg
        assert entries(tmp_path) == {cached.key(p_also, 2)}     # the good clip of the call is kept, the bad one not
        assert cached.misses == 1 and set(err.value.partial) == {0}
    assert srv.in_flight == 0


def test_http_retries_are_bounded_and_errors_name_the_problem(token):
    with TeacherServer(SMALL, script={P[0]: ['error'] * 5, P[1]: ['nofield'], P[2]: ['badvideo']}, token=token) as srv:
        api = HTTPTeacher(srv.url, timeout=2.0, max_retries=2, backoff=0.01)
        with pytest.raises(TeacherError, match=r'failed 3 times \(last: HTTP 500'): api.sample([P[0]], 0)
        assert len(srv.log) == 3
        with pytest.raises(TeacherError, match="no field 'video'"): api.sample([P[1]], 0)
        with pytest.raises(TeacherError, match='does not decode'): api.sample([P[2]], 0)
        assert len(srv.log) == 5    # malformed answers are not asked for again
    closed = srv.url                # the server is gone: connection refused, retried, then a clear error
    t0 = time.monotonic()
    with pytest.raises(TeacherError, match='failed 2 times'): HTTPTeacher(closed, timeout=1, max_retries=1, backoff=0.01).sample([P[0]], 0)
    assert time.monotonic() - t0 < 5


def test_http_token_from_environment(monkeypatch):
    monkeypatch.delenv('AFD_TEACHER_TOKEN', raising=False)
    with TeacherServer(SMALL, token='right') as srv:
        with pytest.raises(TeacherError, match=r'\$AFD_TEACHER_TOKEN.*empty'): HTTPTeacher(srv.url).sample([P[0]], 0)
        assert srv.log == []        # nothing was sent
        monkeypatch.setenv('AFD_TEACHER_TOKEN', 'wrong')
        with pytest.raises(TeacherError, match='refused the credentials'): HTTPTeacher(srv.url, max_retries=3).sample([P[0]], 0)
        monkeypatch.setenv('AFD_TEACHER_TOKEN', 'right')
        assert HTTPTeacher(srv.url).sample([P[0]], 0)[0].prompt == P[0]
        assert 'right' not in HTTPTeacher(srv.url).describe()
    with TeacherServer(SMALL) as srv:   # an API without auth
        monkeypatch.delenv('AFD_TEACHER_TOKEN')
        assert HTTPTeacher(srv.url, require_token=False).sample([P[0]], 0)[0].frames.shape == (4, 16, 16, 3)


def test_http_concurrency_limit_and_order(token):
    with TeacherServer(SMALL, token=token, delay=0.3) as srv:
        api = HTTPTeacher(srv.url, max_concurrency=2)
        clips = api.sample(P, seed=1)
        assert [c.prompt for c in clips] == P and srv.max_in_flight == 2
        want = SMALL.sample(P, seed=1)
        assert all(np.array_equal(a.frames, b.frames) for a, b in zip(clips, want))


def test_http_url_response_format_and_custom_fields(token):
    with TeacherServer(SMALL, token=token, response_format='url') as srv:
        api = HTTPTeacher(srv.url, response_format='url', extra_fields={'model': 'm1'})
        assert np.array_equal(api.sample([P[0]], 3)[0].frames, SMALL.sample([P[0]], 3)[0].frames)
        assert api.teacher_id != HTTPTeacher(srv.url).teacher_id     # the extra fields name another teacher
    with pytest.raises(ValueError, match='response_format'): HTTPTeacher('http://127.0.0.1:1/', response_format='mp4')


# ---------------------------------------------------------------- FolderTeacher (Done when: reads the shipped clips)
def test_folder_teacher_reads_the_shipped_clips():
    ft = FolderTeacher(data_samples_dir()/'teacher_clips')
    ps = [e['prompt'] for e in ft.entries]
    assert len(ps) == 8 and ps == load_prompts('physics', 'train')[:8]
    clips = ft.sample(ps, seed=0)
    want = PhysicsTeacher().sample(ps, seed=0)
    assert all(c.frames.shape == (48, 64, 64, 3) and c.fps == 16.0 and np.array_equal(c.frames, w.frames) for c, w in zip(clips, want))
    assert {parse_prompt(p).scenario for p in ps} == {'drop', 'throw', 'collision'}
    with pytest.raises(TeacherError) as err: ft.sample([ps[0], 'a red ball floats'], 0)
    assert "'a red ball floats'" in str(err.value) and '8 prompts' in str(err.value) and 'manifest.jsonl' in str(err.value)


def test_folder_teacher_seed_matching_and_file_errors(tmp_path):
    a, b = SMALL.sample(P[:2], seed=0)
    a1 = SMALL.sample(P[:1], seed=1)[0]
    write_video(tmp_path/'a0.mp4', a, lossless=True); write_video(tmp_path/'a1.mp4', a1, lossless=True)
    (tmp_path/'bad.mp4').write_bytes(b'\x00' * 100)
    lines = [{'prompt': P[0], 'seed': 0, 'file': 'a0.mp4'}, {'prompt': P[0], 'seed': 1, 'file': 'a1.mp4'},
             {'prompt': P[1], 'seed': None, 'file': 'gone.mp4'}, {'prompt': P[2], 'seed': 0, 'file': 'bad.mp4'}]
    (tmp_path/'clips.jsonl').write_text('\n'.join(map(json.dumps, lines)) + '\n')
    ft = FolderTeacher(tmp_path/'clips.jsonl')
    assert np.array_equal(ft.sample([P[0]], 1)[0].frames, a1.frames) and np.array_equal(ft.sample([P[0]], 0)[0].frames, a.frames)
    with pytest.raises(TeacherError, match=r'seeds \[0, 1\], none for seed 7'): ft.sample([P[0]], 7)
    with pytest.raises(TeacherError, match='gone.mp4'): ft.sample([P[1]], 7)      # single entry: any seed; missing file
    with pytest.raises(TeacherError, match='bad.mp4'): ft.sample([P[2]], 0)
    (tmp_path/'dup.jsonl').write_text(json.dumps(lines[0]) + '\n' + json.dumps(lines[0]) + '\n')
    with pytest.raises(ValueError, match='repeats'): FolderTeacher(tmp_path/'dup.jsonl')
    (tmp_path/'broken.jsonl').write_text(json.dumps(lines[0]) + '\n{"prompt": 3}\n')
    with pytest.raises(ValueError, match=r'broken.jsonl:2'): read_manifest(tmp_path/'broken.jsonl')


# ---------------------------------------------------------------- CachedTeacher (Done when: once per key, across processes)
def test_cache_asks_only_for_missing_prompts_and_returns_exact_clips(tmp_path):
    inner = Counting()
    ct = CachedTeacher(inner, tmp_path)
    first = ct.sample(P[:3], seed=0)
    again = ct.sample([P[3], P[1], P[3], P[0]], seed=0)
    assert inner.asked == [P[:3], [P[3]]] and (ct.hits, ct.misses) == (2, 4)
    assert np.array_equal(again[1].frames, first[1].frames) and again[2].prompt == P[3] and again[1].fps == 4.0
    side = json.loads(ct.path(ct.key(P[0], 0), '.json').read_text())
    assert side['prompt'] == P[0] and side['seed'] == 0 and side['shape'] == [4, 16, 16, 3] and side['teacher_id'] == SMALL.teacher_id
    assert CachedTeacher(Counting(), tmp_path).sample(P[:4], seed=0)[0].prompt == P[0]   # a new instance reads the same disk
    ct.sample(P[:1], seed=9); assert inner.asked[-1] == P[:1]


def test_cache_detects_corrupt_entries_and_refetches_with_a_warning(tmp_path):
    inner = Counting()
    ct = CachedTeacher(inner, tmp_path)
    good = ct.sample(P[:3], seed=0)
    f0, f1, f2 = (ct.path(ct.key(p, 0)) for p in P[:3])
    f0.write_bytes(f0.read_bytes()[:200])                                                 # truncated mp4
    write_video(f1, good[1].frames[::-1].copy(), fps=4.0, lossless=True)                  # valid mp4, wrong frames
    ct.path(ct.key(P[2], 0), '.json').unlink()                                            # no sidecar: simply absent
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        fixed = ct.sample(P[:3], seed=0)
    msgs = [str(x.message) for x in w]
    assert len(msgs) == 2 and str(f0) in msgs[0] + msgs[1] and str(f1) in msgs[0] + msgs[1], msgs
    assert inner.asked[-1] == P[:3] and all(np.array_equal(a.frames, b.frames) for a, b in zip(fixed, good))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert ct.sample(P[:3], seed=0)[0].prompt == P[0] and len(inner.asked) == 2       # repaired: all hits


CHILD = r'''
import json, sys, time
from pathlib import Path
from afd_nb.teachers import CachedTeacher, PhysicsTeacher, Teacher
cache, log, ready, go, *prompts = sys.argv[1:]
class Logged(Teacher):
    def __init__(self): self.inner = PhysicsTeacher(size=16, fps=4.0, num_frames=4); self.teacher_id = self.inner.teacher_id
    def sample(self, ps, seed):
        with open(log, 'a') as f: f.write(json.dumps(ps) + '\n')    # one short O_APPEND write per call
        time.sleep(0.5)                                               # a slow teacher: a wide window for a race
        return self.inner.sample(ps, seed)
Path(ready).touch()
deadline = time.monotonic() + 60
while not Path(go).exists() and time.monotonic() < deadline: time.sleep(0.01)
clips = CachedTeacher(Logged(), cache).sample(prompts, seed=0)
print(json.dumps({c.prompt: int(c.frames.astype(int).sum()) for c in clips}))
'''


def test_cache_calls_the_inner_teacher_once_per_key_across_processes(tmp_path):
    script, log, go = tmp_path/'child.py', tmp_path/'calls.jsonl', tmp_path/'go'
    script.write_text(CHILD)
    asks = [P[0:3], P[1:4], [P[3], P[0], P[4]]]
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path/'cache'), str(log), str(tmp_path/f'ready{i}'), str(go), *ps],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i, ps in enumerate(asks)]
    try:
        deadline = time.monotonic() + 90
        while not all((tmp_path/f'ready{i}').exists() for i in range(len(asks))) and time.monotonic() < deadline: time.sleep(0.05)
        go.touch()   # all three start sampling at once
        outs = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs: p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], [e[-2000:] for _, e in outs]
    asked = [q for line in log.read_text().splitlines() for q in json.loads(line)]
    assert sorted(asked) == sorted(P[:5]), asked                      # every key fetched exactly once
    sums = [json.loads(o) for o, _ in outs]
    for p in P[:5]: assert len({s[p] for s in sums if p in s}) == 1   # and every process got the same clip


# ---------------------------------------------------------------- DiffusersTeacher
def test_diffusers_teacher_with_a_tiny_random_wan_pipeline():
    threads = torch.get_num_threads(); torch.set_num_threads(1)      # tiny tensors: more threads only contend
    try:
        t0 = time.monotonic()
        t = DiffusersTeacher(tiny_wan_pipeline(), num_frames=9, height=16, width=16, fps=8.0, teacher_id='tiny-wan',
                             num_inference_steps=2, guidance_scale=1.0, max_sequence_length=16)
        a = t.sample(P[:2], seed=0)
        assert [c.frames.shape for c in a] == [(9, 16, 16, 3)] * 2 and a[0].frames.dtype == np.uint8 and a[0].fps == 8.0
        assert np.array_equal(t.sample([P[1]], seed=0)[0].frames, a[1].frames)       # a seed gives one clip, in any batch
        assert not np.array_equal(t.sample([P[0]], seed=1)[0].frames, a[0].frames)
        assert not np.array_equal(a[0].frames, a[1].frames)
        assert time.monotonic() - t0 < 15
    finally:
        torch.set_num_threads(threads)
    with pytest.warns(UserWarning, match='teacher_id'): DiffusersTeacher(object())


@pytest.mark.slow
def test_load_teacher_diffusers_from_a_saved_pipeline(tmp_path):
    tiny_wan_pipeline().save_pretrained(tmp_path/'tiny')
    t = load_teacher(f"diffusers:{tmp_path/'tiny'}", num_frames=9, height=16, width=16, num_inference_steps=2,
                     guidance_scale=1.0, max_sequence_length=16)
    assert str(tmp_path/'tiny') in t.teacher_id and t.sample(P[:1], 0)[0].frames.shape == (9, 16, 16, 3)


# ---------------------------------------------------------------- load_teacher
def test_load_teacher_names(tmp_path):
    assert load_teacher('physics', size=32).size == (32, 32)
    assert isinstance(load_teacher('samples'), FolderTeacher)
    assert load_teacher(f"folder:{data_samples_dir()/'teacher_clips'}").teacher_id == load_teacher('samples').teacher_id
    assert load_teacher('https://api.example/v1/sample').url == 'https://api.example/v1/sample'
    assert load_teacher('http:http://127.0.0.1:5/s').url == 'http://127.0.0.1:5/s'
    c = load_teacher('physics', cache=tmp_path)
    assert isinstance(c, CachedTeacher) and c.cache_dir == tmp_path and c.teacher_id == PhysicsTeacher().teacher_id
    with pytest.raises(ValueError, match=r"unknown teacher 'veo'.*folder:<path>"): load_teacher('veo')


# ---------------------------------------------------------------- data_samples/
def test_prompt_splits_are_current_distinct_and_disjoint():
    sets = {}
    for domain, spec in PROMPT_SPLITS.items():
        fresh = make_prompt_splits(domain, **spec)
        for split in ('train', 'eval'):
            shipped = load_prompts(domain, split)
            assert shipped == fresh[split], f"data_samples/prompts/{domain}_{split}.txt drifted: run write_data_samples()"
            assert len(set(shipped)) == len(shipped) == sum(spec[split].values())
            assert all(parse_prompt(p).domain == domain for p in shipped)
            scen = [parse_prompt(p).scenario for p in shipped]   # every scenario in its stated count
            assert {k: scen.count(k) for k in spec[split]} == spec[split] and set(scen) == set(spec[split])
            sets[domain, split] = set(shipped)
    train = sets['physics', 'train'] | sets['general', 'train']
    assert not train & (sets['physics', 'eval'] | sets['general', 'eval'])


def test_data_samples_regenerate_exactly_and_stay_small(tmp_path):
    written = write_data_samples(tmp_path)
    shipped = data_samples_dir()
    for f in written:
        rel = f.relative_to(tmp_path)
        if f.suffix == '.mp4':
            a, b = read_video(f), read_video(shipped/rel)
            assert np.array_equal(a.frames, b.frames) and a.fps == b.fps == 16.0, rel
        else: assert f.read_text() == (shipped/rel).read_text(), rel
    total = sum(f.stat().st_size for d in ('prompts', 'teacher_clips') for f in (shipped/d).iterdir())
    assert total < 5e6
