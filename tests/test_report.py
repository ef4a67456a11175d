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
from stitchcraft.report.manifest import (
    CandidateRecord,
    FailedRecord,
    Manifest,
    SegmentRecord,
    ShotRecord,
)

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
    # three thumbnails per candidate, and the weak seam's sides: opening's last, street's first
    assert page.count("data:image/jpeg;base64,") == 9 + 2
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


def hosted_manifest() -> dict:
    """A manifest as `Manifest.to_json()` writes it after a render with hosted takes: one
    shot made at Runway (one take fresh, one from the cache, two candidates not made), a
    local shot, the render's totals and a shot moved off Luma."""
    return {
        "title": "Hosted", "output": "/tmp/out.mp4", "seam_threshold": 0.35,
        "shots": {
            "opening": {"engine": "runway", "chosen": "a" * 40, "segments": [{
                "index": 0, "hash": "h1", "chosen": "a" * 40,
                "candidates": [
                    {"id": "a" * 40, "engine": "runway", "seed": 0, "label": "gen4.5 5 s, seed 0",
                     "score": 0.8, "components": {}, "thumbs": [], "cached": False,
                     "provider": "Runway", "job": "task-0a1b", "billed_seconds": 5.0, "cost": 0.6},
                    {"id": "b" * 40, "engine": "runway", "seed": 1, "label": "gen4.5 5 s, seed 1",
                     "score": 0.6, "components": {}, "thumbs": [], "cached": True,
                     "provider": "Runway", "job": "task-9z8y", "billed_seconds": 5.0, "cost": 0.6}],
                "failed": [
                    {"seed": 2, "engine": "runway", "job": "task-77",
                     "reason": "Runway job task-77: SAFETY.INPUT.TEXT: the prompt was flagged by moderation"},
                    {"seed": 3, "engine": "runway", "job": None,
                     "reason": "Runway: poll failed 9 times: HTTP 503 Service Unavailable"}]}]},
            "street": {"engine": "footage", "chosen": "c" * 40, "segments": [{
                "index": 0, "hash": "h2", "chosen": "c" * 40, "failed": [],
                "candidates": [{"id": "c" * 40, "engine": "footage", "seed": 0, "score": 0.7,
                                "components": {}, "thumbs": [], "provider": None, "job": None,
                                "billed_seconds": 0.0, "cost": 0.0}]}]},
        },
        "cost": {"offered": 1.2, "made": 0.6, "billed_seconds": 5.0},
        "fallbacks": [
            {"shot": "opening", "from": "luma", "to": "runway",
             "reason": "set LUMAAI_API_KEY to your Luma API key"},
            {"shot": "opening", "from": "kling", "to": "",
             "reason": "set KLING_ACCESS_KEY and KLING_SECRET_KEY to your Kling API key"}],
    }


def section(page: str, shot: str) -> str:
    """The HTML of one shot's section."""
    found = re.search(rf'<section class="shot"><h2>{shot}<.*?</section>', page, re.S)
    assert found, f"no section for shot {shot}"
    return found.group(0)


def test_report_shows_each_hosted_candidates_provider_job_and_cost():
    page = render_report(hosted_manifest())
    opening = section(page, "opening")
    fresh, cached = re.findall(r'<p class="hosted">(.*?)</p>', opening)
    assert "<b>Runway</b>" in fresh and "<code>task-0a1b</code>" in fresh
    assert "5 s billed" in fresh and "~$0.60" in fresh and "cache" not in fresh
    assert "<code>task-9z8y</code>" in cached and "from the cache, not billed again" in cached
    # a take made on this machine shows no provider line
    assert '<p class="hosted">' not in section(page, "street")


