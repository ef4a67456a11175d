"""Keyframes through a render: stills made first by an image engine, scored, chosen, and
animated by the shot's engine; recorded in the manifest and the report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from stitchcraft.engines import register_engine
from stitchcraft.engines.base import Capabilities, Engine, SegmentRequest, Take
from stitchcraft.render import RenderOptions, render
from stitchcraft.storyboard.load import load_storyboard


def rendered(path: Path, **options) -> tuple[dict, object]:
    result = render(load_storyboard(path), RenderOptions(cache=path.parent / "cache", variants=[], **options))
    return json.loads(result.manifest.read_text()), result


class Painter(Engine):
    """Paints one still per seed: a soft gradient whose sharpness grows with the seed
    (so the still scorer has a best one), with the seed's colour in a corner."""

    NAME = "painter"
    CAPABILITIES = Capabilities(kinds=frozenset({"keyframe"}), references=2)
    asked: list[SegmentRequest] = []

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        Painter.asked.append(request)
        assert request.kind == "keyframe" and request.frames == 1
        y, x = np.mgrid[0:request.height, 0:request.width]
        for seed in request.seeds:
            rng = np.random.default_rng(seed)
            detail = (seed % 3) * 30  # texture: seed % 3 == 2 is the sharpest
            still = np.stack([40 + x * 150 // request.width, 60 + y * 120 // request.height,
                              np.full_like(x, 90)], axis=-1) + rng.integers(0, detail + 1, (request.height, request.width, 3))
            still[:8, :8] = (seed * 37) % 256
            yield Take(frames=np.clip(still, 0, 255).astype(np.uint8)[None], seed=seed, label=f"still {seed}")


@pytest.fixture
def painter():
    register_engine(Painter)
    Painter.asked.clear()
    return Painter


def board(tmp_path: Path, **shot) -> Path:
    data = {
        "version": 1,
        "output": {"fps": 8, "size": "64x48", "path": "out/cut.mp4", "preset": "ultrafast"},
        "defaults": {"candidates": 1, "seed": 3, "keyframe_engine": "painter"},
        "cast": {"courier": {"description": "a courier in a yellow raincoat", "images": ["courier.png"]}},
        "audio": {"take_audio": False},
        "shots": [{"id": "poster", "duration": 1, "camera": "static", **shot},
                  {"id": "end", "title": "The end", "duration": 1}],
    }
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(tmp_path / "courier.png")
    return path


def test_a_keyframe_is_made_chosen_and_animated(tmp_path, painter):
    path = board(tmp_path, image={"prompt": "{courier} on a rooftop", "candidates": 3})
    manifest, _ = rendered(path)
    shot = manifest["shots"]["poster"]
    keyframe = shot["keyframe"]
    assert len(keyframe["candidates"]) == 3 and keyframe["chosen"] in [c["id"] for c in keyframe["candidates"]]
    assert all("still" in c["components"] for c in keyframe["candidates"])  # scored as stills
    chosen = next(c for c in keyframe["candidates"] if c["id"] == keyframe["chosen"])
    assert chosen["seed"] % 3 == 2  # the sharpest still
    # the image engine was asked once, for the filled prompt and the cast's image
    [asked] = painter.asked
    assert asked.prompt == "a courier in a yellow raincoat on a rooftop"
    assert [p.name for p in asked.references] == ["courier.png"]
    # the shot was animated from the chosen still: its first frame is the still, pixel for pixel
    still = np.load(Path(chosen["path"]).parent / "head.npy")[0]
    first = np.load(Path(shot["take"]).parent / "head.npy")[0]
    assert still.shape == first.shape and np.array_equal(first, still)
    # the report shows the keyframe as a row of its own
    report = (tmp_path / "out" / "cut.report.html").read_text()
    assert "poster · keyframe" in report
    # a second render makes nothing again
    _, again = rendered(path)
    assert again.generated == 0


def test_a_pinned_keyframe_is_the_one_animated(tmp_path, painter):
    path = board(tmp_path, image={"prompt": "a rooftop", "candidates": 3})
    manifest, _ = rendered(path)
    keyframe = manifest["shots"]["poster"]["keyframe"]
    made = [c["id"] for c in keyframe["candidates"]]
    other = next(i for i, c in enumerate(made) if c != keyframe["chosen"])
    pinned = made[other]
    manifest, _ = rendered(path, picks={"poster#keyframe": other})
    keyframe = manifest["shots"]["poster"]["keyframe"]
    # Every still made is still listed, numbered as before (as a pin counts), and the
    # ones the pin set aside are said so and not scored.
    assert keyframe["chosen"] == pinned and [c["id"] for c in keyframe["candidates"]] == made
    assert keyframe["set_aside"] == [c for c in made if c != pinned]
    assert all(not c["scored"] and not c["components"] for c in keyframe["candidates"] if c["id"] != pinned)
    still = np.load(Path(keyframe["candidates"][other]["path"]).parent / "head.npy")[0]
    first = np.load(Path(manifest["shots"]["poster"]["take"]).parent / "head.npy")[0]
    assert np.array_equal(first, still)


