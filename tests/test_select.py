"""Beam search: width 1 is greedy, wider beams escape greedy traps, equal brute force."""

import itertools
import random

from stitchcraft.select import Partial, beam_search, brute_force


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