def test_report_shows_failed_and_refused_candidates_with_the_providers_reason():
    page = render_report(hosted_manifest())
    opening = section(page, "opening")
    assert "2 candidates · <span class=\"weak\">2 not made</span>" in opening
    failed = re.search(r'<div class="failed">(.*?)</div>', opening, re.S).group(1)
    refused, broken = re.findall(r"<li>(.*?)</li>", failed, re.S)
    assert "✗ refused" in refused and "seed 2" in refused and "<code>task-77</code>" in refused
    assert "SAFETY.INPUT.TEXT: the prompt was flagged by moderation" in refused
    assert "✗ failed" in broken and "seed 3" in broken and "job" not in broken.split("Runway:")[0]
    assert "HTTP 503 Service Unavailable" in broken
    assert '<div class="failed">' not in section(page, "street")


def test_report_shows_the_renders_hosted_totals_and_fallbacks():
    page = render_report(hosted_manifest())
    panels = dict(re.findall(r'<aside class="panel"><h3>(.*?)</h3>(.*?)</aside>', page, re.S))
    totals = panels["Hosted takes"]
    assert "made by this render: <b class=\"usd\">~$0.60</b> for 5 s billed" in totals
    assert "cached takes included: <b class=\"usd\">~$1.20</b>" in totals
    assert "2 hosted candidates from Runway" in totals and "2 candidates failed or refused" in totals
    moved, refused = re.findall(r"<li>(.*?)</li>", panels["Fallbacks"], re.S)
    assert "shot <b>opening</b>: <b>luma</b> → <b>runway</b>" in moved and "LUMAAI_API_KEY" in moved
    assert "fallback <b>kling</b> could not run either" in refused and "KLING_SECRET_KEY" in refused


def test_report_escapes_what_providers_and_storyboards_say():
    data = hosted_manifest()
    segment = data["shots"]["opening"]["segments"][0]
    segment["failed"][0]["reason"] = 'refused: <script>alert("key")</script>'
    segment["failed"][0]["job"] = "<b>job</b>"
    segment["candidates"][0]["provider"] = "Acme & <i>Co</i>"
    data["fallbacks"][0]["reason"] = '<img src=x onerror="alert(1)">'
    data["fallbacks"][0]["shot"] = "<u>opening</u>"
    page = render_report(data)
    assert "<script" not in page and "<img src=x" not in page
    assert "<b>job</b>" not in page and "<i>Co</i>" not in page and "<u>opening</u>" not in page
    assert "refused: &lt;script&gt;alert(&quot;key&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "<code>&lt;b&gt;job&lt;/b&gt;</code>" in page and "Acme &amp; &lt;i&gt;Co&lt;/i&gt;" in page


def test_a_manifest_without_hosted_fields_reads_as_before():
    old = hosted_manifest()
    del old["cost"], old["fallbacks"]
    for shot in old["shots"].values():
        for segment in shot["segments"]:
            segment.pop("failed", None)
            for candidate in segment["candidates"]:
                for key in ("provider", "job", "billed_seconds", "cost", "cached"):
                    candidate.pop(key, None)
    page = render_report(old)
    assert page.count('<article class="card') == 3 and "2 shots · 3 candidates" in page
    assert 'class="hosted"' not in page and 'class="failed"' not in page
    assert "Hosted takes" not in page and "Fallbacks" not in page
    # a render with no hosted take writes zero totals: no panel either
    local = {**old, "cost": {"offered": 0.0, "made": 0.0, "billed_seconds": 0.0}, "fallbacks": []}
    assert "Hosted takes" not in render_report(local)


def test_report_reads_the_manifest_records_a_render_writes():
    """The report's field names are the manifest's: a `Manifest` written as JSON shows."""
    made = CandidateRecord(id="d" * 40, engine="veo", seed=0, provider="Google Veo",
                           job="models/veo-3.1-generate-preview/operations/op42",
                           billed_seconds=8.0, cost=3.2)
    refused = FailedRecord(seed=1, engine="veo", job="models/veo/operations/op43",
                           reason="Google Veo job op43: withheld by Google's safety filters")
    shot = ShotRecord(engine="veo", kind="prompt", start=0, frames=96, transition_in=0,
                      chosen=made.id, take="", segments=[SegmentRecord(0, "h", made.id, [made], [refused])])
    manifest = Manifest(storyboard="sb.yaml", title="t", quality="final", fps="24", output="o.mp4",
                        cache="", shots={"one": shot}, weak_seams=[], seam_threshold=0.35, drift=[],
                        variants=[], warnings=[], scoring={}, takes_generated=1, takes_reused=0,
                        cost={"offered": 3.2, "made": 3.2, "billed_seconds": 8.0},
                        fallbacks=[{"shot": "one", "from": "kling", "to": "veo", "reason": "no key"}])
    page = render_report(manifest.to_json(), {made.id: []})
    assert "<code>models/veo-3.1-generate-preview/operations/op42</code>" in page
    assert "8 s billed" in page and "~$3.20" in page
    assert "✗ refused" in page and "withheld by Google&#x27;s safety filters" in page
    assert "~$3.20</b> for 8 s billed" in page and "<b>kling</b> → <b>veo</b>" in page