def test_stitch_pick_pins_a_keyframe(tmp_path):
    from test_render import stitch

    path = board(tmp_path, image={"prompt": "a rooftop", "engine": "flux", "candidates": 3})
    done = stitch("pick", str(path), "poster#keyframe", "2", cwd=tmp_path)
    assert "pinned" in done.stdout
    picks = json.loads((tmp_path / ".stitchcraft" / "picks.json").read_text())
    assert picks == {"board.yaml": {"poster#keyframe": 2}}
    wrong = stitch("pick", str(path), "poster#keyframe", "3", cwd=tmp_path, check=False)
    assert wrong.returncode == 2 and "takes 0-2" in wrong.stderr
    none = stitch("pick", str(path), "end#keyframe", "0", cwd=tmp_path, check=False)
    assert none.returncode == 2 and "no keyframe" in none.stderr


@pytest.mark.models
@pytest.mark.parametrize("image_engine", ["flux", "sdxl"])
def test_tiny_pipelines_make_the_keyframe_and_animate_it(tmp_path_factory, tmp_path, monkeypatch, image_engine):
    """A keyframe made by a tiny random-weight text-to-image pipeline (loaded through
    AutoPipelineForText2Image.from_pretrained), chosen, and animated by the tiny LTX-Video
    pipeline: the image LTX-Video is given is the chosen still, pixel for pixel."""
    from tiny_image_pipelines import build_tiny_image_pipelines
    from tiny_pipelines import tiny_engine_settings

    from stitchcraft.engines.diffusion import LTXVideoEngine

    models = tmp_path_factory.getbasetemp() / "tiny-models"
    engines = tiny_engine_settings(models)
    images = build_tiny_image_pipelines(tmp_path_factory.getbasetemp() / "tiny-image-models")
    engines[image_engine] = {"model": str(images[image_engine]), "device": "cpu", "dtype": "fp32", "steps": 2}
    given = []
    plan = LTXVideoEngine.plan

    def spy(self, request):
        call = plan(self, request)
        given.append(np.asarray(call.per_take["image"]))
        return call

    monkeypatch.setattr(LTXVideoEngine, "plan", spy)
    data = {
        "version": 1,
        "output": {"fps": 8, "size": "64x64", "path": "out/cut.mp4", "preset": "ultrafast"},
        "defaults": {"engine": "ltx-video", "candidates": 1, "seed": 5},
        "cast": {"courier": {"description": "a courier in a yellow raincoat"}},
        "audio": {"take_audio": False},
        "engines": engines,
        "shots": [{"id": "ride", "prompt": "{courier} rides through neon rain", "duration": 1,
                   "keyframe": {"engine": image_engine, "candidates": 2}}],
    }
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    manifest, _ = rendered(path)
    keyframe = manifest["shots"]["ride"]["keyframe"]
    assert len(keyframe["candidates"]) == 2
    chosen = next(c for c in keyframe["candidates"] if c["id"] == keyframe["chosen"])
    still = np.load(Path(chosen["path"]).parent / "head.npy")[0]
    assert [g.shape for g in given] == [still.shape] and np.array_equal(given[0], still)
    assert manifest["shots"]["ride"]["segments"][0]["candidates"][0]["frames"] == 8


def test_the_plan_counts_keyframe_stills_and_their_gpu_time(tmp_path):
    from stitchcraft.plan import plan_storyboard

    path = board(tmp_path, prompt="a rooftop", engine="ltx-video",
                 keyframe={"engine": "flux", "candidates": 3})
    plan = plan_storyboard(load_storyboard(path), memory_limit=2**40)
    poster = plan.shot("poster")
    assert poster.keyframe is not None and poster.keyframe.engine == "flux"
    assert (poster.keyframe.width, poster.keyframe.height) == (64, 48)
    assert plan.takes["poster#keyframe"] == 3 and plan.takes["poster#0"] == 1
    # the engine's GPU seconds for a 720p still, scaled to 64x48, three of them
    from stitchcraft.engines import engine_class

    per_still = engine_class("flux").CAPABILITIES.seconds_per_frame
    assert per_still > 0
    assert plan.gpu_seconds["flux"] == pytest.approx(3 * per_still * 64 * 48 / (1280 * 720), abs=0.01)
