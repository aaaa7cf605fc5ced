"The analytic simulator of afd_nb.world: conservation laws, restitution, rendering, the prompt grammar."
import math
import numpy as np, pytest
from afd_nb.world import (COLORS, GRAVITY, PHYSICS_VARIANTS, SHAPES, Body, Scene, draw, frame_times, parse_prompt,
                          physics_variant, prompt_text, render, sample_prompts, scene_from_prompt, simulate,
                          vocabulary, world_to_pixel)

TS = np.linspace(0, 3, 6001)


def _energy(scene, tr):
    m = np.array([b.mass for b in scene.bodies])
    return (0.5 * m * (tr.vel**2).sum(-1) + m * scene.gravity * tr.pos[..., 1]).sum(-1)


@pytest.mark.parametrize('prompt', sample_prompts('physics', 9, seed=7) + sample_prompts('general', 6, seed=7))
def test_energy_conserved_between_events(prompt):
    scene = scene_from_prompt(prompt, seed=3)
    tr = simulate(scene, TS)
    E = _energy(scene, tr)
    piece = np.searchsorted([e.t for e in tr.events], TS, side='right')
    for k in np.unique(piece):
        assert np.ptp(E[piece == k]) <= 1e-9 * max(1.0, abs(E).max()), (prompt, k)
    if scene.domain == 'general' and not any(e.kind == 'collision' for e in tr.events):  # elastic walls, no gravity
        assert np.ptp(np.linalg.norm(tr.vel, axis=-1), axis=0).max() < 1e-9


@pytest.mark.parametrize('e', [0.0, 0.3, 0.7, 0.95])
def test_restitution_scales_bounce_speed_exactly(e):
    scene = Scene('drop', 'physics', [Body('ball', 'red', 1.0, (3.0, 8.5), (2.0, 0.0))], GRAVITY, e)
    tr = simulate(scene, [3.0])
    floors = [ev for ev in tr.events if ev.kind in ('floor', 'left', 'right')]
    assert floors
    for ev in floors:
        assert ev.speed_out == pytest.approx(0.0 if ev.rests else e * ev.speed_in, abs=1e-12)
        before, after = simulate(scene, [ev.t - 1e-7, ev.t + 1e-7]).vel[:, 0]
        ax = 1 if ev.kind == 'floor' else 0
        assert abs(abs(after[ax]) - ev.speed_out) < 2e-6 and abs(abs(before[ax]) - ev.speed_in) < 2e-6
    first = next(ev for ev in floors if ev.kind == 'floor')
    assert first.speed_in == pytest.approx(math.sqrt(2 * GRAVITY * 7.5), rel=1e-12)   # free fall of 7.5 units


@pytest.mark.parametrize('eb', [1.0, 0.5, 0.0])
def test_collisions_conserve_momentum(eb):
    a = Body('ball', 'red', 0.8, (2.0, 6.0), (3.0, 0.5))
    b = Body('ball', 'blue', 1.5, (8.0, 6.3), (-2.5, 0.0))
    g = GRAVITY if eb > 0 else 0.0   # a perfectly inelastic pair under gravity stays in contact: not modelled
    scene = Scene('collision', 'physics', [a, b], g, 0.8, body_restitution=eb)
    cols = [ev for ev in simulate(scene, [3.0]).events if ev.kind == 'collision']
    assert cols
    m = np.array([a.mass, b.mass])
    for ev in cols:
        before, after = simulate(scene, [ev.t - 1e-9]), simulate(scene, [ev.t])
        p0, p1 = (m[:, None] * before.vel[0]).sum(0), (m[:, None] * after.vel[0]).sum(0)
        assert np.abs(p0 - p1).max() < 1e-6 * np.abs(m[:, None] * before.vel[0]).sum()
        assert ev.speed_out == pytest.approx(eb * ev.speed_in, abs=1e-12)
        ke = lambda tr: 0.5 * (m * (tr.vel[0]**2).sum(-1)).sum()
        if eb == 1.0: assert ke(after) == pytest.approx(ke(before), rel=1e-6)
        else: assert ke(after) < ke(before)
        assert np.linalg.norm(after.pos[0, 1] - after.pos[0, 0]) == pytest.approx(a.radius + b.radius, abs=1e-6)


