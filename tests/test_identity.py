"""A take's identity: everything that decides its pixels, and nothing else.

`Engine.fingerprint` says what decides an engine's pixels besides the request; the
planner puts it in every take id. Changing it regenerates that engine's takes and no
others; changing what only says where an engine runs regenerates nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_image, make_tone, make_video

from stitchcraft import engines
from stitchcraft.engines import (
    Capabilities,
    Engine,
    SegmentRequest,
    Take,
    engine_class,
    register_engine,
)
from stitchcraft.engines.title import TitleEngine
from stitchcraft.generate import engine_fingerprints, storyboard_digests
from stitchcraft.media import read_frames
from stitchcraft.plan import plan_storyboard
from stitchcraft.render import RenderOptions, render
from stitchcraft.storyboard.load import LoadedStoryboard, load_storyboard, resolve_sources

ROOT = Path(__file__).resolve().parent.parent


class Painter(Engine):
    """A CPU engine with a model: flat frames whose shade comes from the seed."""

    NAME = "painter"
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True)

    def generate(self, request: SegmentRequest):
        for seed in request.seeds:
            shade = 40 + (seed * 53) % 160
            yield Take(frames=np.full((request.frames, request.height, request.width, 3), shade, np.uint8),
                       seed=seed, label=f"shade {shade}")


@pytest.fixture
def painter(monkeypatch):
    monkeypatch.setattr(engines, "_REGISTERED", dict(engines._REGISTERED))
    register_engine(Painter)
    yield Painter
    engine_class.cache_clear()


BOARD = """version: 1
output: {{fps: 12, size: 96x64, path: out/cut.mp4, preset: ultrafast}}
defaults: {{candidates: 2}}
engines:
  painter: {{model: brushes/oil, revision: {revision}{extra}}}
shots:
  - {{id: card, title: Hello, duration: 1}}
  - {{id: still, image: still.png, camera: push-in, duration: 1}}
  - {{id: paint, prompt: a grey wall, engine: painter, duration: 1}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_image(tmp_path / "still.png", size="160x120")
    return tmp_path


def write(project: Path, revision: str = "r1", extra: str = "") -> Path:
    board = project / "board.yaml"
    board.write_text(BOARD.format(revision=revision, extra=extra))
    return board


def render_counts(project: Path, **changes: str) -> tuple[int, int]:
    result = render(load_storyboard(write(project, **changes)),
                    RenderOptions(cache=project / "cache", variants=[]))
    return result.generated, result.reused


def segment_hashes(loaded: LoadedStoryboard) -> dict[str, str]:
    plan = plan_storyboard(loaded, digests=storyboard_digests(loaded),
                           fingerprints=engine_fingerprints(loaded))
    return {shot.id: shot.segments[0].hash for shot in plan.shots}


def test_bumping_an_engine_version_regenerates_its_takes_and_nothing_else(project, painter, monkeypatch):
    assert render_counts(project) == (5, 0)  # a card, two camera moves, two paintings
    assert render_counts(project) == (0, 5)
    monkeypatch.setattr(TitleEngine, "VERSION", TitleEngine.VERSION + 1)
    assert render_counts(project) == (1, 4)  # the card alone
    monkeypatch.setattr(Painter, "VERSION", "2024-06")
    assert render_counts(project) == (2, 3)  # the two paintings alone


def test_changing_a_model_revision_regenerates_its_takes_and_nothing_else(project, painter):
    assert render_counts(project, revision="r1") == (5, 0)
    assert render_counts(project, revision="r2") == (2, 3)
    assert render_counts(project, revision="r1") == (0, 5)  # the first paintings are still kept


def test_where_an_engine_runs_never_regenerates(project, painter):
    before = segment_hashes(load_storyboard(write(project)))
    after = segment_hashes(load_storyboard(write(project, extra=", device: cpu, batch: 8")))
    assert after == before
    steps = segment_hashes(load_storyboard(write(project, extra=", steps: 12")))
    assert steps["paint"] != before["paint"] and steps["card"] == before["card"]


def test_a_title_font_replaced_where_it_lies_redraws_the_card_and_nothing_else(project):
    """A card's font was in its identity by path: a brand font updated in place (same
    file name) left every card drawn in the old one."""
    fonts = Path("/usr/share/fonts/truetype/dejavu")
    if not (fonts / "DejaVuSerif.ttf").is_file():
        pytest.skip("DejaVu fonts are not installed here")
    shutil.copyfile(fonts / "DejaVuSans.ttf", project / "brand.ttf")
    board = project / "brand.yaml"
    board.write_text("version: 1\noutput: {fps: 12, size: 96x64, path: out/brand.mp4, preset: ultrafast}\n"
                     "shots:\n  - {id: card, title: {text: Hello, font: brand.ttf, animation: none}, duration: 1}\n"
                     "  - {id: plain, title: Plain, duration: 1}\n")

    def rendered():
        result = render(load_storyboard(board), RenderOptions(cache=project / "cache", variants=[]))
        return result.generated, read_frames(result.outputs[0].path, 5, 1)[0]

    first, sans = rendered()
    assert first == 2 and rendered()[0] == 0
    shutil.copyfile(fonts / "DejaVuSerif.ttf", project / "brand.ttf")
    again, serif = rendered()
    assert again == 1 and not np.array_equal(sans, serif)  # the card alone, in the new font


def wan_board(project: Path, block: str = "{}") -> LoadedStoryboard:
    board = project / "wan.yaml"
    board.write_text("version: 1\noutput: {size: 320x192}\n"
                     f"engines:\n  wan: {block}\n"
                     "shots:\n  - {id: card, title: Hi, duration: 1}\n"
                     "  - {id: gen, prompt: waves, engine: wan, duration: 1}\n")
    return load_storyboard(board, check_files=False)


def test_a_library_upgrade_regenerates_the_engines_it_renders(project, monkeypatch):
    before = segment_hashes(wan_board(project))
    real = engines.base.package_version

    def upgraded(name: str, parts: int | None = None) -> str | None:
        return "99.0" if name == "diffusers" else real(name, parts)

    monkeypatch.setattr(engines.base, "package_version", upgraded)
    after = segment_hashes(wan_board(project))
    assert after["gen"] != before["gen"] and after["card"] == before["card"]
    assert engine_class("wan").fingerprint()["libraries"] == {"diffusers": "99.0",
                                                             "torch": real("torch", 1)}


def test_a_local_checkpoint_is_named_by_its_index_not_its_weights(project):
    folder = project / "wan-model"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    (folder / "transformer" / "config.json").write_text(json.dumps({"num_layers": 2}))
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"a" * 64)
    block = f"{{model: {folder}}}"
    first = segment_hashes(wan_board(project, block))
    weights.write_bytes(b"b" * 64)  # the weights are never read ...
    (folder / "README.md").write_text("notes")
    assert segment_hashes(wan_board(project, block)) == first
    weights.write_bytes(b"b" * 65)  # ... but their names and sizes count
    resized = segment_hashes(wan_board(project, block))
    assert resized["gen"] != first["gen"]
    (folder / "transformer" / "config.json").write_text(json.dumps({"num_layers": 3}))
    configured = segment_hashes(wan_board(project, block))
    assert configured["gen"] != resized["gen"] and configured["card"] == first["card"]


