"""The Ray executor: the same cut as the local executor, takes asked for by content hash
and made once, a worker that dies mid-take replaced without losing or remaking a take.

One local Ray instance (CPU only, two GPUs declared so that the GPU engine gets two
actors) is started for the module; its workers import the test engine from
tests/ray_engines.py, which is on their PYTHONPATH. Deselect with ``-m "not ray"``.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from concurrent.futures import Future
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from ray_engines import CALLS_ENV, CRASH_ENV, Counting

from stitchcraft import engines
from stitchcraft.engines import engine_class, register_engine
from stitchcraft.engines.base import SegmentRequest
from stitchcraft.errors import EngineError
from stitchcraft.generate.jobs import JobBook, JobJournal
from stitchcraft.media import read_frames
from stitchcraft.render import RenderOptions, render
from stitchcraft.storyboard.load import load_storyboard

TESTS = Path(__file__).parent

BOARD = """
version: 1
output: {fps: 12, size: 64x36, path: out/cut.mp4, preset: ultrafast}
defaults: {engine: ray-counting, candidates: 2, seed: 5, transition: {type: cut}}
shots:
  - {id: a, prompt: one, duration: 1}
  - {id: b, prompt: two, duration: 1, continuity: chain}
  - {id: card, title: {text: Middle}, duration: 1}
  - {id: c, prompt: three, duration: 1, transition: {type: dissolve, duration: 0.25}}
"""

TITLE_BOARD = """
version: 1
output: {fps: 12, size: 64x36, path: out/cut.mp4, preset: ultrafast}
shots:
  - {id: t, title: {text: Hi}, duration: 1}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray instance for the module: 2 CPUs, and 2 GPUs declared (there are none:
    Ray only counts them), its workers seeing tests/ and the test engine's files."""
    ray = pytest.importorskip("ray")
    folder = tmp_path_factory.mktemp("ray")
    calls, crash = folder / "calls.log", folder / "crash"
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="warning",
             log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(TESTS), CALLS_ENV: str(calls),
                                       CRASH_ENV: str(crash)}})
    os.environ[CALLS_ENV] = str(calls)  # the local executor's renders count their calls too
    yield ray, calls, crash
    os.environ.pop(CALLS_ENV, None)
    ray.shutdown()


@pytest.fixture
def counting(monkeypatch):
    monkeypatch.setattr(engines, "_REGISTERED", dict(engines._REGISTERED))
    register_engine(Counting)
    yield
    engine_class.cache_clear()


def project(root: Path, name: str, board: str = BOARD) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "board.yaml").write_text(board)
    return folder / "board.yaml"


def calls(log: Path) -> tuple[collections.Counter, collections.Counter]:
    """Takes started and finished, by key, since the log was last cleared."""
    lines = [line.split(" ", 1) for line in log.read_text().splitlines()] if log.exists() else []
    return (collections.Counter(k for what, k in lines if what == "start"),
            collections.Counter(k for what, k in lines if what == "done"))


def comparable(manifest: Path) -> dict:
    """A manifest without what may differ between runs: times, paths, and the scorers'
    work counters (which seams were scored twice depends on the order takes came in);
    every take's scores, the choices and the cut stay."""
    text = manifest.read_text().replace(str(manifest.parent.parent), "<project>")

    def timeless(value):
        if isinstance(value, dict):
            return {k: timeless(v) for k, v in value.items() if k not in ("timings", "seconds")}
        return [timeless(v) for v in value] if isinstance(value, list) else value

    facts = timeless(json.loads(text))
    facts.pop("scoring")
    return facts


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


@pytest.mark.ray
def test_same_cut_as_the_local_executor_each_take_made_once(cluster, counting, tmp_path):
    ray, log, _ = cluster
    log.write_text("")
    local = render(load_storyboard(project(tmp_path, "local")), RenderOptions(variants=[]))
    local_started, _ = calls(log)
    log.write_text("")
    board = project(tmp_path, "ray")
    result = render(load_storyboard(board), RenderOptions(variants=[], executor="ray"))
    started, done = calls(log)
    assert started == local_started and set(done.values()) == {1}  # each take made once
    assert result.generated == local.generated == sum(done.values()) + 1  # and the title card
    assert comparable(result.manifest) == comparable(local.manifest)
    assert video_packets(result.outputs[0].path) == video_packets(local.outputs[0].path)
    assert np.array_equal(read_frames(result.outputs[0].path), read_frames(local.outputs[0].path))
    assert not ray.util.list_named_actors()  # the render's workers are gone with it

    log.write_text("")  # again: every take is found in the store, none asked of the cluster
    again = render(load_storyboard(board), RenderOptions(variants=[], executor="ray"))
    assert again.generated == 0 and again.reused == result.generated
    assert calls(log) == (collections.Counter(), collections.Counter())


@pytest.mark.ray
def test_a_worker_dying_mid_take_loses_and_remakes_nothing(cluster, counting, tmp_path):
    _, log, crash = cluster
    local = render(load_storyboard(project(tmp_path, "local")), RenderOptions(variants=[]))
    log.write_text("")
    crash.write_text("")  # the first worker to start a take dies in it
    result = render(load_storyboard(project(tmp_path, "ray")), RenderOptions(variants=[], executor="ray"))
    started, done = calls(log)
    assert not crash.exists()  # a worker did die
    assert [k for k, n in started.items() if n == 2] == [k for k, n in started.items() if n > 1]
    assert sum(started.values()) == sum(done.values()) + 1  # one take started again, once
    assert set(done.values()) == {1} and result.generated == sum(done.values()) + 1
    assert comparable(result.manifest) == comparable(local.manifest)
    assert video_packets(result.outputs[0].path) == video_packets(local.outputs[0].path)


