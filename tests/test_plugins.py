"""Engines as plug-ins: found through an entry-point group, with settings of their own.

The plug-in tests install small packages the way pip lays them out (the package beside a
``<name>-<version>.dist-info`` folder holding METADATA and entry_points.txt) into a
temporary folder, and run `stitch` in a subprocess with that folder on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stitchcraft import engines
from stitchcraft.engines import (
    Capabilities,
    Engine,
    SegmentRequest,
    Take,
    engine_class,
    register_engine,
)
from stitchcraft.errors import ConfigError, StoryboardError
from stitchcraft.media import read_frames
from stitchcraft.storyboard import EngineSettings
from stitchcraft.storyboard.load import load_storyboard

# An engine another package ships: solid colour takes, the colour a setting of its own.
TINT_PACKAGE = '''
from typing import Literal

import numpy as np

from stitchcraft.engines import Capabilities, Engine, Take
from stitchcraft.storyboard import EngineSettings

COLOURS = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}


class TintSettings(EngineSettings):
    color: Literal["red", "green", "blue"] = "red"


class TintEngine(Engine):
    NAME = "tint"
    DESCRIPTION = "solid colour takes"
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True)
    SETTINGS = TintSettings

    def generate(self, request):
        for seed in request.seeds:
            frames = np.empty((request.frames, request.height, request.width, 3), np.uint8)
            frames[...] = COLOURS[self.settings.color]
            yield Take(frames=frames, seed=seed, label=f"{self.settings.color} {seed}")
'''


def install(site: Path, dist: str, version: str, entry_points: dict[str, str],
            modules: dict[str, str]) -> None:
    """Lays out a package in `site` as pip installs one."""
    for name, text in modules.items():
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(text)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[stitchcraft.engines]\n" + "".join(f"{n} = {t}\n" for n, t in entry_points.items()))
    (info / "INSTALLER").write_text("pip\n")
    records = [f"{m}/__init__.py,," for m in modules] + [
        f"{info.name}/{f},," for f in ("METADATA", "entry_points.txt", "INSTALLER", "RECORD")]
    (info / "RECORD").write_text("\n".join(records) + "\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding three installed packages: a working plug-in, one whose module is
    missing, and one that claims a built-in engine's name."""
    site = tmp_path_factory.mktemp("site-packages")
    install(site, "stitch-tint", "1.0", {"tint": "stitch_tint:TintEngine"}, {"stitch_tint": TINT_PACKAGE})
    install(site, "stitch-broken", "0.1", {"smudge": "stitch_broken.nowhere:SmudgeEngine"},
            {"stitch_broken": ""})
    install(site, "stitch-impostor", "2.0", {"title": "stitch_tint:TintEngine"}, {})
    return site


