"""Beam search: width 1 is greedy, wider beams escape greedy traps, equal brute force;
and the select stage's `continuity: match`, through a render with a test engine."""

import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stitchcraft.engines import register_engine
from stitchcraft.engines.base import Capabilities, Engine, SegmentRequest, Take
from stitchcraft.render import RenderOptions, _EarlyAssembly, render
from stitchcraft.select import Partial, beam_search, brute_force
from stitchcraft.storyboard.load import load_storyboard


def table_options(take_scores, seam_scores):
    """Candidates per unit with a score plus a seam bonus depending on the previous pick."""

    def options(partial: Partial, unit: int):
        out = []
        for take, score in take_scores[unit].items():
            seam = seam_scores.get((partial.last, take), 0.0) if partial.last else 0.0
            out.append((take, score + seam))
        return out

    return options


def test_greedy_is_trapped_and_beam_escapes():
    # a1 looks best alone, but only b2 continues well, from a2.
    takes = [{"a1": 0.9, "a2": 0.8}, {"b1": 0.1, "b2": 0.1}]
    seams = {("a1", "b1"): 0.0, ("a1", "b2"): 0.0, ("a2", "b1"): 0.0, ("a2", "b2"): 0.9}
    options = table_options(takes, seams)
    greedy = beam_search(2, options, width=1)
    beam = beam_search(2, options, width=3)
    assert greedy.takes == ("a1", "b1")
    assert beam.takes == ("a2", "b2")
    assert beam.score > greedy.score
    assert beam == brute_force(2, options)


def test_beam_equals_brute_force_on_small_random_cases():
    rng = random.Random(4)
    for _ in range(40):
        units = rng.randint(1, 4)
        takes = [{f"u{u}t{i}": rng.random() for i in range(rng.randint(1, 3))} for u in range(units)]
        seams = {(a, b): rng.random() for u in range(units - 1)
                 for a, b in itertools.product(takes[u], takes[u + 1])}
        options = table_options(takes, seams)
        best = brute_force(units, options)
        wide = beam_search(units, options, width=27)
        assert abs(wide.score - best.score) < 1e-12
        narrow = beam_search(units, options, width=1)
        assert narrow.score <= best.score + 1e-12


def test_ties_are_deterministic():
    options = table_options([{"x": 0.5, "y": 0.5}], {})
    assert beam_search(1, options, width=1).takes == ("x",)


def test_a_gain_lost_in_the_sums_rounding_still_wins():
    # After a 3.0, gains 0.1 and 0.1 + 2e-16 sum to the same float; the greedy search
    # must still take the larger gain, as a chain's walk ahead (which sees gains only) does.
    larger = 0.1 + 2e-16
    assert 3.0 + 0.1 == 3.0 + larger and larger > 0.1
    options = table_options([{"a": 3.0}, {"b1": 0.1, "b2": larger}], {})
    assert beam_search(2, options, width=1).takes == ("a", "b2")
    assert beam_search(2, options, width=2).takes == ("a", "b2")


def test_a_unit_extends_only_the_best_partial_cuts_it_is_allowed():
    # Three takes of a; b (chained) may only be made from the best two partial cuts.
    takes = [{"a1": 0.9, "a2": 0.8, "a3": 0.7}, {"b1": 0.1, "b2": 0.1}]
    seams = {("a3", "b2"): 0.9, ("a2", "b1"): 0.3}
    inner = table_options(takes, seams)
    asked: list[tuple[str | None, int]] = []
    prepared: list[list[str | None]] = []

    def options(partial, unit):
        asked.append((partial.last, unit))
        return inner(partial, unit)

    def prepare(beams, unit):
        prepared.append([b.last for b in beams])

    # all three partial cuts extended: a3 -> b2 wins (the trap a plain beam escapes)
    assert beam_search(2, inner, width=3).takes == ("a3", "b2")
    best = beam_search(2, options, width=3, prepare=prepare, extended=[None, 2])
    assert best.takes == ("a2", "b1")        # a3 was never extended by b
    assert [last for last, unit in asked if unit == 1] == ["a1", "a2"]
    assert prepared == [[None], ["a1", "a2"]]   # only those are asked for
    # the same answer every time, and a valid cut of every unit
    assert all(beam_search(2, inner, width=3, extended=[None, 2]) == best for _ in range(3))
    greedy_like = beam_search(2, inner, width=3, extended=[None, 1])
    assert greedy_like.takes == ("a1", "b1") and len(greedy_like.takes) == 2


def test_conditionings_count_partial_cuts_per_chained_unit():
    from types import SimpleNamespace

    from stitchcraft.select.beam import conditionings

    def unit(candidates, condition=None, bridge=None):
        return SimpleNamespace(shot=SimpleNamespace(takes_made=candidates), condition=condition,
                               bridge=bridge, keyframe=None)

    # a (2) -> b chained (3) ; c independent (3) -> d chained (2)
    units = [unit(2), unit(3, condition=0), unit(3), unit(2, condition=2)]
    assert conditionings(units, width=1) == [1, 1, 1, 1]
    assert conditionings(units, width=3) == [1, 2, 1, 3]     # b: only two takes of a exist
    assert conditionings(units, width=3, generate=1) == [1, 1, 1, 1]
    assert conditionings(units, width=8, generate=2) == [1, 2, 1, 2]


# --- continuity: match ------------------------------------------------------------------

STEP = 3  # pixels the camera pans per frame


