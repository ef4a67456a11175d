"""End-to-end renders through the `stitch` command, on real media, on the CPU."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lavfi import make_image, make_video

from stitchcraft.media import probe, read_frames, run_ffmpeg

STORYBOARD = """
version: 1
title: End to end
output: {{fps: 24, size: 320x180, path: out/cut.mp4, preset: ultrafast}}
defaults: {{candidates: {candidates}, transition: {{type: dissolve, duration: 0.25}}, seed: 3}}
audio: {{take_audio: true}}
ending: {{type: fade, duration: 0.25}}
shots:
  - id: opening
    title: {{text: "Hello: 'world' 100%", animation: rise}}
    duration: 1
    transition: {{type: fade, duration: 0.25}}
  - id: still
    image: still.png
    camera: push-in
    duration: 1.5
  - id: real
    source: clips
    duration: 1
    transition: {{type: cut}}
  - id: still2
    image: still.png
    duration: {last}
    text: {{content: "Out now", position: bottom}}
variants:
  - name: square
    output: {{size: 240x240, fit: blur-pad}}
"""


def stitch(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "stitchcraft", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"stitch {' '.join(args)} exited {done.returncode}\n{done.stderr}")
    return done


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_image(tmp_path / "still.png", size="480x270", source="mandelbrot")
    (tmp_path / "clips").mkdir()
    make_video(tmp_path / "clips" / "a.mp4", seconds=2, size="320x180", source="testsrc2")
    make_video(tmp_path / "clips" / "b.mov", seconds=1.5, size="352x288", source="smptebars", audio="mono")
    return tmp_path


def write(project: Path, candidates: int = 2, last: float = 1.0) -> Path:
    path = project / "board.yaml"
    path.write_text(STORYBOARD.format(candidates=candidates, last=last))
    return path


def take_dirs(cache: Path) -> dict[str, int]:
    return {p.name: (p / "meta.json").stat().st_mtime_ns for p in (cache / "takes").glob("*/*")
            if (p / "meta.json").exists()}


def test_render_writes_verified_cut_manifest_and_report(project):
    board = write(project)
    result = json.loads(stitch("render", str(board), "--json", cwd=project).stdout)
    assert result["ok"] and result["takes_reused"] == 0
    main, square = result["outputs"]
    # 24 + 36 + 24 + 24 frames, minus the 6-frame dissolves into 'still' and 'still2'
    assert main["frames"] == 108 - 12
    info = probe(main["path"], count_frames=True)
    assert (info.width, info.height, info.frames, info.fps) == (320, 180, 96, 24)
    assert info.has_audio and info.audio_rate == 48000 and info.audio_channels == 2
    sq = probe(square["path"], count_frames=True)
    assert (sq.width, sq.height, sq.frames) == (240, 240, 96)
    manifest = json.loads((project / "out" / "cut.manifest.json").read_text())
    assert set(manifest["shots"]) == {"opening", "still", "real", "still2"}
    still = manifest["shots"]["still"]
    candidates = still["segments"][0]["candidates"]
    assert len(candidates) == 2 and still["chosen"] in {c["id"] for c in candidates}
    for cand in candidates:
        assert {"id", "engine", "seed", "path", "score", "components"} <= set(cand)
        assert Path(cand["path"]).is_file() and 0 <= cand["score"] <= 1
    # every clip in the source folder became a candidate
    assert len(manifest["shots"]["real"]["segments"][0]["candidates"]) >= 2
    assert (project / "out" / "cut.report.html").is_file()
    # the first frame fades in from black, the last fades out to black
    first, last = read_frames(main["path"], 0, 1)[0], read_frames(main["path"], 95, 1)[0]
    assert first.mean() < 8 and last.mean() < 20
    # nothing half-written is left beside the outputs
    assert not [p for p in (project / "out").iterdir() if ".partial" in p.name]


def test_rerender_reuses_everything_and_edit_regenerates_one_shot(project):
    board = write(project)
    first = json.loads(stitch("render", str(board), "--json", "--no-variants", cwd=project).stdout)
    again = json.loads(stitch("render", str(board), "--json", "--no-variants", cwd=project).stdout)
    assert again["takes_generated"] == 0 and again["takes_reused"] == first["takes_generated"]
    board.write_text(board.read_text().replace("camera: push-in", "camera: pan-left"))
    edited = json.loads(stitch("render", str(board), "--json", "--no-variants", cwd=project).stdout)
    assert edited["takes_generated"] == 2  # the two candidates of the edited shot only


def test_killed_render_resumes_without_regenerating(project):
    board = write(project, candidates=3, last=4.0)
    cache = project / ".stitchcraft" / "cache"
    proc = subprocess.Popen([sys.executable, "-m", "stitchcraft", "render", str(board), "--no-variants"],
                            cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(take_dirs(cache) if cache.exists() else {}) < 4:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = take_dirs(cache)
    assert len(finished) >= 4, "render did not get far enough to be killed midway"
    assert not (project / "out" / "cut.mp4").exists()
    result = json.loads(stitch("render", str(board), "--json", "--no-variants", cwd=project).stdout)
    assert result["takes_reused"] >= len(finished)
    after = take_dirs(cache)
    assert all(after[name] == mtime for name, mtime in finished.items())  # untouched
    assert result["takes_generated"] == len(after) - len(finished)


def test_bad_storyboard_exits_2_without_traceback(project):
    board = write(project)
    board.write_text(board.read_text().replace("camera: push-in", "camera: push-inn"))
    done = stitch("render", str(board), cwd=project, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "board.yaml:" in done.stderr and "did you mean 'push-in'" in done.stderr
    assert not (project / "out").exists()


def test_broken_media_exits_2_naming_the_file(project):
    board = write(project)
    (project / "clips" / "a.mp4").write_bytes(b"\x00" * 1000)  # truncated / not media
    done = stitch("render", str(board), "--no-variants", cwd=project, check=False)
    assert done.returncode == 2, done.stderr
    assert "a.mp4" in done.stderr and "Traceback" not in done.stderr


def test_validate_and_help_do_not_import_torch(project):
    board = write(project)
    code = (f"import sys, runpy; sys.argv=['stitch','validate',{str(board)!r}]\n"
            "try:\n    runpy.run_module('stitchcraft', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=project)
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "stitchcraft", "--help"], check=True, capture_output=True)
    assert time.monotonic() - began < 3  # generous for a loaded CI machine; ~0.3 s here


def test_every_options_help_is_shown_as_written():
    """Option help is rendered as rich markup, where "[ray]" is a style tag: unescaped,
    it vanished and `render --help` told users to pip install 'stitchcraft'."""
    import typer.main
    from click import Group
    from typer.testing import CliRunner

    from stitchcraft.cli import app

    def commands(group: Group, path: tuple[str, ...] = ()):
        for name, command in group.commands.items():
            yield (*path, name), command
            if isinstance(command, Group):
                yield from commands(command, (*path, name))

    runner = CliRunner()
    checked = 0
    for path, command in commands(typer.main.get_command(app)):
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "1000"})
        assert shown.exit_code == 0, shown.output
        text = " ".join(shown.output.replace("│", " ").split())
        for param in command.params:
            written = getattr(param, "help", None)
            if written:
                assert " ".join(written.replace("\\[", "[").split()) in text, (path, param.name)
                checked += 1
    assert checked > 40


def test_each_command_is_listed_by_its_first_paragraph_in_one_flow():
    """The command listing read a docstring's line breaks as rich markup keeps them:
    `stitch --help` broke "estimated GPU time and the / hosted takes' seconds" mid-line."""
    from typer.testing import CliRunner

    from stitchcraft.cli import app

    runner = CliRunner()
    for group, names in (((), ("validate", "plan", "engines", "pick", "batch", "inspect")),
                         (("cache",), ("show", "prune"))):
        shown = runner.invoke(app, [*group, "--help"], env={"COLUMNS": "1000"})
        assert shown.exit_code == 0, shown.output
        rows = {line.strip("│ ").split(" ", 1)[0]: line for line in shown.output.splitlines()}
        for name in names:
            # A wide terminal fits each listing on its one row, ending at the paragraph's end.
            assert rows[name].rstrip("│ ").endswith((".", ")")), rows[name]


def test_a_media_library_error_that_escapes_is_said_as_a_bug_not_as_a_disk_error(monkeypatch, capsys):
    """PyAV's errors are OSErrors: one that escaped was said as a path problem,
    "stitchcraft: operation not permitted", where it is a bug to report."""
    import av
    import typer

    from stitchcraft.cli import handled

    monkeypatch.delenv("STITCHCRAFT_DEBUG", raising=False)

    @handled
    def decoding() -> None:
        raise av.error.PermissionError(1, "Operation not permitted")

    @handled
    def writing() -> None:
        raise PermissionError(13, "Permission denied", "/srv/out/cut.mp4")

    with pytest.raises(typer.Exit) as ended:
        decoding()
    said = capsys.readouterr().err
    assert ended.value.exit_code == 1
    assert said.startswith("error: internal error (PermissionError: [Errno 1] Operation not "
                           "permitted); this is a bug in stitchcraft") and "STITCHCRAFT_DEBUG=1" in said
    with pytest.raises(typer.Exit) as ended:
        writing()
    assert ended.value.exit_code == 1
    assert capsys.readouterr().err.startswith("error: /srv/out/cut.mp4: ")


def test_plan_json_and_engines(project):
    board = write(project)
    plan = json.loads(stitch("plan", str(board), "--json", cwd=project).stdout)
    assert plan["total_frames"] == 96 and [s["id"] for s in plan["shots"]][0] == "opening"
    engines = json.loads(stitch("engines", "--json", cwd=project).stdout)
    by_name = {e["name"]: e for e in engines}
    assert by_name["title"]["available"] and by_name["stills"]["available"]
    for gpu in ("ltx-video", "wan", "svd", "cogvideox"):
        assert not by_name[gpu]["available"] and by_name[gpu]["reason"]


def test_the_plan_and_the_takes_fit_a_pipes_80_columns(project):
    """At 80 columns (a pipe, CI logs) the plan's table ruled every column and cut what
    did not fit: every start read "00:00:…". A shot keeps its line there now, whole."""
    from stitchcraft.timeline import timecode

    board = write(project)
    planned = json.loads(stitch("plan", str(board), "--json", cwd=project).stdout)
    table = stitch("plan", str(board), cwd=project, env={"COLUMNS": "80"}).stdout
    lines = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    for shot in planned["shots"]:
        line = lines[shot["id"]]
        assert len(line) <= 80 and "…" not in line, line
        assert line.split()[1:4] == [shot["engine"], timecode(shot["start"], Fraction(24))[3:],
                                     str(shot["frames"])], line
    made = json.loads(stitch("render", str(board), "--json", "--no-variants", cwd=project).stdout)
    # The plan counted the takes the render made for the main cut: one card, two moves of
    # each still, one take of each of the two clips (footage is counted as wanted: two).
    assert sum(planned["takes"].values()) == made["takes_generated"] == 1 + 2 + 2 + 2
    labels = json.loads(stitch("takes", str(board), "--json", cwd=project).stdout)
    for width in (80, 76):  # at 76, rich squeezed the scores below their widest part
        listing = stitch("takes", str(board), cwd=project, env={"COLUMNS": str(width)}).stdout.splitlines()
        at = next(line for line in listing if line.startswith("shot ")).index("label")
        for shot_id, shot in labels.items():
            for cand in shot["segments"][0]["candidates"]:
                first = next(i for i, line in enumerate(listing) if cand["id"][:8] in line)
                row = listing[first]
                assert len(row) <= width and "…" not in row and row.split()[0] == shot_id, row
                # the label whole, over the row's lines (rich once cut its last letters)
                lines = [row, *itertools.takewhile(lambda line: line.startswith(" ") and line.strip(),
                                                    listing[first + 1:])]
                assert " ".join(line[at:].strip() for line in lines) == cand["label"], lines


def test_init_writes_a_valid_storyboard(tmp_path):
    stitch("init", "starter.yaml", cwd=tmp_path)
    done = stitch("validate", "starter.yaml", cwd=tmp_path)
    assert done.stdout.strip() == "starter.yaml: ok (3 shots, 1 variant)"  # not "1 variants"
    again = stitch("init", "starter.yaml", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "--force" in again.stderr


def test_init_says_which_engines_can_make_its_prompt_shots_here(tmp_path):
    from stitchcraft.engines import engine_class, engine_names

    if engine_class("ltx-video").availability(None).ok:
        pytest.skip("LTX-Video runs here: init has nothing to say")
    keys = {var: "" for name in engine_names() for var in getattr(engine_class(name), "KEY_VARS", ())}
    env = {**keys, "STITCHCRAFT_ALLOW_CPU": ""}
    none = stitch("init", "a.yaml", cwd=tmp_path, env=env)
    assert none.stderr.startswith("note: ltx-video cannot run here (") and "nor can any other" in none.stderr
    some = stitch("init", "b.yaml", cwd=tmp_path, env={**env, "RUNWAYML_API_SECRET": "key-0123456789"})
    [ready] = re.findall(r"these engines can make its prompt shots: ([^(]*) \(", some.stderr)
    assert "runway" in ready.split(", ") and "fal" not in ready.split(", ")  # fal's model needs an image
    assert "key-0123456789" not in some.stdout + some.stderr
    assert (tmp_path / "a.yaml").read_text() == (tmp_path / "b.yaml").read_text()  # named, not chosen


def test_takes_and_pick(project):
    board = write(project)
    stitch("render", str(board), "--no-variants", cwd=project)
    listing = json.loads(stitch("takes", str(board), "--json", cwd=project).stdout)
    candidates = listing["still"]["segments"][0]["candidates"]
    other = next(c for c in candidates if c["id"] != listing["still"]["chosen"])
    stitch("pick", str(board), "still", other["id"][:12], cwd=project)
    month_ago = time.time() - 40 * 86400
    for take_dir in (project / ".stitchcraft" / "cache" / "takes").glob("*/*"):
        os.utime(take_dir, (month_ago, month_ago))
    result = json.loads(stitch("render", str(board), "--json", "--no-variants", cwd=project).stdout)
    assert result["takes_generated"] == 0
    # The take the pin set aside was used too (the shot may be pinned to it again).
    aged = json.loads(stitch("cache", "prune", "--older-than", "30d", "--dry-run", "--json", str(board),
                             cwd=project).stdout)
    assert aged["takes"] == []
    manifest = json.loads((project / "out" / "cut.manifest.json").read_text())
    assert manifest["shots"]["still"]["chosen"] == other["id"]
    take = read_frames(other["path"], 0, 1)[0]
    assert take.shape == (180, 320, 3) and np.isfinite(take).all()
    # The takes the pin set aside stay listed, numbered as before, so the shot can be
    # pinned again by number; the table and the report say which take is pinned.
    again = json.loads(stitch("takes", str(board), "--json", cwd=project).stdout)["still"]["segments"][0]
    assert [c["id"] for c in again["candidates"]] == [c["id"] for c in candidates]
    assert again["set_aside"] == [listing["still"]["chosen"]]
    table = stitch("takes", str(board), cwd=project, env={"COLUMNS": "120"}).stdout
    assert [line.split()[2] for line in table.splitlines() if "(pinned)" in line] == \
        [str(candidates.index(other))]
    report = (project / "out" / "cut.report.html").read_text()
    assert report.count("✓ pinned") == 1 and report.count("set aside by the pin") == 1
    assert '<span class="idx">#0</span>' in report  # numbered as `stitch pick` counts
    first = str(candidates.index(next(c for c in candidates if c["id"] == listing["still"]["chosen"])))
    assert stitch("pick", str(board), "still", first, cwd=project).stdout.strip() == f"still: pinned to {first}"


def test_paths_resolve_relative_to_the_storyboard_not_the_shell(project, tmp_path_factory):
    from stitchcraft.fonts import sans_font_file

    font = sans_font_file()
    if font is None:
        pytest.skip("no system font to copy")
    (project / "fonts").mkdir()
    (project / "fonts" / "caption.ttf").write_bytes(font.read_bytes())
    board = write(project)
    board.write_text(board.read_text().replace('text: {content: "Out now", position: bottom}',
                                               'text: {content: "Out now", font: fonts/caption.ttf}'))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = json.loads(stitch("render", str(board), "--json", "--no-variants", cwd=elsewhere).stdout)
    assert Path(result["outputs"][0]["path"]) == project / "out" / "cut.mp4"
    assert not list(elsewhere.iterdir())


MATCH = """
version: 1
output: {fps: 24, size: 320x180, path: out/cut.mp4, preset: ultrafast}
defaults: {transition: {type: cut}}
shots:
  - {id: before, source: before.mp4, duration: 1.5}
  - {id: after, source: clips, duration: 1, continuity: CONTINUITY}