@pytest.mark.ray
def test_two_requests_for_one_take_make_it_once(cluster, counting, tmp_path):
    """The executor's own dedup: the same take ids asked twice while in flight."""
    from stitchcraft.generate.ray_executor import RayExecutor

    _, log, _ = cluster
    log.write_text("")
    executor = RayExecutor()
    engine = Counting()
    got: list[tuple[str, int]] = []

    def on_take(who: str):
        def take(made) -> Future:
            got.append((who, made.seed))
            done: Future = Future()
            done.set_result(None)
            return done
        return take

    journal = JobJournal(tmp_path / "jobs")
    futures = []
    for who in ("first", "second"):
        request = SegmentRequest(shot_id="s", segment=0, kind="prompt", frames=4, width=8, height=8,
                                 fps=Fraction(12), seeds=[1, 2], prompt="p",
                                 jobs=JobBook(journal, {1: "take-one", 2: "take-two"}, "ray-counting"))
        futures.append(executor.generate(engine, request, (0,), on_take(who)))
    try:
        assert [f.result(timeout=60) for f in futures] == [2, 2]
    finally:
        executor.close()
    assert sorted(got) == [("first", 1), ("first", 2), ("second", 1), ("second", 2)]
    assert sum(calls(log)[1].values()) == 2


@pytest.mark.ray
def test_an_engine_error_on_a_worker_fails_the_render_with_its_message(cluster, counting, tmp_path):
    board = project(tmp_path, "ray", BOARD.replace("prompt: three", "prompt: fall over"))
    with pytest.raises(EngineError, match="the model fell over"):
        render(load_storyboard(board), RenderOptions(variants=[], executor="ray"))


@pytest.mark.ray
def test_cli_renders_on_a_cluster_at_an_address(cluster, tmp_path):
    ray, _, _ = cluster
    board = project(tmp_path, "cli", TITLE_BOARD)
    done = subprocess.run([sys.executable, "-m", "stitchcraft", "render", str(board), "--json",
                           "--executor", "ray", "--address", ray.get_runtime_context().gcs_address],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["takes_generated"] == 1 and result["outputs"][0]["frames"] == 12


def test_without_ray_the_cli_says_how_to_install_it(tmp_path):
    """Not marked `ray`: runs where Ray is missing too (a stand-in package hides it)."""
    hidden = tmp_path / "hide"
    (hidden / "ray").mkdir(parents=True)
    (hidden / "ray" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\")\n")
    board = project(tmp_path, "cli", TITLE_BOARD)
    done = subprocess.run([sys.executable, "-m", "stitchcraft", "render", str(board), "--executor", "ray"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(hidden)})
    assert done.returncode == 2
    assert "pip install 'stitchcraft[ray]'" in done.stderr
    assert not (board.parent / "out" / "cut.mp4").exists()



@pytest.mark.ray
def test_a_batch_sharing_shots_makes_each_shared_take_once(cluster, counting, tmp_path):
    from stitchcraft.batch import render_batch

    _, log, _ = cluster
    log.write_text("")
    shots = {"a": "  - {id: a, prompt: one, duration: 1}\n",
             "b": "  - {id: b, prompt: two, duration: 1, continuity: chain}\n",
             "c": "  - {id: c, prompt: three, duration: 1, seed: 40}\n"}
    head = BOARD.split("shots:")[0] + "shots:\n"
    boards = [project(tmp_path, name, head + "".join(shots[s] for s in chosen))
              for name, chosen in (("first", "ab"), ("second", "abc"), ("third", "ac"))]
    result = render_batch(boards, RenderOptions(variants=[], executor="ray", cache=tmp_path / "cache"))
    assert [e.status for e in result.entries] == ["ok"] * 3
    started, done = calls(log)
    # a (2 takes), b (2, chained from a's chosen take) and c (2): each made once for all three
    assert sum(started.values()) == 6 and set(started.values()) == {1} and set(done.values()) == {1}


@pytest.mark.ray
@pytest.mark.models
def test_tiny_diffusion_pipelines_on_ray_make_the_local_cut(cluster, tmp_path, tmp_path_factory):
    """LTX-Video and Wan as tiny random-weight pipelines (saved with save_pretrained,
    loaded by the workers through from_pretrained), a chain across them: the same
    manifest and video stream as the local executor."""
    import yaml
    from tiny_pipelines import tiny_engine_settings

    # one take a call on both executors: batched CPU kernels add in another order
    engines_ = tiny_engine_settings(tmp_path_factory.getbasetemp() / "tiny-models", batch=1)
    board = {
        "version": 1,
        "output": {"fps": 8, "size": "64x64", "path": "out/cut.mp4", "preset": "ultrafast"},
        "defaults": {"engine": "ltx-video", "candidates": 2, "seed": 11, "transition": {"type": "cut"}},
        "audio": {"take_audio": False},
        "engines": {k: v for k, v in engines_.items() if k in ("ltx-video", "wan")},
        "shots": [{"id": "street", "prompt": "a neon street in the rain", "duration": 1},
                  {"id": "alley", "prompt": "an alley", "engine": "wan", "duration": 1,
                   "continuity": "chain"}],
    }
    text = yaml.safe_dump(board, sort_keys=False)
    local = render(load_storyboard(project(tmp_path, "local", text)), RenderOptions(variants=[]))
    result = render(load_storyboard(project(tmp_path, "ray", text)), RenderOptions(variants=[], executor="ray"))
    assert result.generated == local.generated == 4
    assert comparable(result.manifest) == comparable(local.manifest)
    assert video_packets(result.outputs[0].path) == video_packets(local.outputs[0].path)