def test_sampled_collision_prompts_collide_and_conserve_momentum():
    for p in [p for p in sample_prompts('physics', 30, seed=1) if 'collide' in p]:
        scene = scene_from_prompt(p, seed=0)
        ev = next(e for e in simulate(scene, [3.0]).events if e.kind == 'collision')
        assert 0.2 < ev.t < 0.6
        m = np.array([b.mass for b in scene.bodies])[:, None]
        before, after = simulate(scene, [ev.t - 1e-9]), simulate(scene, [ev.t])
        assert np.allclose((m * before.vel[0]).sum(0), (m * after.vel[0]).sum(0), atol=1e-6)


def test_bodies_stay_inside_the_box():
    for p in sample_prompts('physics', 15, seed=2) + sample_prompts('general', 15, seed=2):
        scene = scene_from_prompt(p, seed=1)
        pos, r = simulate(scene, TS).pos, np.array([b.radius for b in scene.bodies])
        assert (pos >= r[:, None] - 1e-9).all() and (pos <= 10 - r[:, None] + 1e-9).all(), p


def test_ball_on_the_floor_stays_and_rests_after_bounces():
    still = Scene('drop', 'physics', [Body('ball', 'red', 1.0, (5.0, 1.0))], GRAVITY, 0.7)
    assert np.ptp(simulate(still, TS).pos, axis=0).max() == 0
    tr = simulate(Scene('drop', 'physics', [Body('ball', 'red', 1.0, (5.0, 9.0))], GRAVITY, 0.5), [6.0])   # Zeno series ends at 3.8 s
    assert tr.events[-1].rests and tr.pos[0, 0, 1] == 1.0


def test_same_continuous_trajectory_at_any_fps_and_size():
    scene = scene_from_prompt("a blue ball is thrown to the right from the left side", seed=3)
    t16, t8 = simulate(scene, frame_times(16, 48)), simulate(scene, frame_times(8, 24))
    assert np.array_equal(t16.pos[::2], t8.pos)
    big, small = render(scene, 64, 16.0, 48), render(scene, 32, 8.0, 24)
    down = big[::2].reshape(24, 32, 2, 32, 2, 3).mean((2, 4))
    assert np.abs(down - small).mean() < 3.0


def test_render_format_and_antialiasing():
    scene = Scene('move', 'general', [Body('ball', 'red', 1.2, (3.0, 7.0)), Body('square', 'blue', 1.0, (7.0, 3.0))])
    clip = render(scene, (24, 40), fps=8.0, num_frames=3)
    assert clip.shape == (3, 24, 40, 3) and clip.dtype == np.uint8
    u, v = world_to_pixel(np.array([3.0, 7.0]), (24, 40))
    assert tuple(clip[0, round(v), round(u)]) == COLORS['red']
    assert tuple(clip[0, 0, 0]) == (255, 255, 255)
    sq = draw([Body('square', 'blue', 1.0, (5.0, 5.0))], np.array([[[5.1, 4.93]]]), 32)[0]
    cover = (255.0 - sq[..., 0]) / (255 - COLORS['blue'][0])
    assert cover.sum() == pytest.approx(6.4**2, abs=0.05)                 # exact area, off-grid position
    assert ((cover > 0.01) & (cover < 0.99)).any()                          # partial edge pixels
    assert set(COLORS) >= {'red', 'blue', 'green'} and 'yellow' not in COLORS and SHAPES == ('ball', 'square')


