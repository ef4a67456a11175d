"""The shot planner: exact frames on one grid, frame rules, splits, bridges, hashes."""

from __future__ import annotations

from fractions import Fraction

import pytest

from stitchcraft.engines.base import Capabilities, FrameRule
from stitchcraft.errors import StoryboardError
from stitchcraft.plan import plan_storyboard
from stitchcraft.storyboard.load import load_storyboard

# An engine shaped like LTX-Video: 8k+1 frames, at most 257 a call, 9 conditioning frames.
LTX_LIKE = Capabilities(kinds=frozenset({"prompt", "image"}), text_to_video=True, image_to_video=True,
                        first_last_frame=True, condition_frames=9, frame_rule=FrameRule(8, 1),
                        max_frames=257, size_multiple=32, seconds_per_frame=0.01)
# Shaped like Wan 2.1: 4k+1, at most 81.
WAN_LIKE = Capabilities(kinds=frozenset({"prompt", "image"}), text_to_video=True, image_to_video=True,
                        first_last_frame=True, condition_frames=1, frame_rule=FrameRule(4, 1),
                        max_frames=81, size_multiple=16, seconds_per_frame=1.0)
CPU = Capabilities(kinds=frozenset({"title", "image", "source"}))


def caps_for(gpu: Capabilities):
    return lambda name: gpu if name in ("ltx-video", "wan") else CPU


def plan(write_storyboard, text, gpu=LTX_LIKE, **kwargs):
    loaded = load_storyboard(write_storyboard(text), check_files=False)
    return plan_storyboard(loaded, capabilities=caps_for(gpu), **kwargs)


def board(fps, shots, transition="{type: dissolve, duration: 0.5}", extra=""):
    return f"""
version: 1
output: {{fps: {fps}, size: 1280x720}}
defaults: {{engine: ltx-video, candidates: 2, transition: {transition}}}
{extra}
shots:
{shots}
"""


def test_ntsc_23976_timeline(write_storyboard):
    p = plan(write_storyboard, board("23.976", """
  - {id: a, title: A, duration: 5}
  - {id: b, title: B, duration: 4}
  - {id: c, title: C, duration: 3, transition: {type: cut}}
"""))
    assert p.fps == Fraction(24000, 1001)
    frames = [s.frames for s in p.shots]
    assert frames == [120, 96, 72]                      # 119.88, 95.9, 71.93 rounded once
    assert [s.transition_in for s in p.shots] == [0, 12, 0]  # 0.5 s = 11.988 -> 12
    assert [s.start for s in p.shots] == [0, 108, 204]
    assert p.total_frames == sum(frames) - 12 == 276


def test_2997_with_fade_in_and_ending(write_storyboard):
    p = plan(write_storyboard, board("29.97", """
  - {id: a, title: A, duration: 2, transition: {type: fade, duration: 1}}
  - {id: b, title: B, duration: 2, transition: {type: dissolve, duration: 1}}
  - {id: c, title: C, duration: 2, transition: {type: wipeleft, duration: 1}}
""", extra="ending: {type: fade, duration: 0.5}"))
    assert [s.frames for s in p.shots] == [60, 60, 60]
    assert p.shots[0].fade_in == 30 and p.shots[0].transition_in == 0   # a fade in overlaps nothing
    assert [s.transition_in for s in p.shots[1:]] == [30, 30]
    assert p.total_frames == 120 and p.ending == 15


def test_shot_shorter_than_transition_is_rejected(write_storyboard):
    with pytest.raises(StoryboardError) as caught:
        plan(write_storyboard, board(24, """
  - {id: a, title: A, duration: 2}
  - {id: b, title: B, duration: 0.25}
"""))
    assert "has only 6" in str(caught.value)


@pytest.mark.parametrize("gpu, seconds", [(LTX_LIKE, 30), (WAN_LIKE, 12.5), (WAN_LIKE, 3.375)])
def test_long_shot_splits_into_chained_segments(write_storyboard, gpu, seconds):
    p = plan(write_storyboard, board(24, f"""
  - {{id: long, prompt: a very long take, duration: {seconds}}}
"""), gpu=gpu)
    shot = p.shots[0]
    assert sum(s.frames for s in shot.segments) == shot.frames == round(seconds * 24)
    for seg in shot.segments:
        assert seg.generate <= gpu.max_frames
        assert gpu.frame_rule.allows(seg.generate)
        assert seg.generate >= seg.frames + seg.condition
    assert not shot.segments[0].chained and shot.segments[0].condition == 0
    for seg in shot.segments[1:]:
        assert seg.chained and seg.condition == gpu.condition_frames
    assert [s.start for s in shot.segments] == [sum(x.frames for x in shot.segments[:i])
                                                for i in range(len(shot.segments))]
    if shot.frames > gpu.max_frames:
        assert len(shot.segments) > 1
        sizes = [s.frames for s in shot.segments]
        assert max(sizes) - min(sizes) <= gpu.frame_rule.step + gpu.condition_frames  # balanced


