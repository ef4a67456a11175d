"""The generate stage's scheduler: work in flight at once, the same cut whatever the
completion order, takes scored from memory. A test engine stands in for a model: it
sleeps a random time per take and returns frames continuing its conditioning."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from ray_engines import continuing_frames

from stitchcraft.engines import register_engine
from stitchcraft.engines.base import Capabilities, Engine, SegmentRequest, Take
from stitchcraft.errors import EngineError
from stitchcraft.render import RenderOptions, render
from stitchcraft.storyboard.load import load_storyboard


class Sleepy(Engine):
    """Takes after a random pause (its `order` seed decides the pauses); records how many
    calls were in flight at once and the order requests arrived in."""

    NAME = "sleepy"
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True, image_to_video=True,
                                condition_frames=1)
    # Room for every independent call at once: then they all start before any chained
    # one (a chained call, on the critical path, would otherwise jump the queue).
    CONCURRENCY = 12
    order = 0
    in_flight = 0
    most = 0
    arrivals: list[str] = []
    lock = threading.Lock()

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
            cls.arrivals.append(request.shot_id)
        try:
            for seed in request.seeds:
                pause = random.Random(f"{cls.order}:{request.shot_id}:{seed}").uniform(0, 0.15)
                time.sleep(pause)
                yield Take(frames=continuing_frames(request, seed), seed=seed, label=f"sleepy {seed}")
        finally:
            with cls.lock:
                cls.in_flight -= 1


BOARD = """
version: 1
output: {fps: 12, size: 64x36, path: out/cut.mp4, preset: ultrafast}
defaults: {engine: sleepy, candidates: 3, seed: 4, transition: {type: cut}}
scoring: {beam: 2}
shots:
  - {id: a, prompt: one, duration: 1}
  - {id: b, prompt: two, duration: 1, continuity: chain}
  - {id: c, prompt: three, duration: 1}
  - {id: d, prompt: four, duration: 1, continuity: chain}
  - {id: e, prompt: five, duration: 1}
  - {id: f, prompt: six, duration: 1}
