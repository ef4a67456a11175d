"""The demo's media are made by stitchcraft itself, and the demo storyboards use them."""

from __future__ import annotations

import shutil
import wave
from fractions import Fraction
from pathlib import Path

import pytest

from stitchcraft.demo import make_demo_media
from stitchcraft.engines.footage import analyse_clip
from stitchcraft.media import probe, read_image
from stitchcraft.storyboard.load import load_storyboard

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_media(tmp_path_factory) -> list[Path]:
    return make_demo_media(tmp_path_factory.mktemp("demo") / "media")


def test_clips_probe_as_drawn(demo_media):
    clips = {p.name: probe(p) for p in demo_media if p.suffix == ".mp4"}
    assert set(clips) == {"hills.mp4", "city.mp4", "ocean.mp4"}
    for name, frames, sound in (("hills.mp4", 144, True), ("city.mp4", 192, False),
                                ("ocean.mp4", 144, True)):
        info = clips[name]
        assert (info.width, info.height, info.fps, info.frames) == (1280, 720, Fraction(24), frames)
        assert info.has_audio == sound
        if sound:
            assert info.audio_rate == 48000 and abs(info.audio_duration - info.duration) < 0.05


def test_city_has_a_hard_cut_for_scene_detection(demo_media):
    city = next(p for p in demo_media if p.name == "city.mp4")
    scenes = analyse_clip(city).scenes
    assert len(scenes) == 2 and scenes[1][0] == pytest.approx(4.0, abs=0.05)


def test_stills_and_music(demo_media):
    by_name = {p.name: p for p in demo_media}
    assert read_image(by_name["mountain.png"]).shape == (1080, 1920, 3)
    assert read_image(by_name["product.png"]).shape == (1600, 1600, 3)
    with wave.open(str(by_name["music.wav"])) as music:
        assert (music.getframerate(), music.getnchannels(), music.getsampwidth()) == (48000, 2, 2)
        assert music.getnframes() == 20 * 48000


def test_making_again_skips_existing_files(demo_media):
    before = {p: p.stat().st_mtime_ns for p in demo_media}
    assert make_demo_media(demo_media[0].parent) == demo_media
    assert {p: p.stat().st_mtime_ns for p in demo_media} == before


@pytest.mark.parametrize("storyboard", ["examples/demo.yaml", "storyboards/ad.yaml",
                                        "storyboards/short.yaml", "storyboards/trailer.yaml"])
def test_storyboards_validate_against_the_demo_media(demo_media, tmp_path, storyboard):
    # the storyboards' layout, rebuilt around freshly made media
    shutil.copytree(demo_media[0].parent, tmp_path / "examples" / "media")
    copy = tmp_path / storyboard
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / storyboard, copy)
    loaded = load_storyboard(copy)
    assert loaded.storyboard.shots
    if storyboard == "examples/demo.yaml":
        sb = loaded.storyboard
        assert {s.kind for s in sb.shots} == {"title", "source", "image"}
        assert not any(s.engine for s in sb.shots)
        assert 15 <= sum(s.duration for s in sb.shots) <= 20
        assert [v.name for v in sb.variants] == ["vertical"]