# --- seams --------------------------------------------------------------------------------

RED, BLUE, GREEN, YELLOW, GREY = (220, 30, 30), (30, 40, 220), (30, 200, 60), (230, 220, 40), (128, 128, 128)


def stored_take(store, take_id: str, *, first=(GREY, GREY), last=(GREY, GREY), count: int = 12):
    """A real take in the store, its first and last two frames in the colours given."""
    from stitchcraft.engines.base import Take

    frames = np.full((count, 36, 64, 3), GREY, np.uint8)
    frames[0], frames[1] = first
    frames[-2], frames[-1] = last
    return store.put(take_id, Take(frames, seed=0, label=take_id[:4]), fps=FPS, engine="test", request={})


def candidate(take_id: str, **fields) -> dict:
    return {"id": take_id, "engine": "test", "seed": 0, "score": 0.7, "components": {}, "thumbs": [], **fields}


def shot(take_id: str, continuity: str, **fields) -> dict:
    return {"chosen": take_id, "continuity": continuity,
            "segments": [{"index": 0, "chosen": take_id, "candidates": [candidate(take_id, **fields)]}]}


@pytest.fixture
def seam_manifest(tmp_path):
    """Four shots from real stored takes: a cut into `a`, `b` chained from it and bridging
    into `c`, and `d` matched to `c`; each take's ends in colours of their own."""
    from stitchcraft.store import TakeStore

    store = TakeStore(tmp_path / "cache")
    ids = {name: name * 40 for name in "abcd"}
    stored_take(store, ids["a"], last=(RED, BLUE))
    stored_take(store, ids["b"], first=(GREEN, YELLOW), last=(BLUE, RED))
    stored_take(store, ids["c"], first=(YELLOW, GREEN), last=(GREEN, BLUE))
    stored_take(store, ids["d"], first=(RED, YELLOW))
    return {"title": "Seams", "cache": str(store.root), "seam_threshold": 0.35, "shots": {
        "a": shot(ids["a"], "cut"),
        "b": shot(ids["b"], "bridge", seams={"previous": 0.82, "next": 0.61},
                  components={"stability": 0.9, "seam:previous": 0.82, "seam:next": 0.61,
                              "seam_lpips:next": 0.58}),
        "c": shot(ids["c"], "cut"),
        "d": shot(ids["d"], "match", seams={"previous": 0.3},
                  components={"stability": 0.9, "seam:previous": 0.3}),
    }}


def seam_blocks(page: str) -> list[str]:
    return re.findall(r'<div class="seam .*?</div></div>', page, re.S)


def colours(block: str) -> list[tuple[int, ...]]:
    """The mean colour of every image in a block, in order."""
    import base64
    from io import BytesIO

    from PIL import Image

    found = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', block)
    return [tuple(int(v) for v in np.asarray(Image.open(BytesIO(base64.b64decode(b)))).reshape(-1, 3).mean(axis=0))
            for b in found]


def near(found: list[tuple[int, ...]], expected: list[tuple[int, int, int]]) -> bool:
    return len(found) == len(expected) and all(max(abs(a - b) for a, b in zip(f, e, strict=True)) < 20
                                               for f, e in zip(found, expected, strict=True))