"""


def cut_frames(source: Path, path: Path, start: int, count: int) -> Path:
    """Frames start .. start+count-1 of a clip, as a clip of their own."""
    run_ffmpeg(["-i", str(source), "-vf", f"trim=start_frame={start}:end_frame={start + count},"
                "setpts=PTS-STARTPTS", "-an", "-c:v", "libx264", "-crf", "16", "-preset", "veryfast",
                "-pix_fmt", "yuv420p", str(path)], what=f"cut {path.name}")
    return path


def test_match_on_action_picks_the_true_continuation_of_split_footage(tmp_path):
    """A clip cut in two: the first half fills `before`; the second half's start is one
    of the candidates for `after`, among other stretches of the same footage and of other
    footage. Matching picks it by the seam; a cut judges no seam."""
    footage = make_video(tmp_path / "footage.mp4", seconds=6, size="320x180", source="testsrc2", audio=None)
    other = make_video(tmp_path / "other.mp4", seconds=3, size="320x180", source="mandelbrot", audio=None)
    cut_frames(footage, tmp_path / "before.mp4", 0, 36)
    (tmp_path / "clips").mkdir()
    cut_frames(footage, tmp_path / "clips" / "a_earlier.mp4", 6, 24)
    cut_frames(other, tmp_path / "clips" / "b_other.mp4", 36, 24)
    cut_frames(footage, tmp_path / "clips" / "c_next.mp4", 36, 24)  # the true continuation
    cut_frames(footage, tmp_path / "clips" / "d_later.mp4", 96, 24)
    board = tmp_path / "board.yaml"
    board.write_text(MATCH.replace("CONTINUITY", "match"))
    plan = json.loads(stitch("plan", str(board), "--json", cwd=tmp_path).stdout)
    assert [(s["continuity"], s["depends_on"]) for s in plan["shots"]] == [("cut", []), ("match", [])]
    assert plan["shots"][1]["segments"][0]["matches"] == "before"
    stitch("render", str(board), cwd=tmp_path)
    manifest = json.loads((tmp_path / "out" / "cut.manifest.json").read_text())
    segment = manifest["shots"]["after"]["segments"][0]
    chosen = next(c for c in segment["candidates"] if c["id"] == segment["chosen"])
    assert Path(chosen["source"]).name == "c_next.mp4"
    seams = {Path(c["source"]).name: c["seams"]["previous"] for c in segment["candidates"]}
    assert max(seams, key=lambda name: seams[name]) == "c_next.mp4" and seams["c_next.mp4"] > 0.8
    report = (tmp_path / "out" / "cut.report.html").read_text()
    assert '<span class="kind">match</span> seam <b>before</b> → <b>after</b>' in report
    assert report.count('alt="before last frame"') == 2 and report.count('alt="after first frame"') == 2

    board.write_text(MATCH.replace("CONTINUITY", "cut"))
    stitch("render", str(board), cwd=tmp_path)
    manifest = json.loads((tmp_path / "out" / "cut.manifest.json").read_text())
    assert not any(c["seams"] for c in manifest["shots"]["after"]["segments"][0]["candidates"])
