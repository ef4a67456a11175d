"""`stitch export`: a rendered cut as OTIO, FCP X XML, FCP 7 XML and a CMX 3600 EDL, read
back with the official OpenTimelineIO adapters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from lavfi import make_image, make_video

from stitchcraft.media import probe, read_frames
from stitchcraft.report.manifest import CandidateRecord, SegmentRecord, ShotRecord

otio = pytest.importorskip("opentimelineio")

STORYBOARD = """
version: 1
title: Export
output: {fps: 24, size: 320x180, path: out/cut.mp4, preset: ultrafast}
defaults: {candidates: 2, transition: {type: dissolve, duration: 0.25}, seed: 3}
ending: {type: fade, duration: 0.25}
variants:
  - name: square
    output: {size: 180x180}
shots:
  - id: opening
    title: {text: "Hello", animation: none}
    duration: 1
    transition: {type: fade, duration: 0.25}
  - id: still
    image: still.png
    camera: push-in
    duration: 1.5
    text: {content: "Out now", start: 0.5, duration: 0.5}
  - id: real
    source: clips
    duration: 1
    transition: {type: cut}
  - id: still2
    image: still.png
    duration: 1
    text: "The end"
"""


def stitch(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stitchcraft", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def export(project: Path, fmt: str, *extra: str) -> dict:
    done = stitch("export", "board.yaml", "--format", fmt, "--json", *extra, cwd=project)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """A rendered project: a title, two stills and footage, dissolves, fades, captions."""
    project = tmp_path_factory.mktemp("export")
    make_image(project / "still.png", size="480x270", source="mandelbrot")
    (project / "clips").mkdir()
    make_video(project / "clips" / "a.mp4", seconds=2, size="320x180", source="testsrc2")
    make_video(project / "clips" / "b.mov", seconds=1.5, size="352x288", source="smptebars", audio="mono")
    (project / "board.yaml").write_text(STORYBOARD)
    done = stitch("render", "board.yaml", cwd=project)
    assert done.returncode == 0, done.stderr
    return project


def manifest_of(project: Path) -> dict:
    return json.loads((project / "out" / "cut.manifest.json").read_text())


def shot_clips(timeline) -> list:
    return [c for c in timeline.find_clips()
            if not isinstance(c.media_reference, otio.schema.GeneratorReference)]


def local_path(url: str, base: Path) -> Path:
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else base / unquote(url)


def test_otio_keeps_planned_frames_transitions_captions_and_alternates(rendered):
    result = export(rendered, "otio")
    manifest = manifest_of(rendered)
    path = Path(result["path"])
    assert path == rendered / "out" / "cut.otio"
    timeline = otio.adapters.read_from_file(str(path))
    track = timeline.video_tracks()[0]
    cut_frames = probe(rendered / "out" / "cut.mp4", count_frames=True).frames
    assert timeline.duration().to_frames() == cut_frames == 96
    clips = shot_clips(timeline)
    assert [c.name for c in clips] == list(manifest["shots"])
    for clip in clips:
        shot = manifest["shots"][clip.name]
        # the frames the shot fills, its transitions' handles included, and where it starts
        assert clip.visible_range().duration.to_frames() == shot["frames"]
        assert track.range_of_child(clip).start_time.to_frames() == shot["start"]
    # the fade in, the two dissolves (6 frames each, starting where their shot starts), the fade out
    joins = [(t.name, t.in_offset.to_frames(), t.out_offset.to_frames())
             for t in track if isinstance(t, otio.schema.Transition)]
    assert joins == [("fade in from black", 0, 6), ("dissolve", 0, 6), ("dissolve", 0, 6),
                     ("fade out to black", 6, 0)]
    # captions: 'Out now' 0.5 s into 'still' (frame 18) for 0.5 s; 'The end' over all of 'still2'
    markers = {m.name: (c.name, m.marked_range) for c in clips for m in c.markers}
    assert set(markers) == {"Out now", "The end"}
    still, still2 = (next(c for c in clips if c.name == n) for n in ("still", "still2"))
    assert markers["Out now"][1].start_time.to_frames() - still.source_range.start_time.to_frames() == 12
    assert markers["Out now"][1].duration.to_frames() == 12
    assert markers["The end"][1].duration.to_frames() == 24
    # alternates: every candidate is a media reference, the active one the chosen take
    for clip in clips:
        shot = manifest["shots"][clip.name]
        candidates = shot["segments"][0]["candidates"]
        references = clip.media_references()
        assert set(references) == {f"take-{n}" for n in range(len(candidates))}
        active = references[clip.active_media_reference_key].metadata["stitchcraft"]["take"]
        assert active == shot["chosen"]
        facts = clip.metadata["stitchcraft"]["segments"][0]["candidates"]
        assert [(f["id"], f["seed"], f["score"]) for f in facts] == \
            [(c["id"], c["seed"], c["score"] if c["scored"] else None) for c in candidates]
        for reference in references.values():
            assert local_path(reference.target_url, path.parent).is_file()
    assert len(still.media_references()) == 2


def test_otio_points_at_the_frames_the_cut_shows(rendered):
    path = Path(export(rendered, "otio")["path"])
    manifest = manifest_of(rendered)
    clips = {c.name: c for c in shot_clips(otio.adapters.read_from_file(str(path)))}
    # footage: its in-point into the user's clip; a still: the stored take from frame 0
    for name, offset in (("real", 10), ("still", 14)):
        clip, start = clips[name], manifest["shots"][name]["start"]
        source = local_path(clip.media_reference.target_url, path.parent)
        shown = read_frames(rendered / "out" / "cut.mp4", start + offset, 1)[0].astype(float)
        frame = read_frames(source, clip.source_range.start_time.to_frames() + offset, 1,
                            size=(320, 180))[0].astype(float)
        assert np.abs(shown - frame).mean() < 3, name  # one frame off is about 5 here
        wrong = read_frames(source, clip.source_range.start_time.to_frames() + offset + 8, 1,
                            size=(320, 180))[0].astype(float)
        if name == "real":  # a moving picture: eight frames off is far off
            assert np.abs(shown - wrong).mean() > 3 * np.abs(shown - frame).mean()
    assert clips["real"].source_range.start_time.to_frames() > 0


def test_otio_opens_after_moving_its_folder(rendered, tmp_path):
    result = export(rendered, "otio", "--output", str(rendered / "handoff" / "edit.otio"))
    folder = Path(result["media"])
    assert folder == rendered / "handoff" / "edit_media"
    assert result["files"] == len(list(folder.iterdir())) >= 6
    moved = Path(shutil.move(str(rendered / "handoff"), str(tmp_path / "elsewhere")))
    timeline = otio.adapters.read_from_file(str(moved / "edit.otio"))
    for clip in shot_clips(timeline):
        for reference in clip.media_references().values():
            assert not reference.target_url.startswith(("/", "file:"))
            assert (moved / reference.target_url).is_file()


def test_edl_reads_back_with_events_and_record_timecodes(rendered):
    result = export(rendered, "edl")
    manifest = manifest_of(rendered)
    text = Path(result["path"]).read_text()
    events = {line.split()[0] for line in text.splitlines() if line[:3].isdigit()}
    # black, then opening (fading in from it), still, real, still2, black (the fade out)
    assert len(events) == 6
    timeline = otio.adapters.read_from_string(text, "cmx_3600")
    track = timeline.video_tracks()[0]
    assert timeline.duration().to_frames() == 96
    clips = shot_clips(timeline)
    assert [c.name for c in clips] == list(manifest["shots"])
    for clip in clips:
        shot = manifest["shots"][clip.name]
        assert track.range_of_child(clip).start_time.to_frames() == shot["start"]
        assert clip.visible_range().duration.to_frames() == shot["frames"]
    assert clips[2].source_range.start_time.to_frames() > 0  # footage keeps its in-point
    assert "00:00:00:18 00:00:02:06" in text  # 'still': record in and out
    assert sum(isinstance(t, otio.schema.Transition) for t in track) == 4


def test_fcp7_reads_back_clips_transitions_and_media(rendered):
    result = export(rendered, "fcp7")
    manifest = manifest_of(rendered)
    assert Path(result["path"]).suffix == ".xml"
    timeline = otio.adapters.read_from_file(result["path"], adapter_name="fcp_xml")
    track = timeline.video_tracks()[0]
    clips = shot_clips(timeline)
    assert len(clips) == 4
    assert timeline.duration().to_frames() == 96
    for clip in clips:
        shot = manifest["shots"][clip.name]
        assert clip.visible_range().duration.to_frames() == shot["frames"]
        assert track.range_of_child(clip).start_time.to_frames() == shot["start"]
        assert local_path(clip.media_reference.target_url, Path(result["path"]).parent).is_file()
    assert sum(isinstance(t, otio.schema.Transition) for t in track) == 4
    assert sum(len(c.markers) for c in clips) == 2


def test_fcpx_reads_back_clips_without_transitions(rendered):
    result = export(rendered, "fcpxml")
    timeline = otio.adapters.read_from_file(result["path"], adapter_name="fcpx_xml")
    clips = shot_clips(timeline)
    assert [c.name for c in clips] == list(manifest_of(rendered)["shots"])
    assert timeline.duration().to_frames() == 96
    assert all(local_path(c.media_reference.target_url, Path("/")).is_file() for c in clips)
    assert result["notes"] and "no transitions" in result["notes"][0]


def test_variant_exports_its_own_cut(rendered):
    result = export(rendered, "otio", "--variant", "square")
    assert Path(result["path"]).name == "cut-square.otio"
    timeline = otio.adapters.read_from_file(result["path"])
    assert timeline.metadata["stitchcraft"]["variant"] == "square"
    assert timeline.duration().to_frames() == 96


def test_export_refuses_a_storyboard_retimed_since_its_render(rendered):
    board = rendered / "board.yaml"
    try:
        board.write_text(STORYBOARD.replace("duration: 1.5", "duration: 2"))
        done = stitch("export", "board.yaml", "--output", "stale.otio", cwd=rendered)
        assert done.returncode == 2 and "has changed since its last render" in done.stderr
        assert not (rendered / "stale.otio").exists()
    finally:
        board.write_text(STORYBOARD)


def test_export_refuses_without_render_unknown_format_or_otio(tmp_path):
    (tmp_path / "board.yaml").write_text(STORYBOARD.replace("source: clips", "image: still.png"))
    make_image(tmp_path / "still.png", size="64x36")
    done = stitch("export", "board.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "stitch render" in done.stderr
    done = stitch("export", "board.yaml", "--format", "aaf", cwd=tmp_path)
    assert done.returncode == 2 and "otio, fcpxml, fcp7, edl" in done.stderr
    blocked = tmp_path / "blocked" / "opentimelineio"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed')\n")
    done = stitch("export", "board.yaml", cwd=tmp_path, env={"PYTHONPATH": str(blocked.parent)})
    assert done.returncode == 2 and "pip install 'stitchcraft[export]'" in done.stderr
    assert "Traceback" not in done.stderr


# --- the model, without a render ----------------------------------------------------------

def test_timeline_model_keeps_frame_counts_exactly(tmp_path):
    from stitchcraft.report.export import Cut, CutShot, TakeMedia, build_timeline

    files = [tmp_path / f"{n}.mp4" for n in range(3)]
    frames, transitions = [25, 40, 31], [0, 7, 5]  # odd lengths: no halving anywhere
    shots, start = [], 0
    for n, (count, t) in enumerate(zip(frames, transitions, strict=True)):
        start -= t
        media = TakeMedia(f"{n}" * 64, files[n], start=3 * n, available=3 * n + count)
        record = ShotRecord("stills", "image", start, count, t, media.take, str(files[n]),
                            [SegmentRecord(0, "h", media.take, [CandidateRecord(media.take, "stills", n)])])
        shots.append(CutShot(record, f"s{n}", "dissolve" if t else "cut", "black", media, {0: media},
                             (), None))
        start += count
    cut = Cut("t", Fraction(30000, 1001), tuple(shots), 4, "black", 9, "white", start, {})
    timeline = build_timeline(cut, {f.resolve(): f.name for f in files})
    track = timeline.video_tracks()[0]
    assert track.duration().to_frames() == sum(frames) - sum(transitions) == start
    for shot, clip in zip(shots, timeline.find_clips(), strict=True):
        assert clip.visible_range().duration.to_frames() == shot.record.frames
        assert track.range_of_child(clip).start_time.to_frames() == shot.record.start
        assert clip.source_range.start_time.to_frames() == shot.shown.start
    assert abs(track.duration().rate - 30000 / 1001) < 1e-9


def test_place_media_links_once_and_numbers_clashing_names(tmp_path):
    from stitchcraft.report.export import place_media

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    one.write_bytes(b"one")
    two.write_bytes(b"two!")
    folder = tmp_path / "out_media"
    placed, linked = place_media([(one, "clip.mp4"), (two, "clip.mp4"), (one, "clip.mp4")], folder)
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mp4", "clip_2.mp4"]
    assert placed[one.resolve()].read_bytes() == b"one" and placed[two.resolve()].read_bytes() == b"two!"
    assert linked == 2 and placed[one.resolve()].stat().st_ino == one.stat().st_ino
    again, _ = place_media([(one, "clip.mp4"), (two, "clip.mp4")], folder)
    assert again == placed and len(list(folder.iterdir())) == 2