def texture(width: int, height: int) -> np.ndarray:
    """A soft random landscape: neighbouring crops look alike, distant ones do not."""
    rng = np.random.default_rng(7)
    coarse = rng.integers(0, 256, (height // 6 + 2, width // 6 + 2, 3)).astype(np.float32)
    rows = np.linspace(0, coarse.shape[0] - 1, height)
    cols = np.linspace(0, coarse.shape[1] - 1, width)
    r0, c0 = rows.astype(int).clip(max=coarse.shape[0] - 2), cols.astype(int).clip(max=coarse.shape[1] - 2)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
    bottom = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.uint8)


class Pan(Engine):
    """One long pan across a landscape: the take of seed s shows its frames s*n .. s*n+n-1
    (n frames a take), so the take of seed s+1 continues the take of seed s exactly."""

    NAME = "pan"
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True, image_to_video=True,
                                condition_frames=1)

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        n, width = request.frames, request.width
        land = texture(width + STEP * n * 8, request.height)
        for seed in request.seeds:
            starts = [STEP * ((seed % 7) * n + j) for j in range(n)]
            frames = np.stack([land[:, x:x + width] for x in starts])
            yield Take(frames=frames, seed=seed, label=f"pan {seed}")


MATCH_BOARD = """
version: 1
output: {fps: 12, size: 64x36, path: out/cut.mp4, preset: ultrafast}
defaults: {engine: pan, candidates: 3, seed: 0, transition: {type: cut}, colour_anchor: false}
scoring:
  weights: {prompt: 0, reference: 0, stability: 0, flicker: 0, seam_clip: 0, seam_lpips: 0}
shots:
  - {id: a, prompt: one, duration: 1, candidates: 1}
  - {id: b, prompt: two, duration: 1, seed: 0, continuity: CONTINUITY}
  - {id: c, prompt: three, duration: 1, continuity: chain}
"""


@pytest.fixture
def match_board(tmp_path: Path):
    register_engine(Pan)

    def write(continuity: str = "match", prompt: str = "one") -> Path:
        path = tmp_path / "board.yaml"
        path.write_text(MATCH_BOARD.replace("CONTINUITY", continuity).replace("prompt: one", f"prompt: {prompt}"))
        return path

    return write


def chosen_seed(manifest: dict, shot: str) -> int:
    segment = manifest["shots"][shot]["segments"][0]
    return next(c["seed"] for c in segment["candidates"] if c["id"] == segment["chosen"])


@pytest.mark.parametrize("beam", [1, 2])
def test_match_chooses_the_take_that_continues_the_one_before(match_board, beam, monkeypatch):
    decided: dict[str, str] = {}
    early = _EarlyAssembly.decided

    def spy(self, index, candidate):
        decided[self.units[index].shot.id] = candidate.take.id
        early(self, index, candidate)

    monkeypatch.setattr(_EarlyAssembly, "decided", spy)
    board = match_board()
    result = render(load_storyboard(board), RenderOptions(cache=board.parent / "cache", variants=[], beam=beam))
    manifest = json.loads(result.manifest.read_text())
    # shot a is the pan's seed 0; of b's seeds 0, 1 and 2, seed 1 carries the pan on
    assert chosen_seed(manifest, "b") == 1
    seams = [c["seams"]["previous"] for c in manifest["shots"]["b"]["segments"][0]["candidates"]]
    assert seams[1] == max(seams) and seams[1] > 0.7 and max(seams[0], seams[2]) < 0.5
    assert manifest["shots"]["b"]["continuity"] == "match"
    if beam == 1:
        # the walk ahead decided b only once a was known, and decided what the search chose,
        # so c was asked for from that take alone
        assert decided == {shot: entry["chosen"] for shot, entry in manifest["shots"].items()}
        assert result.generated == 1 + 3 + 3
    # a cut judges no seam: with nothing to tell its takes apart, b is the first one
    cut = match_board("cut")
    result = render(load_storyboard(cut), RenderOptions(cache=cut.parent / "cache", variants=[], beam=beam))
    manifest = json.loads(result.manifest.read_text())
    assert chosen_seed(manifest, "b") == 0
    assert not any(c["seams"] for c in manifest["shots"]["b"]["segments"][0]["candidates"])


def test_the_early_assembly_is_told_every_choice_when_no_walk_told_it(match_board, monkeypatch):
    # A chain's last choice is made by its walk ahead and by the search, from the same
    # scores; when the search gets there first, the early assembly still hears it (and
    # starts that take's encode and pieces) before it closes. Here no walk tells it anything.
    from stitchcraft.select.choose import CutChooser

    told: dict[str, list[str]] = {}
    early = _EarlyAssembly.decided

    def spy(self, index, candidate):
        told.setdefault(self.units[index].shot.id, []).append(candidate.take.id)
        early(self, index, candidate)

    monkeypatch.setattr(_EarlyAssembly, "decided", spy)
    monkeypatch.setattr(CutChooser, "_walk_chain", lambda self, root: None)
    board = match_board()
    result = render(load_storyboard(board), RenderOptions(cache=board.parent / "cache", variants=[]))
    manifest = json.loads(result.manifest.read_text())
    assert told == {shot: [entry["chosen"]] for shot, entry in manifest["shots"].items()}
    assert len(told) == 3


def test_a_matched_shots_takes_do_not_depend_on_the_take_before(match_board):
    board = match_board()
    first = render(load_storyboard(board), RenderOptions(cache=board.parent / "cache", variants=[]))
    ids = [c["id"] for c in json.loads(first.manifest.read_text())["shots"]["b"]["segments"][0]["candidates"]]
    edited = match_board(prompt="uno")  # a new take for a
    again = render(load_storyboard(edited), RenderOptions(cache=edited.parent / "cache", variants=[]))
    manifest = json.loads(again.manifest.read_text())
    candidates = manifest["shots"]["b"]["segments"][0]["candidates"]
    assert [c["id"] for c in candidates] == ids and all(c["cached"] for c in candidates)