"""


@pytest.fixture
def board(tmp_path: Path) -> Path:
    register_engine(Sleepy)
    path = tmp_path / "board.yaml"
    path.write_text(BOARD)
    return path


def run(board: Path, cache: str, order: int, beam: int = 2) -> dict:
    Sleepy.order, Sleepy.most, Sleepy.arrivals = order, 0, []
    result = render(load_storyboard(board), RenderOptions(cache=board.parent / cache, variants=[], beam=beam))
    if beam == 1:  # chains walked ahead ask for exactly what the search then uses
        assert result.generated == 6 * 3
    else:  # a chained shot is made from each distinct take the partial cuts end on
        assert 6 * 3 < result.generated <= 6 * 3 + 2 * 3
    return json.loads(result.manifest.read_text())


@pytest.mark.parametrize("beam", [1, 2])
def test_same_cut_whatever_the_completion_order(board, beam):
    first = run(board, "cache-1", order=1, beam=beam)
    first_arrivals = list(Sleepy.arrivals)
    assert Sleepy.most >= 3  # independent shots really were in flight together
    # the independent shots were all asked for before any chained one
    assert sorted(first_arrivals[:12]) == sorted(["a", "c", "e", "f"] * 3)  # one call per take
    second = run(board, "cache-2", order=2, beam=beam)
    chosen = {shot: entry["chosen"] for shot, entry in first["shots"].items()}
    assert chosen == {shot: entry["chosen"] for shot, entry in second["shots"].items()}
    for shot in first["shots"]:
        scores = [c["score"] for c in first["shots"][shot]["segments"][0]["candidates"]]
        assert scores == [c["score"] for c in second["shots"][shot]["segments"][0]["candidates"]]


def test_generated_takes_are_scored_without_decoding(board):
    manifest = run(board, "cache", order=3)
    assert manifest["scoring"]["frames_decoded"] == 0
    stability = [c["components"].get("stability") for e in manifest["shots"].values()
                 for c in e["segments"][0]["candidates"]]
    assert all(value is not None for value in stability)


def test_engine_failure_is_reported_and_nothing_hangs(board, tmp_path):
    class Broken(Sleepy):
        NAME = "broken"

        def generate(self, request: SegmentRequest) -> Iterator[Take]:
            if request.shot_id == "c":
                raise RuntimeError("the model fell over")
            yield from super().generate(request)

    register_engine(Broken)
    board.write_text(BOARD.replace("engine: sleepy", "engine: broken"))
    began = time.monotonic()
    with pytest.raises(EngineError, match="engine 'broken' failed on shot 'c': RuntimeError: the model fell over"):
        render(load_storyboard(board), RenderOptions(cache=tmp_path / "c", variants=[]))
    assert time.monotonic() - began < 60


def test_beam_generate_makes_exactly_the_takes_the_plan_counts(board, tmp_path):
    from typer.testing import CliRunner

    from stitchcraft.cli import app

    board.write_text(BOARD.replace("scoring: {beam: 2}", "scoring: {beam: 3, beam_generate: 1}"))
    planned = CliRunner().invoke(app, ["plan", str(board), "--json"])
    assert planned.exit_code == 0, planned.output
    counted = json.loads(planned.output)
    # b and d (chained) are made from the best partial cut only: their candidates once
    assert counted["beam"] == 3 and sum(counted["takes"].values()) == 6 * 3
    table = CliRunner().invoke(app, ["plan", str(board)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "at most 1" in table.output
    Sleepy.order = 5
    result = render(load_storyboard(board), RenderOptions(cache=tmp_path / "one", variants=[]))
    assert result.generated == 6 * 3
    # from every partial cut instead, the plan counts the most the render can make
    board.write_text(BOARD.replace("scoring: {beam: 2}", "scoring: {beam: 3}"))
    wide = json.loads(CliRunner().invoke(app, ["plan", str(board), "--json"]).output)
    assert wide["takes"] == {**counted["takes"], "b#0": 9, "d#0": 9}
    made = render(load_storyboard(board), RenderOptions(cache=tmp_path / "all", variants=[])).generated
    assert 6 * 3 < made <= sum(wide["takes"].values())


def test_pieces_are_assembled_ahead_and_the_cut_uses_them(board, tmp_path, monkeypatch):
    # With beam 1 each chain's pieces are rendered while the rest is chosen, on the
    # low-priority thread; the assembly then finds them in its cache (same keys) and
    # encodes only the others.
    from stitchcraft import assemble

    encoded: list[tuple[str, str]] = []
    original = assemble.encode_graph

    def recording(inputs, graph, output, **kwargs):
        found = re.search(r"seg-[0-9a-f]+", Path(output).name)  # written under a temporary name
        encoded.append((threading.current_thread().name, found.group(0) if found else Path(output).name))
        return original(inputs, graph, output, **kwargs)

    monkeypatch.setattr(assemble, "encode_graph", recording)
    result = render(load_storyboard(board), RenderOptions(cache=tmp_path / "c", variants=[], beam=1))
    ahead = {piece for thread, piece in encoded if thread.startswith("assemble-ahead")}
    later = [piece for thread, piece in encoded if not thread.startswith("assemble-ahead")]
    assert ahead, encoded
    assert not ahead & set(later)  # nothing made ahead was encoded again
    assert result.outputs[0].frames == 6 * 12


def test_a_failure_while_assembling_ahead_never_stops_the_render(board, tmp_path, monkeypatch):
    # Working ahead is an optimisation: if it fails, the chains are still walked and the
    # assembly makes the cut (or reports the problem itself).
    from stitchcraft import assemble
    from stitchcraft.errors import MediaError

    def broken(*args, **kwargs):
        raise MediaError(tmp_path / "font.ttf", "font file not found")

    monkeypatch.setattr(assemble, "prerender", broken)
    result = render(load_storyboard(board), RenderOptions(cache=tmp_path / "c", variants=[], beam=1))
    assert result.outputs[0].frames == 6 * 12
    assert result.generated == 6 * 3  # the chains were walked ahead all the same


def test_work_that_can_wait_waits_until_the_cpu_workers_idle():
    # `quiet` is how rendering ahead yields to the takes being stored and scored.
    from stitchcraft.generate.executor import LocalExecutor

    executor = LocalExecutor(cpu_workers=1)
    release = threading.Event()
    try:
        running = executor.cpu(release.wait, 10)
        queued = executor.cpu(lambda: 7)
        assert not executor.quiet(0.05)  # one running, one queued
        release.set()
        assert executor.quiet(5)
        assert running.result() is True and queued.result() == 7
        release.clear()
        executor.cpu(release.wait, 10)
        dropped = executor.cpu(lambda: 8)
        assert not executor.quiet(0.05)
    finally:
        release.set()
        executor.close()
    assert dropped.cancelled() and executor.quiet(0)  # queued work dropped on close counts as done


class Burst(Engine):
    """Makes its take at once, many calls in flight; counts the takes it hands over."""

    NAME = "burst"
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True)
    CONCURRENCY = 8
    made = threading.Semaphore(0)

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        for seed in request.seeds:
            type(self).made.release()
            yield Take(frames=np.zeros((1, 4, 4, 3), np.uint8), seed=seed, label=request.shot_id)


def test_takes_landing_together_are_stored_by_priority_not_by_arrival():
    # A level of chains in flight lands at once; the backlog of takes in memory is full
    # at once, and the takes waiting for room get it critical path first, so each
    # chain's takes are stored (and its choice made) in turn.
    from stitchcraft.generate.executor import LocalExecutor

    executor = LocalExecutor(cpu_workers=1, backlog=1)
    gate, stored = threading.Event(), []

    def on_take(take: Take):
        return executor.cpu(lambda: (gate.wait(10), stored.append(take.label)))

    priorities = [(1, 7), (1, 3), (1, 9), (0, 5), (1, 1)]
    try:
        for priority in priorities:
            executor.generate(Burst(None), SegmentRequest(shot_id=str(priority), segment=0, kind="prompt",
                                                          frames=1, width=4, height=4, fps=Fraction(12),
                                                          seeds=[0]), priority, on_take)
        # The first to land takes the room; the rest wait for it, in whatever order
        # they landed.
        assert all(Burst.made.acquire(timeout=5) for _ in priorities)
        time.sleep(0.2)
        gate.set()
        deadline = time.monotonic() + 10
        while len(stored) < len(priorities) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        gate.set()
        executor.close()
    first, *rest = stored
    assert rest == [str(p) for p in sorted(priorities) if str(p) != first]


def test_work_ahead_of_a_failed_render_is_dropped_not_waited_for(board, tmp_path):
    # Work ahead waits for the CPU workers to idle; a render that failed (or was
    # stopped) while they were busy neither starts it nor waits out the 20 s.
    from stitchcraft.render import _EarlyAssembly, _plan

    loaded = load_storyboard(board)
    ahead = _EarlyAssembly(loaded, _plan(loaded, "final"), tmp_path, "final",
                           quiet=lambda timeout: time.sleep(timeout) or False)  # never idle
    ran: list[int] = []
    waiting = ahead.encoder.submit(ahead._when_quiet, ran.append, 1)
    time.sleep(0.3)
    started = time.monotonic()
    ahead.close(failed=True)
    assert time.monotonic() - started < 5
    assert not ran and isinstance(waiting.exception(), CancelledError)