def test_report_shows_each_judged_join_with_the_frames_either_side(seam_manifest):
    page = render_report(seam_manifest)
    chain, bridge, match = seam_blocks(page)  # the cut into a shows nothing
    assert '<span class="kind">chain</span> seam <b>a</b> → <b>b</b>' in chain and "0.820" in chain
    assert '<span class="chip">seam 0.82</span>' in chain
    assert near(colours(chain), [RED, BLUE, GREEN, YELLOW])  # a's last two, then b's first two
    # a bridge's join is judged from the bridge's side: b's "next" seam, into c
    assert '<span class="kind">bridge</span> seam <b>b</b> → <b>c</b>' in bridge and "0.610" in bridge
    assert '<span class="chip">seam 0.61</span>' in bridge and '<span class="chip">seam_lpips 0.58</span>' in bridge
    assert near(colours(bridge), [BLUE, RED, YELLOW, GREEN])
    assert '<span class="kind">match</span> seam <b>c</b> → <b>d</b>' in match
    assert "below threshold 0.35" in match and 'class="seam bad"' in match
    assert near(colours(match), [GREEN, BLUE, RED, YELLOW])
    assert "last frames of <b>c</b>" in match and "first frames of <b>d</b> (chosen)" in match


def test_a_seam_without_stored_takes_shows_the_takes_thumbnails_or_none(seam_manifest, tmp_path):
    from stitchcraft.report import encode_jpeg

    del seam_manifest["cache"]
    given = {"a" * 40: [encode_jpeg(np.full((36, 64, 3), c, np.uint8)) for c in (GREY, GREY, RED)],
             "b" * 40: [encode_jpeg(np.full((36, 64, 3), c, np.uint8)) for c in (GREEN, GREY, GREY)]}
    chain, bridge, match = seam_blocks(render_report(seam_manifest, given))
    assert near(colours(chain), [RED, GREEN])  # a's last thumbnail, b's first
    assert "–" in bridge and near(colours(bridge), [GREY])  # b's last; c has no thumbnails
    assert '<div class="seamframes">' not in match and "0.300" in match


def test_seam_text_is_escaped(seam_manifest):
    shots = seam_manifest["shots"]
    shots["<i>d</i>"] = shots.pop("d")
    shots["<i>d</i>"]["segments"][0]["candidates"][0]["components"]["<b>x</b>:previous"] = 0.5
    page = render_report(seam_manifest)
    match = seam_blocks(page)[-1]
    assert "<i>d</i>" not in page and "<b>x</b>" not in page
    assert "&lt;i&gt;d&lt;/i&gt;" in match and "&lt;b&gt;x&lt;/b&gt; 0.50" in match


def test_report_shows_each_characters_likeness_across_shots_and_keyframe_rows():
    def candidate(take, likeness):
        return {"id": take, "score": 0.8, "components": {"identity": likeness},
                "details": {"identity": {"courier": likeness, "courier:faces": 1.0}}}

    data = {"shots": {
        "ride": {"keyframe": {"chosen": "k1", "candidates": [candidate("k1", 0.91), candidate("k2", 0.4)]},
                 "segments": [{"index": 0, "chosen": "a1", "candidates": [candidate("a1", 0.88)]}]},
        "kiosk": {"segments": [{"index": 0, "chosen": "b2", "candidates": [candidate("b1", 0.9),
                                                                          candidate("b2", 0.35)]}]},
    }}
    page = render_report(data, {"k1": [], "k2": [], "a1": [], "b1": [], "b2": []})
    panel = page[page.index("Characters across shots"):]
    panel = panel[:panel.index("</aside>")]
    # the chosen takes' likeness, per shot; a face that wandered is marked
    assert ">ride · keyframe<" in panel and ">kiosk<" in panel
    assert '<td class="good">0.91</td>' in panel and '<td class="good">0.88</td>' in panel
    assert '<td class="bad">0.35</td>' in panel and "0.90" not in panel and "courier:faces" not in panel
    # the keyframe is a row of its own, just before its shot's
    assert page.index("<h2>ride · keyframe<") < page.index("<h2>ride<") < page.index("<h2>kiosk<")