def test_chained_shot_conditions_on_previous(write_storyboard):
    p = plan(write_storyboard, board(24, """
  - {id: a, prompt: street, duration: 2}
  - {id: b, prompt: face, duration: 2, continuity: chain}
"""))
    a, b = p.shots
    assert b.depends_on == ("a",) and b.segments[0].chained and b.segments[0].condition == 9
    assert b.segments[0].generate == 57  # 9 + 48 = 57 = 8*7 + 1
    assert a.segments[0].generate == 49  # 48 -> 49
    assert (a.width, a.height) == (1280, 736)  # fitted to a multiple of 32


def test_bridge_at_first_and_last_shot(write_storyboard):
    p = plan(write_storyboard, board(24, """
  - {id: a, prompt: first, duration: 2, continuity: bridge}
  - {id: b, prompt: middle, duration: 2}
  - {id: c, prompt: last, duration: 2, continuity: bridge}
"""))
    a, b, c = p.shots
    assert a.depends_on == ("b",) and a.segments[-1].bridge_to == "b" and not a.segments[0].chained
    assert c.depends_on == ("b",) and c.segments[-1].bridge_to is None and c.segments[0].chained
    assert p.order.index("b") < p.order.index("a") and p.order.index("b") < p.order.index("c")


def test_bridge_into_chain_is_a_cycle(write_storyboard):
    with pytest.raises(StoryboardError) as caught:
        plan(write_storyboard, board(24, """
  - {id: a, prompt: first, duration: 2}
  - {id: b, prompt: middle, duration: 2, continuity: bridge}
  - {id: c, prompt: last, duration: 2, continuity: chain}
"""))
    assert "each would wait for the other" in str(caught.value)


def test_hash_changes_only_with_what_decides_pixels(write_storyboard):
    shots = """
  - {id: a, prompt: street, duration: 2}
  - {id: b, prompt: face, duration: 2, continuity: chain}
  - {id: c, title: End, duration: 2}
"""
    base = plan(write_storyboard, board(24, shots))
    edited = plan(write_storyboard, board(24, shots.replace("street", "alley")))
    retimed = plan(write_storyboard, board(24, shots.replace("{type: dissolve, duration: 0.5}", "{type: cut}")),
                   )
    h = lambda p: [s.segments[0].hash for s in p.shots]  # noqa: E731
    assert h(base)[0] != h(edited)[0] and h(base)[1:] == h(edited)[1:]
    # transitions do not change any take's pixels
    assert h(base) == h(retimed)
    draft = plan(write_storyboard, board(24, shots), quality="draft")
    assert h(draft)[0] != h(base)[0] and h(draft)[2] == h(base)[2]


def test_gpu_time_estimate(write_storyboard):
    p = plan(write_storyboard, board(24, """
  - {id: a, prompt: street, duration: 2}
  - {id: c, title: End, duration: 2}
"""), gpu=WAN_LIKE)
    assert set(p.gpu_seconds) == {"ltx-video"}
    assert p.gpu_seconds["ltx-video"] == pytest.approx(49 * 2 * 1.0 * (1280 * 720) / (1280 * 720))


CHAIN_OF_THREE = """
  - {id: a, prompt: street, duration: 2, candidates: 3}
  - {id: b, prompt: face, duration: 2, continuity: chain}
  - {id: c, prompt: rain, duration: 2, continuity: chain}
  - {id: d, title: End, duration: 2}
"""


