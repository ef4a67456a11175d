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

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
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
    again = json.loads((tmp_path / "out" / "manifest.json").read_text())["shots"]
    for shot_id, shot in shots.items():
        assert again[shot_id]["chosen"] == shot["chosen"], shot_id
        for seg_a, seg_b in zip(shot["segments"], again[shot_id]["segments"], strict=True):
            for cand_a, cand_b in zip(seg_a["candidates"], seg_b["candidates"], strict=True):
                tail_a = np.load(Path(cand_a["path"]).with_name("tail.npy"))
                tail_b = np.load(Path(cand_b["path"]).with_name("tail.npy"))
                assert np.array_equal(tail_a, tail_b), shot_id


def test_engines_explain_why_gpu_engines_cannot_run(tmp_path):
    rows = json.loads(stitch("engines", "--json", cwd=tmp_path,
                             env={"STITCHCRAFT_ALLOW_CPU": ""}).stdout)
    reasons = {r["name"]: r["reason"] for r in rows if not r["available"]}
    assert set(reasons) >= {"ltx-video", "wan", "svd", "cogvideox"}
    for reason in reasons.values():
        assert "CUDA" in reason or "not found" in reason or "install" in reason