def stitch(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "stitchcraft", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


BOARD = """version: 1
output: {fps: 12, size: 96x64, path: out/cut.mp4, preset: ultrafast}
defaults: {candidates: 2}
engines:
  tint: {color: blue}
shots:
  - {id: card, title: Hello, duration: 1}
  - {id: wash, prompt: a blue wash, engine: tint, duration: 1}
"""


def test_installed_engine_is_listed_beside_the_builtins(site, tmp_path):
    done = stitch(site, "engines", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["tint"]["available"] and rows["tint"]["origin"] == "plug-in from stitch-tint 1.0"
    assert rows["tint"]["kinds"] == ["prompt"]
    for name in ("footage", "stills", "title"):  # a broken plug-in breaks none of these
        assert rows[name]["available"] and rows[name]["origin"] == "built-in"
    broken = rows["smudge"]
    assert not broken["available"]
    assert broken["reason"].startswith("engine 'smudge' (stitch_broken.nowhere:SmudgeEngine from "
                                       "stitch-broken 0.1) cannot be loaded: ModuleNotFoundError")
    assert "warning: engine plug-in 'title' from stitch-impostor 2.0 is ignored: a built-in engine " \
           "has that name" in done.stderr
    assert "Traceback" not in done.stderr


def test_installed_engine_renders_with_its_own_settings(site, tmp_path):
    (tmp_path / "board.yaml").write_text(BOARD)
    done = stitch(site, "render", "board.yaml", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["takes_generated"] == 3  # one title card, two tint takes
    manifest = json.loads((tmp_path / "out" / "cut.manifest.json").read_text())
    assert manifest["shots"]["wash"]["engine"] == "tint"
    assert manifest["shots"]["card"]["engine"] == "title"  # the built-in, not the impostor
    wash = read_frames(tmp_path / "out" / "cut.mp4", start=18, count=1)[0]
    assert np.abs(wash.reshape(-1, 3).mean(axis=0) - (20, 20, 220)).max() < 12  # color: blue


def test_installed_engine_settings_are_checked_where_written(site, tmp_path):
    (tmp_path / "board.yaml").write_text(BOARD.replace("{color: blue}", "{colour: blue}"))
    done = stitch(site, "validate", "board.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "board.yaml:5:10: engines.tint.colour: unknown key 'colour'; did you mean 'color'?" in done.stderr
    (tmp_path / "board.yaml").write_text(BOARD.replace("{color: blue}", "{color: teal}"))
    done = stitch(site, "validate", "board.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "engines.tint.color: 'teal' is not allowed; expected 'red', 'green' or 'blue'" in done.stderr


def test_broken_plugin_is_one_clear_error_where_it_is_used(site, tmp_path):
    (tmp_path / "board.yaml").write_text(BOARD.replace("engine: tint", "engine: smudge"))
    done = stitch(site, "render", "board.yaml", cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].endswith("board.yaml:8:37: shots[1].engine: engine 'smudge' "
                              "(stitch_broken.nowhere:SmudgeEngine from stitch-broken 0.1) cannot "
                              "be loaded: ModuleNotFoundError: No module named 'stitch_broken.nowhere'")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


# --- in process: the registry and each engine's settings --------------------------------

class Painter(Engine):
    """A CPU engine registered in this process, with settings of its own."""

    NAME = "painter"
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True)

    class Settings(EngineSettings):
        shade: int = 128

    SETTINGS = Settings

    def generate(self, request: SegmentRequest):
        for seed in request.seeds:
            yield Take(frames=np.full((request.frames, request.height, request.width, 3),
                                      self.settings.shade, np.uint8), seed=seed)


@pytest.fixture
def painter(monkeypatch):
    monkeypatch.setattr(engines, "_REGISTERED", dict(engines._REGISTERED))
    register_engine(Painter)
    yield Painter
    engine_class.cache_clear()


def board(write_storyboard, block: str, shot: str = "{id: t, title: Hi, duration: 1}") -> Path:
    return write_storyboard(f"version: 1\noutput: {{size: 320x180}}\nengines:\n  {block}\n"
                            f"shots:\n  - {shot}\n")


def test_each_engine_block_is_its_engines_model(write_storyboard, painter, tmp_path):
    (tmp_path / "clips").mkdir()
    loaded = load_storyboard(board(write_storyboard, "footage: {library: clips, steps: 3}\n"
                                                     "  painter: {shade: 40, batch: 2}\n"
                                                     "  wan: {guidance: 4.5, offload: model}\n"
                                                     "  draft: {engine: painter, steps: 2}"))
    sb = loaded.storyboard
    assert type(sb.engines["footage"]).__name__ == "FootageSettings"
    assert type(sb.engines["wan"]).__name__ == "DiffusionSettings"
    assert isinstance(sb.engines["painter"], Painter.Settings) and sb.engines["painter"].shade == 40
    assert (sb.draft_engine, sb.draft_steps) == ("painter", 2)
    # the settings an engine runs with: storyboard-relative paths made absolute
    assert loaded.engine_settings("footage").library == str(tmp_path / "clips")
    assert loaded.engine_settings("stills") == EngineSettings()  # no block: the defaults
    assert Painter(loaded.engine_settings("painter")).settings.shade == 40


@pytest.mark.parametrize(("block", "message"), [
    ("footage: {libary: clips}", "4:13: engines.footage.libary: unknown key 'libary'; did you mean 'library'?"),
    ("title: {library: clips}", "4:11: engines.title.library: unknown key 'library'; expected one of: "
                                "model, revision, device, dtype, steps, batch"),
    ("wan: {guidence: 3}", "4:9: engines.wan.guidence: unknown key 'guidence'; did you mean 'guidance'?"),
    ("painter: {shade: light}", "4:13: engines.painter.shade: expected a whole number, got 'light'"),
    ("painter: {shde: 3}", "4:13: engines.painter.shde: unknown key 'shde'; did you mean 'shade'?"),
    ("stils: {}", "4:3: engines.stils: unknown engine 'stils'; did you mean 'stills'? (see `stitch engines`)"),
    ("draft: {engine: wan, guidance: 3}", "4:24: engines.draft.guidance: unknown key 'guidance'; "
                                          "expected one of: engine, steps, model"),
])
def test_engine_block_errors_are_located(write_storyboard, painter, block, message):
    path = board(write_storyboard, block)
    with pytest.raises(StoryboardError) as caught:
        load_storyboard(path, check_files=False)
    assert [str(issue) for issue in caught.value.issues] == [f"{path}:{message}"]


def test_engine_takes_its_own_settings_from_any_model_or_mapping(painter):
    assert Painter(EngineSettings(steps=3)).settings == Painter.Settings(steps=3)
    assert Painter({"shade": 9}).settings.shade == 9
    assert type(engine_class("wan")(None).settings).__name__ == "DiffusionSettings"
    with pytest.raises(ConfigError, match="engine 'painter' settings: library: Extra inputs"):
        Painter({"library": "clips"})


def test_registry_lists_builtins_without_importing_them():
    done = subprocess.run([sys.executable, "-c", (
        "import sys; from stitchcraft.engines import engine_names, has_engine\n"
        "names = engine_names(); assert has_engine('wan') and not has_engine('nope')\n"
        "assert names[:3] == ['footage', 'stills', 'title'], names\n"
        "loaded = [m for m in sys.modules if m.startswith('stitchcraft.engines.')]\n"
        "assert loaded == ['stitchcraft.engines.base'], loaded")],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_entry_point_that_is_not_an_engine_is_refused(monkeypatch):
    monkeypatch.setitem(engines.BUILTIN_ENGINES, "odd", "stitchcraft.errors:ConfigError")
    monkeypatch.setitem(engines.BUILTIN_ENGINES, "misnamed", "stitchcraft.engines.title:TitleEngine")
    monkeypatch.setitem(engines.BUILTIN_ENGINES, "bare", "stitchcraft.engines.title")
    engine_class.cache_clear()
    try:
        with pytest.raises(ConfigError, match="it is not a stitchcraft Engine class"):
            engine_class("odd")
        with pytest.raises(ConfigError, match="the class is named 'title', not 'misnamed'"):
            engine_class("misnamed")
        with pytest.raises(ConfigError, match="must read 'module:Class'"):
            engine_class("bare")
    finally:
        engine_class.cache_clear()