@pytest.mark.parametrize("generate, counted", [
    (None, {"a": 3, "b": 6, "c": 6}),  # each chained shot from all three partial cuts
    (2, {"a": 3, "b": 4, "c": 4}),
    (1, {"a": 3, "b": 2, "c": 2}),     # from the best partial cut only: like a greedy search
])
def test_takes_and_gpu_time_count_what_the_beam_makes(write_storyboard, generate, counted):
    extra = "scoring: {beam: 3" + (f", beam_generate: {generate}}}" if generate else "}")
    p = plan(write_storyboard, board(24, CHAIN_OF_THREE, extra=extra), gpu=WAN_LIKE)
    assert p.beam == 3
    by_shot = {s.id: sum(p.takes[g.key] for g in s.segments) for s in p.shots}
    assert by_shot == {**counted, "d": 1}  # a title card is one take, whatever is wanted
    # every GPU segment generates 49 frames (4k+1) at 1 s a frame, 1280x720
    assert p.gpu_seconds["ltx-video"] == pytest.approx(49 * 1.0 * sum(counted.values()))
    # a narrower beam, asked for (`stitch plan --beam 1`), counts each candidate once
    greedy = plan(write_storyboard, board(24, CHAIN_OF_THREE, extra=extra), gpu=WAN_LIKE, beam=1)
    assert {s.id: greedy.takes[s.segments[0].key] for s in greedy.shots} == {"a": 3, "b": 2, "c": 2, "d": 1}
    assert greedy.gpu_seconds["ltx-video"] == pytest.approx(49 * 7)


def test_takes_are_counted_as_each_engine_makes_them(write_storyboard):
    """The plan said 3 takes for a title card and for a still that does not move, where
    the render makes one of each: a shot chained to one continues one take."""
    p = plan(write_storyboard, board(24, """
  - {id: card, title: Hello, duration: 1, candidates: 3}
  - {id: still, image: x.png, camera: static, duration: 1, candidates: 3}
  - {id: moving, image: x.png, camera: push-in, duration: 1, candidates: 3}
  - {id: after, prompt: street, duration: 2, continuity: chain, candidates: 3}
""", extra="scoring: {beam: 3}"), gpu=WAN_LIKE)
    assert [p.takes[s.segments[0].key] for s in p.shots] == [1, 1, 3, 9]
    assert [s.candidates for s in p.shots] == [3, 3, 3, 3]  # what was asked for is kept


def test_a_chain_is_made_from_no_more_partial_cuts_than_there_are(write_storyboard):
    # Two takes of a: beam 3 holds only two partial cuts when b is made.
    p = plan(write_storyboard, board(24, """
  - {id: a, prompt: street, duration: 2}
  - {id: b, prompt: face, duration: 2, continuity: chain}
""", extra="scoring: {beam: 3}"), gpu=WAN_LIKE)
    assert [p.takes[s.segments[0].key] for s in p.shots] == [2, 4]


def test_match_conditions_on_nothing_and_is_ordered_after_the_shot_it_matches(write_storyboard):
    shots = """
  - {id: a, prompt: street, duration: 2}
  - {id: b, prompt: face, duration: 12, continuity: match}
  - {id: c, prompt: end, duration: 2, continuity: bridge}
  - {id: d, title: End, duration: 2}
"""
    p = plan(write_storyboard, board(24, shots))
    a, b, c, d = p.shots
    assert b.continuity == "match" and b.depends_on == ()  # made as early as a cut
    first, *rest = b.segments
    assert first.matches == "a" and not first.chained and first.condition == 0
    assert rest and all(s.chained and s.matches is None for s in rest)  # later segments chain within
    assert p.order.index("a") < p.order.index("b")
    # matching decides no pixels: the takes are the ones a cut would make
    cut = plan(write_storyboard, board(24, shots.replace("continuity: match", "continuity: cut")))
    assert [s.hash for s in cut.shots[1].segments] == [s.hash for s in b.segments]
    assert (c.continuity, c.segments[-1].bridge_to, c.segments[0].matches) == ("bridge", "d", None)


def test_units_judge_a_match_against_the_take_before(write_storyboard):
    from stitchcraft.select import build_units

    p = plan(write_storyboard, board(24, """
  - {id: a, prompt: street, duration: 12}
  - {id: b, source: clip.mp4, duration: 2, continuity: match}
  - {id: c, prompt: face, duration: 2, continuity: chain}
""", extra="engines: {footage: {}}"), gpu=LTX_LIKE)
    units = build_units(p)
    keys = [u.segment.key for u in units]
    b, c = units[keys.index("b#0")], units[keys.index("c#0")]
    last_of_a = keys.index(f"a#{len(p.shot('a').segments) - 1}")
    assert (b.match, b.condition, b.bridge, b.chain_root) == (last_of_a, None, None, None)
    assert b.joined == last_of_a and keys.index("b#0") > last_of_a
    assert (c.condition, c.match, c.chain_root) == (keys.index("b#0"), None, keys.index("b#0"))
