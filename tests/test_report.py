"""report.html: self-contained, and its thumbnails really show in a browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from stitchcraft.media import write_video
from stitchcraft.report import make_thumbnails, render_report, write_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
MAGENTA = (230, 20, 210)
CYAN = (20, 200, 230)
FPS = Fraction(24)


def solid_video(path: Path, colour: tuple[int, int, int], *, count: int = 12) -> Path:
    frames = np.empty((count, 180, 320, 3), np.uint8)
    frames[:] = colour
    frames[-1, :, :160] = (250, 250, 250)  # the last frame differs, so "last" is its own thumb
    return write_video(frames, path, FPS, crf=14)


@pytest.fixture
def report_data(tmp_path):
    chosen = solid_video(tmp_path / "magenta.mp4", MAGENTA)
    other = solid_video(tmp_path / "grey.mp4", (120, 120, 120))
    second = solid_video(tmp_path / "cyan.mp4", CYAN)
    return {
        "title": "Report <test>",
        "output": str(tmp_path / "out.mp4"),
        "seam_threshold": 0.35,
        "shots": {
            "opening": {"chosen": "a" * 40, "segments": [{"index": 0, "chosen": "a" * 40, "candidates": [
                {"id": "a" * 40, "engine": "footage", "seed": 1, "label": "magenta", "path": str(chosen),
                 "score": 0.91, "components": {"stability": 0.95, "prompt": 0.8},
                 "details": {"stability": {"flashes": 0, "ssim_mean": 0.97}}},
                {"id": "b" * 40, "engine": "footage", "seed": 2, "label": "grey", "path": str(other),
                 "score": 0.42, "components": {"stability": 0.4, "prompt": 0.45}},
            ]}]},
            "street": {"chosen": "c" * 40, "segments": [{"index": 0, "chosen": "c" * 40, "candidates": [
                {"id": "c" * 40, "engine": "footage", "seed": 3, "label": "cyan", "path": str(second),
                 "score": 0.5, "components": {"stability": 0.9, "seam:previous": 0.2},
                 "seams": {"previous": 0.2},
                 "details": {"drift": {"delta_e": 12.5, "saturation_change": 0.1, "contrast_change": 0.0}}},
            ]}]},
        },
        "weak_seams": [{"shot": "street", "after": "opening", "score": 0.2}],
        "warnings": ["CLIP scorers prompt are off: weights not found"],
        "scoring": {"frames_decoded": 36, "seconds": 0.4, "scorers": {}},
    }


def test_make_thumbnails_first_middle_last(tmp_path):
    video = solid_video(tmp_path / "v.mp4", MAGENTA)
    thumbs = make_thumbnails(video)
    assert len(thumbs) == 3 and all(t[:2] == b"\xff\xd8" for t in thumbs)
    from io import BytesIO

    from PIL import Image

    first, last = (np.asarray(Image.open(BytesIO(t))) for t in (thumbs[0], thumbs[2]))
    assert first.shape == (136, 240, 3)
    assert np.abs(first.reshape(-1, 3).mean(axis=0) - MAGENTA).max() < 12
    assert last[:, :100].mean() > 235  # the last frame's white half


def test_report_is_self_contained(report_data, tmp_path):
    page = render_report(report_data)
    assert "<test>" not in page and "Report &lt;test&gt;" in page
    assert not re.search(r"(src|href)=\"(https?:|//)", page)
    assert "<script" not in page
    assert page.count("data:image/jpeg;base64,") == 9
    assert page.count("✓ chosen") == 2
    assert "below threshold 0.35" in page        # the weak seam is flagged
    assert "<polyline" in page and "12.50" in page  # the drift curve
    assert "CLIP scorers prompt are off" in page
    written = write_report(report_data, tmp_path / "report.html")
    assert written.read_text(encoding="utf-8") == page


def test_report_accepts_list_shape_and_given_thumbnails(tmp_path):
    from stitchcraft.report import encode_jpeg

    thumb = encode_jpeg(np.full((68, 120, 3), 200, np.uint8))
    data = {"title": "t", "shots": [{"id": "one", "chosen": "x", "candidates": [
        {"id": "x", "score": 0.5, "parts": {"seam": 0.5}}]}],
        "drift": [{"shot": "one", "delta_e": 3.0}]}
    page = render_report(data, {"x": [thumb, thumb, thumb]})
    assert page.count("data:image/jpeg;base64,") == 3 and "ΔE 3.00" in page


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_report_thumbnails_show_in_chromium(report_data, tmp_path):
    report = write_report(report_data, tmp_path / "report.html")
    screenshot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--screenshot={screenshot}", "--window-size=1280,2000", report.as_uri()]
    done = subprocess.run(command, capture_output=True, timeout=90, check=False)
    assert screenshot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)

    def area(colour: tuple[int, int, int]) -> int:
        return int((np.abs(pixels - colour).max(axis=2) < 24).sum())

    # Each thumbnail shows at 120 x 68 CSS pixels: the magenta take's two full-colour
    # thumbnails and half of its last, likewise for the cyan take.
    assert area(MAGENTA) > 2 * 120 * 60
    assert area(CYAN) > 2 * 120 * 60
    assert area((31, 138, 76)) > 500  # the chosen take's green outline


def test_a_lone_candidate_is_shown_as_not_scored():
    data = {"title": "t", "shots": {"only": {"chosen": "a1", "segments": [{"index": 0, "chosen": "a1", "candidates": [
        {"id": "a1", "engine": "title", "seed": 0, "score": 0.5, "scored": False, "components": {},
         "thumbs": []}]}]}}}
    page = render_report(data, {"a1": []})
    assert "not scored" in page and "0.500" not in page