def test_a_hub_revision_is_part_of_the_identity(project):
    main = segment_hashes(wan_board(project, "{model: org/some-model}"))
    pinned = segment_hashes(wan_board(project, "{model: org/some-model, revision: v2}"))
    assert pinned["gen"] != main["gen"] and pinned["card"] == main["card"]


def test_a_footage_library_is_part_of_the_identity(project):
    library = project / "library"
    (library / "more").mkdir(parents=True)
    clip = make_video(library / "more" / "a.mp4", seconds=1, size="64x48", audio=None)
    make_video(project / "shot.mp4", seconds=1, size="64x48", audio=None)
    board = project / "footage.yaml"
    board.write_text("version: 1\noutput: {size: 64x48}\nengines:\n  footage: {library: library}\n"
                     "shots:\n  - {id: clip, source: shot.mp4, duration: 0.5}\n")
    loaded = load_storyboard(board)
    first = engine_fingerprints(loaded)["footage"]
    assert len(first["inputs"]) == 1  # clips in the library's subfolders count
    make_video(clip, seconds=1, size="64x48", source="smptebars", audio=None)
    assert engine_fingerprints(loaded)["footage"]["inputs"] != first["inputs"]


def test_fingerprints_import_no_model_code(project):
    wan_board(project, "{model: org/some-model}")
    done = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "from stitchcraft.generate import engine_fingerprints\n"
        "from stitchcraft.storyboard.load import load_storyboard\n"
        f"print(engine_fingerprints(load_storyboard({str(project / 'wan.yaml')!r}, check_files=False)))\n"
        "heavy = {'torch', 'diffusers', 'transformers', 'open_clip'} & set(sys.modules)\n"
        "assert not heavy, heavy")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "'engine': 'wan'" in done.stdout and "'engine': 'title'" in done.stdout


# --- footage: sources are resolved by a step of their own ------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """examples/demo.yaml beside small stand-ins for its media."""
    folder = tmp_path_factory.mktemp("demo")
    media = folder / "media"
    media.mkdir()
    for name, source in (("hills", "testsrc2"), ("city", "smptebars"), ("ocean", "mandelbrot")):
        make_video(media / f"{name}.mp4", seconds=3, size="128x72", source=source, audio=None)
    for name in ("mountain", "product"):
        make_image(media / f"{name}.png", size="160x90")
    make_tone(media / "music.wav", seconds=2)
    shutil.copy(ROOT / "examples" / "demo.yaml", folder / "demo.yaml")
    return folder / "demo.yaml"


def test_footage_hashes_do_not_depend_on_file_checks(demo):
    checked = load_storyboard(demo)
    unchecked = load_storyboard(demo, check_files=False)
    assert checked.sources == unchecked.sources
    assert [p.name for p in unchecked.sources["city"]] == ["city.mp4"]
    for digests in (False, True):
        plans = [plan_storyboard(loaded, digests=storyboard_digests(loaded) if digests else None)
                 for loaded in (checked, unchecked)]
        hashes = [[s.hash for shot in plan.shots for s in shot.segments] for plan in plans]
        assert hashes[0] == hashes[1]
        city, ocean = (plans[1].shot(name).segments[0].hash for name in ("city", "ocean"))
        assert city != ocean


def test_checks_report_and_resolving_is_its_own_step(demo):
    from stitchcraft.storyboard.load import check_storyboard

    loaded = load_storyboard(demo, check_files=False)
    bare = LoadedStoryboard(loaded.path, loaded.storyboard, loaded.located, {})
    assert check_storyboard(bare) == [] and bare.sources == {}  # validation fills nothing in
    with pytest.raises(ValueError, match="sources of shot.*hills, city, ocean.*resolve_sources"):
        plan_storyboard(bare)
    assert resolve_sources(bare).sources == loaded.sources and bare.sources == {}