@pytest.mark.parametrize('domain', ['general', 'physics'])
def test_prompts_round_trip(domain):
    prompts = sample_prompts(domain, 300, seed=5)
    for p in prompts:
        pp = parse_prompt(p)
        assert pp.domain == domain and prompt_text(pp.scenario, pp.attributes) == p
    for p in prompts[:40]:
        scene, pp = scene_from_prompt(p, seed=2), parse_prompt(p)
        assert [b.color for b in scene.bodies] == [o['color'] for o in pp.attributes['objects']]
        assert [b.shape for b in scene.bodies] == [o['shape'] for o in pp.attributes['objects']]
        assert scene.domain == domain and (scene.gravity > 0) == (domain == 'physics')
        for o, b in zip(pp.attributes['objects'], scene.bodies):
            if o['direction'] in ('right', 'left', 'up', 'down'):
                axis, sign = (0, 1) if o['direction'] == 'right' else (0, -1) if o['direction'] == 'left' else \
                             (1, 1) if o['direction'] == 'up' else (1, -1)
                assert b.vel[axis] * sign > 0 and b.vel[1 - axis] == 0


def test_vocabulary_is_exactly_the_words_produced():
    "The full world produces every vocabulary word; the benchmark world (the default) a subset without squares."
    words = {w for d in ('general', 'physics') for p in sample_prompts(d, 3000, seed=0, world='full') for w in p.split()}
    assert words == set(vocabulary())
    bench = {w for d in ('general', 'physics') for p in sample_prompts(d, 3000, seed=0) for w in p.split()}
    assert bench < words and 'square' not in bench and 'ball' in bench


def test_unknown_prompts_raise_helpfully():
    with pytest.raises(ValueError, match=r"(?s)'yellow'.*expected one of these forms.*COLOR: red"):
        parse_prompt("a yellow ball rolls away")
    with pytest.raises(ValueError, match='expected one of these forms'):
        parse_prompt("a red ball moves sideways")
    with pytest.raises(ValueError, match='different colours'):
        parse_prompt("a red ball and a red ball are thrown toward each other and collide")
    with pytest.raises(ValueError, match='physics|forms'):
        parse_prompt("a red square is dropped from the top and bounces on the floor")
    with pytest.raises(ValueError, match='domain'): sample_prompts('chemistry', 3)


def test_scene_from_prompt_is_deterministic():
    p = "a small green ball is dropped from the upper right and bounces on the floor"
    assert scene_from_prompt(p, 4) == scene_from_prompt(p + '.', 4) != scene_from_prompt(p, 5)
    assert sample_prompts('general', 7, seed=9) == sample_prompts('general', 7, seed=9)


def test_physics_variants():
    scene = scene_from_prompt("a red ball is thrown to the left from the right side", seed=1)
    assert PHYSICS_VARIANTS == ('true', 'no_gravity', 'constant_speed', 'no_bounce', 'weak_gravity', 'strong_gravity')
    v = {k: physics_variant(scene, k) for k in PHYSICS_VARIANTS}
    assert v['true'] == scene and v['no_gravity'].gravity == 0 and v['no_bounce'].restitution == 0
    assert v['weak_gravity'].gravity < GRAVITY < v['strong_gravity'].gravity
    floor_t = lambda s: next(e.t for e in simulate(s, [3.0]).events if e.kind == 'floor')
    assert floor_t(v['constant_speed']) == pytest.approx(floor_t(scene), abs=1e-9)
    early = simulate(v['constant_speed'], np.linspace(0, floor_t(scene) - 1e-3, 50)).vel[:, 0, 1]
    assert np.ptp(early) == 0 and early[0] < 0                                  # falls at one constant speed
    ng = simulate(v['no_gravity'], TS).pos[:, 0, 1]
    assert np.ptp(ng) == 0                                                      # a horizontal throw stays level
    assert any(e.rests for e in simulate(v['no_bounce'], [3.0]).events)
    assert scene.gravity == GRAVITY                                             # the original is untouched
    with pytest.raises(ValueError, match='no_gravity'): physics_variant(scene, 'zero_g')


def test_scene_validation():
    with pytest.raises(ValueError, match='inside'):
        Scene('move', 'general', [Body('ball', 'red', 1.0, (0.5, 5.0))])
    with pytest.raises(ValueError, match='color'): Body('ball', 'yellow', 1.0, (5, 5))
    with pytest.raises(ValueError, match='restitution'):
        Scene('drop', 'physics', [Body('ball', 'red', 1.0, (5, 5))], GRAVITY, 1.5)
