"""`stitch render` through the diffusion engines, on tiny random-weight pipelines saved
with save_pretrained and loaded back through from_pretrained, on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from lavfi import make_image
from test_render import stitch

from stitchcraft.media import probe
from stitchcraft.store import TakeStore

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def tiny_engines(tmp_path_factory):
    from tiny_pipelines import tiny_engine_settings

    return tiny_engine_settings(tmp_path_factory.mktemp("tiny-models"))


def storyboard(engines) -> dict:
    return {
        "version": 1,
        "title": "Tiny diffusion",
        "output": {"fps": 8, "size": "64x64", "path": "out/gen.mp4", "preset": "ultrafast"},
        "defaults": {"engine": "ltx-video", "candidates": 2, "seed": 11,
                     "transition": {"type": "dissolve", "duration": 0.25}},
        "audio": {"take_audio": False},
        "engines": engines,
        "scoring": {"beam": 2},
        "shots": [
            {"id": "street", "prompt": "a neon street in the rain", "duration": 1},
            {"id": "courier", "prompt": "a courier's face", "duration": 1, "continuity": "chain"},
            {"id": "alley", "prompt": "an alley", "engine": "wan", "duration": 1, "continuity": "chain"},
            {"id": "long", "prompt": "a long walk", "engine": "wan", "duration": 11, "continuity": "chain",
             "candidates": 1, "transition": {"type": "cut"}},
            {"id": "morph", "prompt": "it turns into a still", "engine": "wan", "duration": 1,
             "continuity": "bridge", "candidates": 1},
            {"id": "still", "image": "still.png", "engine": "svd", "duration": 1},
            {"id": "cog", "prompt": "a city at dawn", "engine": "cogvideox", "duration": 1},
            {"id": "cogchain", "prompt": "the sun rises", "engine": "cogvideox", "duration": 1,
             "continuity": "chain"},
        ],
    }


def test_multi_shot_render_with_chains_bridges_and_splits(tmp_path, tiny_engines):
    make_image(tmp_path / "still.png", size="96x96", source="mandelbrot")
    board = tmp_path / "gen.yaml"
    board.write_text(yaml.safe_dump(storyboard(tiny_engines), sort_keys=False))
    plan = json.loads(stitch("plan", str(board), "--json", cwd=tmp_path).stdout)
    long_shot = next(s for s in plan["shots"] if s["id"] == "long")
    assert len(long_shot["segments"]) == 2  # 88 frames > Wan's 81 per call
    assert all((s["generate"] - 1) % 4 == 0 and s["generate"] <= 81 for s in long_shot["segments"])

    first = json.loads(stitch("render", str(board), "--json", "--cache", "cache-a", cwd=tmp_path).stdout)
    [output] = first["outputs"]
    info = probe(output["path"], count_frames=True)
    assert info.frames == plan["total_frames"] == output["frames"]
    assert (info.width, info.height) == (64, 64)

    manifest = json.loads((tmp_path / "out" / "gen.manifest.json").read_text())
    shots = manifest["shots"]
    for shot_id in ("street", "courier", "alley", "still", "cog", "cogchain"):
        candidates = shots[shot_id]["segments"][0]["candidates"]
        assert len(candidates) == 2, shot_id
        assert {c["seed"] for c in candidates} and all(c["engine"] == shots[shot_id]["engine"] for c in candidates)
    assert len(shots["long"]["segments"]) == 2
    # every chosen take has exactly the planned frames
    for shot in plan["shots"]:
        take = shots[shot["id"]]["take"]
        assert probe(take, count_frames=True).frames == shot["frames"], shot["id"]

    # The same storyboard with the same seeds regenerates identical takes from scratch.
    second = json.loads(stitch("render", str(board), "--json", "--cache", "cache-b", cwd=tmp_path).stdout)
    assert second["takes_reused"] == 0
    again = json.loads((tmp_path / "out" / "gen.manifest.json").read_text())["shots"]
    for shot_id, shot in shots.items():
        assert again[shot_id]["chosen"] == shot["chosen"], shot_id
        for seg_a, seg_b in zip(shot["segments"], again[shot_id]["segments"], strict=True):
            for cand_a, cand_b in zip(seg_a["candidates"], seg_b["candidates"], strict=True):
                # (through the store: a chained candidate is a grade of the take as made)
                tail_a = TakeStore(tmp_path / "cache-a").get(cand_a["id"]).tail()
                tail_b = TakeStore(tmp_path / "cache-b").get(cand_b["id"]).tail()
                assert np.array_equal(tail_a, tail_b), shot_id


def test_engines_explain_why_gpu_engines_cannot_run(tmp_path):
    rows = json.loads(stitch("engines", "--json", cwd=tmp_path,
                             env={"STITCHCRAFT_ALLOW_CPU": ""}).stdout)
    reasons = {r["name"]: r["reason"] for r in rows if not r["available"]}
    assert set(reasons) >= {"ltx-video", "wan", "svd", "cogvideox"}
    for name in ("ltx-video", "wan", "svd", "cogvideox"):
        reason = reasons[name]
        assert "CUDA" in reason or "not found" in reason or "install" in reason


def small_board(tmp_path: Path, engines, **scoring) -> Path:
    board = tmp_path / "small.yaml"
    data = {
        "version": 1,
        "output": {"fps": 8, "size": "64x64", "path": "out/small.mp4", "preset": "ultrafast"},
        "defaults": {"engine": "ltx-video", "candidates": 2, "seed": 5,
                     "transition": {"type": "cut"}},
        "engines": {**engines, "draft": {"engine": "cogvideox", "steps": 1}},
        "scoring": scoring,
        "shots": [
            {"id": "a", "prompt": "a red door", "duration": 1},
            {"id": "b", "prompt": "the door opens", "duration": 1, "continuity": "chain"},
            {"id": "c", "prompt": "a garden", "duration": 1},
        ],
    }
    board.write_text(yaml.safe_dump(data, sort_keys=False))
    return board


def test_editing_a_shot_regenerates_it_and_the_shots_chained_after(tmp_path, tiny_engines):
    board = small_board(tmp_path, tiny_engines)
    first = json.loads(stitch("render", str(board), "--json", cwd=tmp_path).stdout)
    assert first["takes_generated"] == 6
    board.write_text(board.read_text().replace("a red door", "a blue door"))
    edited = json.loads(stitch("render", str(board), "--json", cwd=tmp_path).stdout)
    # a's two candidates, and b's two made from the newly chosen a; c is reused
    assert edited["takes_generated"] == 4 and edited["takes_reused"] == 2


def test_reroll_makes_new_candidates_only_for_weak_seams(tmp_path, tiny_engines):
    board = small_board(tmp_path, tiny_engines, seam_threshold=1.0)
    result = json.loads(stitch("render", str(board), "--json", "--reroll", "1", cwd=tmp_path).stdout)
    manifest = json.loads((tmp_path / "out" / "small.manifest.json").read_text())
    counts = {shot: len(entry["segments"][0]["candidates"]) for shot, entry in manifest["shots"].items()}
    assert counts == {"a": 2, "b": 4, "c": 2}  # only the chained seam a -> b was rerolled
    assert result["takes_generated"] == 8
    seeds = [c["seed"] for c in manifest["shots"]["b"]["segments"][0]["candidates"]]
    assert len(set(seeds)) == 4


def test_draft_quality_routes_generated_shots_to_the_draft_engine(tmp_path, tiny_engines):
    board = small_board(tmp_path, tiny_engines)
    plan = json.loads(stitch("plan", str(board), "--json", "--quality", "draft", cwd=tmp_path).stdout)
    assert {s["engine"] for s in plan["shots"]} == {"cogvideox"}
    final = json.loads(stitch("plan", str(board), "--json", cwd=tmp_path).stdout)
    assert [s["seed"] for s in plan["shots"]] == [s["seed"] for s in final["shots"]]
    result = json.loads(stitch("render", str(board), "--json", "--quality", "draft", cwd=tmp_path).stdout)
    assert result["outputs"][0]["path"].endswith("small.draft.mp4")
