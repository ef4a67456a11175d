"""A careless user and a flaky machine: no user file is destroyed, no shot is padded
silently, no OS error becomes a traceback. Every case runs `stitch` as a user would."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lavfi import make_image, make_video

from stitchcraft.media import probe

ENV = {"STITCHCRAFT_DEBUG": "1"}  # an unexpected exception shows as a traceback and fails


def stitch(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stitchcraft", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **ENV, **(env or {})}, timeout=300)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_traceback(done: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


def board(folder: Path, shots: str, *, output: str = "out/cut.mp4", extra: str = "",
          name: str = "board.yaml") -> Path:
    path = folder / name
    path.write_text(f"version: 1\n"
                    f"output: {{fps: 24, size: 160x90, path: {output}, preset: ultrafast}}\n"
                    f"defaults: {{candidates: 1, transition: {{type: cut}}}}\n"
                    f"{extra}shots:\n{shots}")
    return path


CLIP_SHOT = "  - {id: clip, source: in.mp4, duration: 1}\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_video(tmp_path / "in.mp4", seconds=1.5, size="160x90", audio=None)
    make_image(tmp_path / "still.png", size="160x90")
    return tmp_path


# --- data loss ------------------------------------------------------------------------

def test_output_that_is_an_input_is_refused_and_the_input_kept(folder):
    before = digest(folder / "in.mp4")
    path = board(folder, CLIP_SHOT, output="in.mp4")
    for command in ("validate", "render"):
        done = stitch(command, str(path), cwd=folder)
        assert done.returncode == 2, done.stderr
        assert f"{path}:2:" in done.stderr and "output.path" in done.stderr
        assert "shots[0].source" in done.stderr
        no_traceback(done)
    assert digest(folder / "in.mp4") == before


def test_output_over_the_music_is_refused(folder):
    before = digest(folder / "in.mp4")
    path = board(folder, "  - {id: t, title: Hi, duration: 1}\n", output="./sub/../in.mp4",
                 extra="audio: {music: in.mp4}\n")
    done = stitch("render", str(path), cwd=folder)
    assert done.returncode == 2 and "audio.music" in done.stderr, done.stderr
    assert digest(folder / "in.mp4") == before


def test_variant_on_the_main_cuts_path_is_refused(folder):
    variants = ("variants:\n  - {name: square, output: {size: 90x90, path: out/cut.mp4}}\n"
                "  - {name: tall, output: {size: 90x160, path: out/cut-wide.mp4}}\n"
                "  - {name: wide}\n")
    path = board(folder, "  - {id: t, title: Hi, duration: 1}\n", extra="")
    path.write_text(path.read_text() + variants)
    done = stitch("validate", str(path), cwd=folder)
    assert done.returncode == 2, done.stderr
    assert f"{path}:7:" in done.stderr and "variants[0].output.path" in done.stderr
    assert "where the main cut goes" in done.stderr
    # 'wide' writes cut-wide.mp4 by default, where 'tall' already goes
    assert "variants[2].name" in done.stderr and "variant 'tall'" in done.stderr
    no_traceback(done)
    assert not (folder / "out").exists()


def test_two_storyboards_in_one_folder_keep_their_own_manifests(folder):
    first = board(folder, "  - {id: a, title: First, duration: 1}\n", output="out/first.mp4", name="a.yaml")
    second = board(folder, "  - {id: b, title: Second, duration: 1}\n", output="out/second.mp4", name="b.yaml")
    for path in (first, second):
        assert stitch("render", str(path), cwd=folder).returncode == 0
    out = folder / "out"
    assert {p.name for p in out.iterdir()} >= {"first.mp4", "first.manifest.json", "first.report.html",
                                               "second.mp4", "second.manifest.json", "second.report.html"}
    takes_a = json.loads(stitch("takes", str(first), "--json", cwd=folder).stdout)
    takes_b = json.loads(stitch("takes", str(second), "--json", cwd=folder).stdout)
    assert set(takes_a) == {"a"} and set(takes_b) == {"b"}
    # the same output path for another storyboard is refused, and the first cut kept
    before = digest(out / "first.mp4")
    third = board(folder, "  - {id: c, title: Third, duration: 1}\n", output="out/first.mp4", name="c.yaml")
    done = stitch("render", str(third), cwd=folder)
    assert done.returncode == 2 and "a.yaml" in done.stderr and "another storyboard" in done.stderr
    no_traceback(done)
    assert digest(out / "first.mp4") == before
    assert json.loads((out / "first.manifest.json").read_text())["storyboard"] == str(first)


def test_glob_source_never_offers_the_previous_cut(folder):
    make_video(folder / "other.mp4", seconds=1.5, size="160x90", source="smptebars", audio=None)
    path = board(folder, '  - {id: clip, source: "*.mp4", duration: 1, candidates: 4}\n', output="cut.mp4")
    first = json.loads(stitch("render", str(path), "--json", cwd=folder).stdout)
    again = stitch("render", str(path), "--json", cwd=folder)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["takes_generated"] == 0 and result["takes_reused"] == first["takes_generated"] == 2
    manifest = json.loads((folder / "cut.manifest.json").read_text())
    sources = {Path(c["source"]).name for c in manifest["shots"]["clip"]["segments"][0]["candidates"]}
    assert sources == {"in.mp4", "other.mp4"}


# --- short footage ----------------------------------------------------------------------

def truncated_clip(path: Path) -> Path:
    """A 3 s clip whose header says 72 frames but whose data ends about halfway."""
    make_video(path, seconds=3, size="160x90", audio=None,
               video_args=["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast",
                           "-g", "12", "-movflags", "+faststart"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("clip", ["truncated", "one-frame"])
def test_short_source_is_refused_by_default(folder, clip):
    if clip == "truncated":
        truncated_clip(folder / "short.mp4")
        info = probe(folder / "short.mp4")
        assert info.frames == 72 and info.packets < 60
    else:
        make_video(folder / "short.mp4", seconds=1 / 24, size="160x90", audio=None)
    before = digest(folder / "short.mp4")
    path = board(folder, "  - {id: clip, source: short.mp4, duration: 2}\n")
    done = stitch("render", str(path), cwd=folder)
    assert done.returncode == 2, done.stderr
    assert "short.mp4" in done.stderr and "shot 'clip' lasts 2.00 s" in done.stderr
    assert "short_source: hold" in done.stderr
    no_traceback(done)
    assert not (folder / "out" / "cut.mp4").exists() and digest(folder / "short.mp4") == before


def test_short_source_held_when_asked_is_said_loudly(folder):
    truncated_clip(folder / "short.mp4")
    path = board(folder, "  - {id: clip, source: short.mp4, duration: 2, short_source: hold}\n")
    done = stitch("render", str(path), "--json", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "its last frame is held" in done.stderr and "holds its last frame for" in done.stderr
    result = json.loads(done.stdout)
    assert any("holds its last frame" in w for w in result["warnings"])
    manifest = json.loads((folder / "out" / "cut.manifest.json").read_text())
    [candidate] = manifest["shots"]["clip"]["segments"][0]["candidates"]
    assert 0 < candidate["short_by_frames"] < 48
    assert any("holds its last frame" in w for w in manifest["warnings"])
    assert "last frame held" in (folder / "out" / "cut.report.html").read_text()
    assert probe(folder / "out" / "cut.mp4", count_frames=True).frames == 48


def test_short_clip_among_long_ones_is_left_out_with_a_warning(folder):
    (folder / "clips").mkdir()
    make_video(folder / "clips" / "long.mp4", seconds=2.5, size="160x90", audio=None)
    make_video(folder / "clips" / "short.mp4", seconds=0.5, size="160x90", audio=None)
    path = board(folder, "  - {id: clip, source: clips, duration: 2, candidates: 4}\n")
    done = stitch("render", str(path), cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "short.mp4 has only 0.50 s" in done.stderr and "not a candidate" in done.stderr
    manifest = json.loads((folder / "out" / "cut.manifest.json").read_text())
    sources = {Path(c["source"]).name for c in manifest["shots"]["clip"]["segments"][0]["candidates"]}
    assert sources == {"long.mp4"}


# --- OS errors: one line naming the path, exit 1, before any generation ------------------

@contextlib.contextmanager
def mounted(folder: Path, options: str):
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_read_only_output_folder_fails_first_with_one_line(folder):
    path = board(folder, "  - {id: s, image: still.png, duration: 1}\n", output="ro/cut.mp4")
    with mounted(folder / "ro", "ro,size=1m"):
        done = stitch("render", str(path), "--json", cwd=folder)
    assert done.returncode == 1
    assert f"{folder / 'ro'}" in done.stderr and "read-only" in done.stderr
    assert json.loads(done.stdout)["ok"] is False
    no_traceback(done)
    assert not (folder / ".stitchcraft" / "cache" / "takes").exists()  # nothing was generated


@pytest.mark.parametrize("room", [0, 12 * 1024])
def test_full_output_disk_is_one_line(folder, room):
    """No room at all fails before generating; room for a few bytes but not the cut
    fails when the cut is written, as one line, leaving nothing behind."""
    path = board(folder, "  - {id: s, image: still.png, duration: 2}\n", output="full/cut.mp4")
    with mounted(folder / "full", "size=64k"):
        with contextlib.suppress(OSError), open(folder / "full" / "filler", "wb") as filler:
            filler.write(b"\0" * (64 * 1024 - room))
        done = stitch("render", str(path), cwd=folder)
        left = sorted(p.name for p in (folder / "full").iterdir())
    assert done.returncode == 1 and "no space left on the device" in done.stderr, done.stderr
    assert str(folder / "full") in done.stderr.splitlines()[-1]
    no_traceback(done)
    assert left == ["filler"]
    assert (folder / ".stitchcraft" / "cache" / "takes").exists() == bool(room)


def test_disk_full_while_storing_a_take_is_one_line(folder):
    path = board(folder, "  - {id: s, image: still.png, duration: 1}\n")
    with mounted(folder / "cache", "size=600k"):
        done = stitch("render", str(path), "--cache", str(folder / "cache"), cwd=folder)
        leftovers = list((folder / "cache").rglob("take.mp4"))
    assert done.returncode == 1 and "no space left" in done.stderr, done.stderr
    no_traceback(done)
    assert not leftovers  # no half-stored take


@pytest.mark.parametrize("case", ["output-is-folder", "cache-is-file", "output-under-file"])
def test_paths_in_the_way(folder, case):
    output = "out/cut.mp4"
    args: list[str] = []
    if case == "output-is-folder":
        (folder / "out" / "cut.mp4").mkdir(parents=True)
    elif case == "cache-is-file":
        (folder / "cachefile").write_text("not a folder")
        args = ["--cache", str(folder / "cachefile")]
    else:
        (folder / "blocker").write_text("a file")
        output = "blocker/cut.mp4"
    path = board(folder, "  - {id: s, image: still.png, duration: 1}\n", output=output)
    done = stitch("render", str(path), *args, cwd=folder)
    assert done.returncode in (1, 2), done.stderr
    named = {"output-is-folder": "cut.mp4", "cache-is-file": "cachefile", "output-under-file": "blocker"}
    assert named[case] in done.stderr and len(done.stderr.strip().splitlines()) <= 3
    no_traceback(done)


def test_init_and_pick_where_nothing_can_be_written(folder):
    with mounted(folder / "ro", "ro,size=1m"):
        done = stitch("init", str(folder / "ro" / "new.yaml"), cwd=folder)
        assert done.returncode == 1 and "read-only" in done.stderr and "new.yaml" in done.stderr
        no_traceback(done)
    path = board(folder, "  - {id: s, image: still.png, duration: 1}\n")
    (folder / ".stitchcraft").write_text("a file where the picks folder goes")
    done = stitch("pick", str(path), "s", "0", cwd=folder)
    assert done.returncode == 1 and ".stitchcraft" in done.stderr
    no_traceback(done)


def test_pick_of_a_take_that_does_not_exist(folder):
    path = board(folder, "  - {id: s, image: still.png, duration: 1, candidates: 2}\n")
    done = stitch("pick", str(path), "s", "99", cwd=folder)
    assert done.returncode == 2 and "takes 0-1" in done.stderr and "no take 99" in done.stderr
    assert stitch("render", str(path), cwd=folder).returncode == 0
    assert stitch("pick", str(path), "s", "1", cwd=folder).returncode == 0
    done = stitch("pick", str(path), "s", "ffffffffff", cwd=folder)
    assert done.returncode == 2 and "matches no take" in done.stderr
    no_traceback(done)
    assert json.loads((folder / ".stitchcraft" / "picks.json").read_text()) == {"board.yaml": {"s": 1}}


def test_tilde_in_the_output_path_means_home(folder):
    home = folder / "home"
    home.mkdir()
    path = board(folder, "  - {id: t, title: Hi, duration: 1}\n", output="~/renders/cut.mp4")
    done = stitch("render", str(path), cwd=folder, env={"HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert (home / "renders" / "cut.mp4").is_file() and not (folder / "~").exists()
