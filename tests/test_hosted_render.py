"""Hosted engines end to end: `stitch render` of a storyboard mixing Runway, Kling and
footage, each provider a protocol fake over real HTTP (tests/fakes/), the render a
`stitch` subprocess: chains across providers, moderation refusals, cost, a render killed
while its jobs run and resumed without paying twice, `--max-cost` and fallback engines.

Tested against protocol fakes, not the live services (no network here).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes.kling import FakeKling
from fakes.runway import RunwayService
from lavfi import make_video

from stitchcraft.media import probe

STITCH = str(Path(sys.executable).with_name("stitch"))
RUNWAY_KEY = "rw-e2e-key-5c0e91d2a7b64f38"
KLING_ACCESS = "ak-e2e-3f9d2c7b1e0a5846"
KLING_SECRET = "sk-e2e-8e1f2a3b4c5d6e7f8091a2b3c4d5e6f7"
KEYS = (RUNWAY_KEY, KLING_ACCESS, KLING_SECRET)
# Every variable a hosted engine reads its key (or endpoint) from: the tests set their own.
KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "RUNWAYML_API_SECRET", "RUNWAYML_BASE_URL",
            "LUMAAI_API_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY", "FAL_KEY",
            "REPLICATE_API_TOKEN")
RUNWAY_PRICE, KLING_PRICE = 0.12, 0.07  # gen4.5 and kling-v2-5-turbo (pro), USD per second
FPS = 24


@dataclass
class Fakes:
    runway: RunwayService
    kling: FakeKling

    @property
    def submissions(self) -> tuple[int, int]:
        return self.runway.submissions, self.kling.submissions

    def slow(self, seconds: float) -> None:
        """Jobs accepted from now on run `seconds` before they finish."""
        self.runway.running = self.kling.running = seconds


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[Fakes]:
    runway = RunwayService(tmp_path / "fake-runway", keys=(RUNWAY_KEY,), queued=0.05, running=0.15)
    kling = FakeKling(tmp_path / "fake-kling", credentials={KLING_ACCESS: KLING_SECRET},
                      queued=0.05, running=0.15)
    runway.start()
    kling.start()
    try:
        yield Fakes(runway, kling)
    finally:
        runway.stop()
        kling.stop()


def environment(**keys: str) -> dict[str, str]:
    """This process's environment without any provider key, plus `keys`."""
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    return {**env, "STITCHCRAFT_DEBUG": "1", **keys}


ALL_KEYS = {"RUNWAYML_API_SECRET": RUNWAY_KEY, "KLING_ACCESS_KEY": KLING_ACCESS,
            "KLING_SECRET_KEY": KLING_SECRET}


def storyboard(tmp_path: Path, fakes: Fakes, shots: str, *, engines: str = "") -> Path:
    path = tmp_path / "board.yaml"
    path.write_text(f"""\
version: 1
title: hosted end to end
output: {{path: out/cut.mp4, size: 320x180, fps: {FPS}, preset: ultrafast}}
engines:
  runway: {{base_url: "{fakes.runway.base_url}", poll_interval: 0.05}}
  kling: {{base_url: "{fakes.kling.base_url}", poll_interval: 0.05}}
{engines}shots:
{shots}""")
    return path


def stitch(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([STITCH, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    return done


def start(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """A render in its own process group (so the test can kill it and its children)."""
    return subprocess.Popen([STITCH, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def manifest(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "out" / "cut.manifest.json").read_text())


def candidates(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for shot in found["shots"].values() for segment in shot["segments"]
            for c in segment["candidates"]]


def frames(tmp_path: Path) -> int:
    counted = probe(tmp_path / "out" / "cut.mp4", count_frames=True).frames
    assert counted is not None
    return counted


def tail(tmp_path: Path, take_id: str) -> np.ndarray:
    """The last frame of a stored take, as the take store keeps it for chaining."""
    [path] = list((tmp_path / ".stitchcraft" / "cache").rglob(f"{take_id}/tail.npy"))
    return np.load(path)[-1]


def png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    entries = []
    for path in (tmp_path / ".stitchcraft" / "cache" / "jobs").glob("*.json"):
        try:
            entries.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # being replaced this instant
            pass
    return entries


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str,
             timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"the render ended (exit {process.returncode}) before {what}:\n"
                                 f"{err[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def assert_no_keys(tmp_path: Path, *outputs: str) -> None:
    for text in outputs:
        for key in KEYS:
            assert key not in text
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_relative_to(tmp_path / "fake-runway") \
                and not path.is_relative_to(tmp_path / "fake-kling"):
            data = path.read_bytes()
            for key in KEYS:
                assert key.encode() not in data, path


# -- 1. the mixed render ----------------------------------------------------------------------

MIXED = """\
  - {id: a, prompt: "a harbour at dawn", duration: 1, engine: runway, candidates: 2}
  - {id: b, prompt: "the boats leave", duration: 1.5, engine: kling, candidates: 2,
     continuity: chain}
  - {id: c, source: clip.mp4, duration: 1}
  - {id: d, prompt: "gulls over the pier", duration: 1, engine: kling, candidates: 2}
  - {id: e, prompt: "the pier at night", duration: 1, engine: runway, candidates: 2,
     continuity: chain}
"""
MIXED_FRAMES = 24 + 36 + 24 + 24 + 24


def test_mixed_render_chains_across_providers_reports_refusals_and_costs(
        tmp_path: Path, fakes: Fakes) -> None:
    make_video(tmp_path / "clip.mp4", seconds=2, size="320x180", audio=None)
    fakes.runway.flagged_seeds = {1}  # shot a's second candidate fails moderation
    board = storyboard(tmp_path, fakes, MIXED)
    done = stitch("render", str(board), "--json", cwd=tmp_path, env=environment(**ALL_KEYS))
    assert done.returncode == 0, done.stderr[-4000:]
    assert frames(tmp_path) == MIXED_FRAMES
    assert fakes.submissions == (4, 4)

    found = manifest(tmp_path)
    shots = found["shots"]
    assert {k: s["engine"] for k, s in shots.items()} == {
        "a": "runway", "b": "kling", "c": "footage", "d": "kling", "e": "runway"}
    kept = {shot: [c["seed"] for seg in s["segments"] for c in seg["candidates"]]
            for shot, s in shots.items() if shot != "c"}
    assert kept == {"a": [0], "b": [1000, 1001], "d": [3000, 3001], "e": [4000, 4001]}

    # The refused candidate is reported with the provider's reason, not offered.
    [refused] = shots["a"]["segments"][0]["failed"]
    assert refused["seed"] == 1 and refused["engine"] == "runway"
    assert "SAFETY.OUTPUT.VIDEO" in refused["reason"]
    assert refused["job"] in fakes.runway.jobs
    assert all(not seg["failed"] for shot in "bcde" for seg in shots[shot]["segments"])
    report = (tmp_path / "out" / "cut.report.html").read_text()
    assert shots["a"]["chosen"][:12] in report
    assert "SAFETY.OUTPUT.VIDEO" in report, "the report does not show the refused candidate"

    # Each hosted candidate is billed at its engine's price for the duration it was made
    # at; the manifest's totals are the sum over the candidates.
    hosted = [c for c in candidates(found) if c["engine"] != "footage"]
    for candidate in hosted:
        price, billed = {"runway": (RUNWAY_PRICE, 2.0), "kling": (KLING_PRICE, 5.0)}[candidate["engine"]]
        assert candidate["billed_seconds"] == billed, candidate
        assert candidate["cost"] == pytest.approx(price * billed), candidate
        assert not candidate["cached"]
    assert found["cost"]["offered"] == pytest.approx(sum(c["cost"] for c in candidates(found)))
    assert found["cost"]["made"] == pytest.approx(found["cost"]["offered"])
    assert found["cost"]["offered"] == pytest.approx(3 * 2 * RUNWAY_PRICE + 4 * 5 * KLING_PRICE)
    assert found["cost"]["billed_seconds"] == pytest.approx(sum(c["billed_seconds"] for c in hosted))

    # b (Kling) started from a's chosen Runway take's last frame, e (Runway) from d's
    # chosen Kling take's: losslessly, as each provider takes an image (Kling's 300 px
    # minimum doubles every pixel; Runway gets the frame as it is).
    chained_kling = [j for j in fakes.kling.jobs.values() if j.first_frame is not None]
    assert len(chained_kling) == 2
    a_last = tail(tmp_path, shots["a"]["chosen"])
    for job in chained_kling:
        sent = png(job.first_frame)
        assert sent.shape == (360, 640, 3)
        np.testing.assert_array_equal(sent[::2, ::2], a_last)
        np.testing.assert_array_equal(sent[1::2, 1::2], a_last)
    chained_runway = [body for endpoint, body in fakes.runway.bodies if endpoint == "image_to_video"]
    assert len(chained_runway) == 2
    d_last = tail(tmp_path, shots["d"]["chosen"])
    [d_other] = [c["id"] for c in shots["d"]["segments"][0]["candidates"]
                 if c["id"] != shots["d"]["chosen"]]
    assert not np.array_equal(tail(tmp_path, d_other), d_last)  # so the check below can fail
    for body in chained_runway:
        [image] = body["promptImage"]
        assert image["position"] == "first"
        head, _, payload = image["uri"].partition(",")
        assert head == "data:image/png;base64"
        np.testing.assert_array_equal(png(base64.b64decode(payload)), d_last)

    assert_no_keys(tmp_path, done.stdout, done.stderr)

    # Rendered again, nothing is left to pay for: every take is stored (the chained ones
    # too) and the refused one stays refused until --resubmit. The plan says so, and a
    # budget of nothing is enough.
    env = environment(**ALL_KEYS)
    planned = stitch("plan", str(board), "--json", cwd=tmp_path, env=env)
    assert planned.returncode == 0, planned.stderr[-3000:]
    left = json.loads(planned.stdout)["hosted"]
    assert left["usd"] == 0 and [e["takes"] for e in left["engines"]] == [0, 0], \
        f"stitch plan prices takes a render of this storyboard will not submit: {left}"
    # --resubmit would submit the refused take again: priced, and refused over budget
    # without touching the journal (the next plain render still leaves it alone).
    resubmit = stitch("render", str(board), "--resubmit", "--max-cost", "0", cwd=tmp_path, env=env)
    assert resubmit.returncode == 2, resubmit.stderr[-3000:]
    assert f"${2 * RUNWAY_PRICE:.2f}" in resubmit.stderr
    assert [e["state"] for e in journal(tmp_path)] == ["failed"], \
        "a render refused over budget cleared the journal's failed entries"
    again = stitch("render", str(board), "--json", "--max-cost", "0", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-4000:]
    assert json.loads(again.stdout)["takes_generated"] == 0
    assert fakes.submissions == (4, 4)
    assert frames(tmp_path) == MIXED_FRAMES
    assert manifest(tmp_path)["cost"]["made"] == 0


# -- 2, 3. a render stopped while its jobs run, then resumed ------------------------------------

INDEPENDENT = """\
  - {id: a, prompt: "a harbour at dawn", duration: 1, engine: runway, candidates: 2}
  - {id: b, prompt: "gulls over the pier", duration: 1, engine: kling, candidates: 2}
"""


def submitted_all(tmp_path: Path, fakes: Fakes, count: int) -> Callable[[], bool]:
    """Both fakes accepted `count` jobs in all and the journal holds each one's job id."""
    def check() -> bool:
        entries = journal(tmp_path)
        return sum(fakes.submissions) == count and len(entries) == count and \
            all(e.get("state") == "submitted" and e.get("job") for e in entries)
    return check


def resume_submits_nothing(tmp_path: Path, fakes: Fakes, board: Path, jobs: set[str]) -> None:
    env = environment(**ALL_KEYS)
    # The jobs in flight are paid for already: collecting them costs nothing more.
    again = stitch("render", str(board), "--json", "--max-cost", "0", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-4000:]
    assert fakes.submissions == (2, 2), "the resumed render submitted again a take it had submitted"
    assert frames(tmp_path) == 48
    found = manifest(tmp_path)
    assert {c["job"].rsplit("/", 1)[-1] for c in candidates(found)} == jobs
    assert found["cost"]["made"] == pytest.approx(2 * 2 * RUNWAY_PRICE + 2 * 5 * KLING_PRICE)
    assert journal(tmp_path) == []  # every job collected

    third = stitch("render", str(board), "--json", cwd=tmp_path, env=env)
    assert third.returncode == 0, third.stderr[-4000:]
    assert json.loads(third.stdout)["takes_generated"] == 0
    assert fakes.submissions == (2, 2)
    assert manifest(tmp_path)["cost"]["made"] == 0


def test_sigkill_while_polling_then_resume_pays_nothing_twice(tmp_path: Path, fakes: Fakes) -> None:
    fakes.slow(3.0)
    board = storyboard(tmp_path, fakes, INDEPENDENT)
    render = start("render", str(board), cwd=tmp_path, env=environment(**ALL_KEYS))
    try:
        wait_for(submitted_all(tmp_path, fakes, 4), render, "all 4 jobs were submitted")
    finally:
        os.killpg(render.pid, signal.SIGKILL)
        render.communicate()
    assert render.returncode == -signal.SIGKILL
    assert not (tmp_path / "out" / "cut.mp4").exists()
    jobs = set(fakes.runway.jobs) | set(fakes.kling.jobs)
    assert {e["job"].rsplit("/", 1)[-1] for e in journal(tmp_path)} == jobs
    resume_submits_nothing(tmp_path, fakes, board, jobs)


def test_ctrl_c_while_polling_says_how_to_resume(tmp_path: Path, fakes: Fakes) -> None:
    fakes.slow(3.0)
    board = storyboard(tmp_path, fakes, INDEPENDENT)
    render = start("render", str(board), cwd=tmp_path, env=environment(**ALL_KEYS))
    try:
        wait_for(submitted_all(tmp_path, fakes, 4), render, "all 4 jobs were submitted")
        os.killpg(render.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        _, err = render.communicate(timeout=30)
    finally:
        if render.poll() is None:
            os.killpg(render.pid, signal.SIGKILL)
            render.communicate()
    assert render.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert "4 hosted job(s) are still running" in err, err[-3000:]
    assert "2 at Kling" in err and "2 at Runway" in err
    assert "Run the same command again" in err
    assert fakes.runway.deletes == []  # not cancelled: they are collected on the resume
    jobs = set(fakes.runway.jobs) | set(fakes.kling.jobs)
    resume_submits_nothing(tmp_path, fakes, board, jobs)


# -- 4. cost before the render ----------------------------------------------------------------

CHAINED = """\
  - {id: a, prompt: "a harbour at dawn", duration: 1, engine: runway, candidates: 2}
  - {id: b, prompt: "the boats leave", duration: 1.5, engine: kling, candidates: 2,
     continuity: chain}
  - {id: c, prompt: "gulls over the pier", duration: 1, engine: kling, candidates: 3}
"""


def test_plan_prices_hosted_takes_and_max_cost_refuses_before_submitting(
        tmp_path: Path, fakes: Fakes) -> None:
    from stitchcraft.engines.hosted.kling import KlingEngine
    from stitchcraft.engines.hosted.runway import RunwayEngine

    board = storyboard(tmp_path, fakes, CHAINED)
    env = environment(**ALL_KEYS)
    runway_s = RunwayEngine.fit_duration("gen4.5", 1.0)
    kling_s = KlingEngine.fit_duration("kling-v2-5-turbo", 1.5)
    assert (runway_s, kling_s) == (2.0, 5.0)
    assert RunwayEngine.price_per_second(None) == RUNWAY_PRICE
    assert KlingEngine.price_per_second(None) == KLING_PRICE
    for beam in (1, 2):
        # The chained shot b is made once per partial cut the beam keeps.
        planned = stitch("plan", str(board), "--json", "--beam", str(beam), cwd=tmp_path, env=env)
        assert planned.returncode == 0, planned.stderr[-3000:]
        hosted = json.loads(planned.stdout)["hosted"]
        engines = {e["engine"]: e for e in hosted["engines"]}
        assert hosted["beam"] == beam
        kling_takes = 2 * beam + 3
        assert engines["runway"]["takes"] == 2 and engines["kling"]["takes"] == kling_takes
        assert engines["runway"]["seconds"] == 2 * runway_s
        assert engines["kling"]["seconds"] == kling_takes * kling_s
        assert engines["runway"]["usd"] == pytest.approx(RUNWAY_PRICE * runway_s * 2)
        assert engines["kling"]["usd"] == pytest.approx(KLING_PRICE * kling_s * kling_takes)
        assert hosted["usd"] == pytest.approx(engines["runway"]["usd"] + engines["kling"]["usd"])
        estimate = hosted["usd"]

    budget = estimate - 0.01
    refused = stitch("render", str(board), "--beam", "2", "--max-cost", f"{budget:.2f}",
                     cwd=tmp_path, env=env)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"${estimate:.2f}" in refused.stderr and "--max-cost" in refused.stderr
    assert fakes.runway.requests == [] and fakes.kling.requests == []
    assert fakes.submissions == (0, 0)
    assert not (tmp_path / "out" / "cut.mp4").exists()


# -- 5. fallback engines ----------------------------------------------------------------------

def test_an_engine_without_its_key_falls_back(tmp_path: Path, fakes: Fakes) -> None:
    # a names its fallback; b (chained) and c take the veo settings' one.
    board = storyboard(tmp_path, fakes, """\
  - {id: a, prompt: "a harbour at dawn", duration: 1, engine: veo, candidates: 2,
     fallback: [runway]}
  - {id: b, prompt: "the boats leave", duration: 1, engine: veo, candidates: 2,
     continuity: chain}
  - {id: c, prompt: "gulls over the pier", duration: 1, engine: kling, candidates: 1}
""", engines="  veo: {fallback: [runway]}\n")
    done = stitch("render", str(board), "--json", cwd=tmp_path,
                  env=environment(RUNWAYML_API_SECRET=RUNWAY_KEY, KLING_ACCESS_KEY=KLING_ACCESS,
                                  KLING_SECRET_KEY=KLING_SECRET))
    assert done.returncode == 0, done.stderr[-4000:]
    assert frames(tmp_path) == 72
    assert fakes.submissions == (4, 1)
    found = manifest(tmp_path)
    assert {k: s["engine"] for k, s in found["shots"].items()} == {
        "a": "runway", "b": "runway", "c": "kling"}
    assert [(f["shot"], f["from"], f["to"]) for f in found["fallbacks"]] == [
        ("a", "veo", "runway"), ("b", "veo", "runway")]
    assert all("GEMINI_API_KEY" in f["reason"] for f in found["fallbacks"])
    assert {c["provider"] for c in candidates(found)} == {"Runway", "Kling"}
    assert done.stderr.count("falling back to 'runway'") == 2
    # b, moved to Runway, still starts from a's chosen take's last frame.
    a_last = tail(tmp_path, found["shots"]["a"]["chosen"])
    chained = [body for endpoint, body in fakes.runway.bodies if endpoint == "image_to_video"]
    assert len(chained) == 2
    for body in chained:
        payload = body["promptImage"][0]["uri"].partition(",")[2]
        np.testing.assert_array_equal(png(base64.b64decode(payload)), a_last)


def test_a_shot_refused_on_every_candidate_falls_back(tmp_path: Path, fakes: Fakes) -> None:
    fakes.runway.flagged_seeds = {1000, 1001}  # both of shot b's candidates at Runway
    board = storyboard(tmp_path, fakes, """\
  - {id: a, prompt: "a harbour at dawn", duration: 1, engine: runway, candidates: 2}
  - {id: b, prompt: "the boats leave", duration: 1, engine: runway, candidates: 2,
     fallback: [kling]}
""")
    done = stitch("render", str(board), "--json", cwd=tmp_path, env=environment(**ALL_KEYS))
    assert done.returncode == 0, done.stderr[-4000:]
    assert frames(tmp_path) == 48
    assert fakes.submissions == (4, 2)
    found = manifest(tmp_path)
    b = found["shots"]["b"]
    assert b["engine"] == "kling"
    assert [c["provider"] for c in b["segments"][0]["candidates"]] == ["Kling", "Kling"]
    [moved] = found["fallbacks"]
    assert moved["shot"] == "b" and moved["from"] == "runway" and moved["to"] == "kling"
    assert "SAFETY.OUTPUT.VIDEO" in moved["reason"]
    # The Runway candidates that were refused stay in the manifest, with their reasons.
    failed = b["segments"][0]["failed"]
    assert sorted((f["engine"], f["seed"]) for f in failed) == [("runway", 1000), ("runway", 1001)], \
        f"the refused Runway candidates of the shot that fell back are not in the manifest: {failed}"
    assert all("SAFETY.OUTPUT.VIDEO" in f["reason"] and f["job"] in fakes.runway.jobs for f in failed)
    # Refused takes were not billed; the Kling ones were.
    assert found["cost"]["offered"] == pytest.approx(2 * 2 * RUNWAY_PRICE + 2 * 5 * KLING_PRICE)


# -- 6. a missing key -------------------------------------------------------------------------

def test_a_missing_key_without_fallback_fails_before_submitting(tmp_path: Path, fakes: Fakes) -> None:
    board = storyboard(tmp_path, fakes, MIXED)
    make_video(tmp_path / "clip.mp4", seconds=2, size="320x180", audio=None)
    env = environment(RUNWAYML_API_SECRET=RUNWAY_KEY, KLING_ACCESS_KEY=KLING_ACCESS)
    done = stitch("render", str(board), "--json", cwd=tmp_path, env=env)
    assert done.returncode != 0
    assert json.loads(done.stdout)["ok"] is False
    said = done.stdout + done.stderr
    assert "KLING_SECRET_KEY" in said
    assert "RUNWAYML_API_SECRET" not in said  # only what is missing is named
    assert fakes.runway.requests == [] and fakes.kling.requests == []
    assert fakes.submissions == (0, 0)
    assert journal(tmp_path) == []
    assert_no_keys(tmp_path, done.stdout, done.stderr)


def test_draft_routes_to_a_fast_hosted_model_and_final_to_the_full_one(
        tmp_path: Path, fakes: Fakes) -> None:
    # engines.draft names the engine and its fast model: a draft render submits to that
    # model and writes the .draft cut; a final render uses the engine's own model.
    board = storyboard(tmp_path, fakes, """\
  - {id: a, prompt: a harbour at dawn, duration: 1, candidates: 1, engine: runway}
""", engines="  draft: {engine: runway, model: veo3.1_fast}\n")
    env = environment(**ALL_KEYS)
    for quality, model in (("draft", "veo3.1_fast"), ("final", "gen4.5")):
        planned = json.loads(stitch("plan", str(board), "--json", "--quality", quality,
                                    cwd=tmp_path, env=env).stdout)
        assert [(e["engine"], e["model"]) for e in planned["hosted"]["engines"]] == [("runway", model)]
    draft = stitch("render", str(board), "--quality", "draft", cwd=tmp_path, env=env)
    assert draft.returncode == 0, draft.stderr[-3000:]
    assert [job.params.get("model") for job in fakes.runway.jobs.values()] == ["veo3.1_fast"]
    assert (tmp_path / "out" / "cut.draft.mp4").is_file()
    final = stitch("render", str(board), cwd=tmp_path, env=env)
    assert final.returncode == 0, final.stderr[-3000:]
    assert sorted(job.params.get("model") for job in fakes.runway.jobs.values()) == ["gen4.5", "veo3.1_fast"]


# -- keyframes made by a hosted image model ------------------------------------------------

def test_a_hosted_image_model_makes_the_keyframe_a_hosted_video_model_animates(
        tmp_path: Path, fakes: Fakes) -> None:
    from PIL import Image

    look = np.zeros((48, 64, 3), np.uint8)
    look[:, :, 0] = 200  # the cast's image: a red square
    Image.fromarray(look).save(tmp_path / "courier.png")
    path = tmp_path / "board.yaml"
    path.write_text(f"""\
version: 1
output: {{path: out/cut.mp4, size: 320x180, fps: {FPS}, preset: ultrafast}}
cast:
  courier: {{description: a courier in a yellow raincoat, images: [courier.png]}}
engines:
  runway: {{base_url: "{fakes.runway.base_url}", poll_interval: 0.05}}
  runway-image: {{base_url: "{fakes.runway.base_url}", poll_interval: 0.05}}
shots:
  - id: ride
    prompt: "{{courier}} rides through neon rain"
    duration: 1
    engine: runway
    candidates: 1
    keyframe: {{engine: runway-image, candidates: 2}}
""")
    env = environment(**ALL_KEYS)
    done = stitch("render", str(path), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = manifest(tmp_path)
    keyframe = found["shots"]["ride"]["keyframe"]
    assert len(keyframe["candidates"]) == 2 and all(c["engine"] == "runway-image" for c in keyframe["candidates"])
    stills = [body for endpoint, body in fakes.runway.bodies if endpoint == "text_to_image"]
    videos = [body for endpoint, body in fakes.runway.bodies if endpoint == "image_to_video"]
    assert len(stills) == 2 and len(videos) == 1
    # the cast's description filled the prompt, its image went as a reference, byte for byte
    assert all(s["promptText"].startswith("a courier in a yellow raincoat rides") for s in stills)
    [reference] = stills[0]["referenceImages"]
    sent = png(base64.b64decode(reference["uri"].split(",", 1)[1]))
    assert np.array_equal(sent, look)
    # Runway animated the chosen still: the frame it was sent is that still
    chosen = next(c for c in keyframe["candidates"] if c["id"] == keyframe["chosen"])
    [still_path] = list((tmp_path / ".stitchcraft" / "cache").rglob(f"{chosen['id']}/head.npy"))
    first = videos[0]["promptImage"]
    uri = first if isinstance(first, str) else first[0]["uri"]
    assert np.array_equal(png(base64.b64decode(uri.split(",", 1)[1])), np.load(still_path)[0])
    assert frames(tmp_path) == FPS
    assert_no_keys(tmp_path, done.stdout, done.stderr)


# -- colour anchoring of downloads: graded, encoded only when chosen ----------------------------

GRADED_CHAIN = """\
  - {id: a, prompt: "a harbour at dawn", duration: 1, engine: runway, candidates: 1}
  - {id: b, prompt: "the boats leave", duration: 1.5, engine: runway, candidates: 2,
     continuity: chain}
"""


def test_chained_downloads_are_anchored_as_grades_and_only_the_chosen_one_is_encoded(
        tmp_path: Path, fakes: Fakes) -> None:
    from stitchcraft.generate.colour import apply_grade
    from stitchcraft.media import read_frames
    from stitchcraft.store import TakeStore

    board = storyboard(tmp_path, fakes, GRADED_CHAIN)
    env = environment(**ALL_KEYS)
    done = stitch("render", str(board), "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert frames(tmp_path) == 24 + 36
    store = TakeStore(tmp_path / ".stitchcraft" / "cache")
    shot = manifest(tmp_path)["shots"]["b"]
    [segment] = shot["segments"]
    assert len(segment["candidates"]) == 2
    for candidate in segment["candidates"]:
        take = store.get(candidate["id"])
        assert take is not None and take.graded_from is not None
        made = store.get(take.graded_from)
        assert made is not None and made.meta["source"]["copied"]  # the download, as it came
        grade = take.grade()
        # The fake's chained video turns its hue over time: the grade pulls it back.
        assert np.abs(grade[-1, :, :3] - np.eye(3)).max() > 0.05, "the grade does nothing here"
        # The lossless ends (what chaining and seams read) are the download's, graded.
        made_tail = made.tail()
        np.testing.assert_array_equal(take.tail(), apply_grade(made_tail, grade, take.frames - len(made_tail)))
        np.testing.assert_array_equal(take.head(), apply_grade(made.head(), grade))
        chosen = candidate["id"] == shot["chosen"]
        assert take.encoded == chosen, "a runner-up was encoded, or the chosen take was not"
        if not chosen:  # read one frame at a time (as it is encoded), the same frames
            np.testing.assert_array_equal(np.stack(list(take.stream())), take.read())
        assert (candidate["path"] == "") != chosen
        if chosen:
            # Its file holds every frame of the download graded (as closely as 4:2:0
            # chroma keeps testsrc2's saturated edges) ...
            expected = apply_grade(made.read(), grade).astype(np.int16)
            encoded = read_frames(take.video, 0, take.frames).astype(np.int16)
            assert np.abs(encoded - expected).mean() < 2.5
            ungraded = made.read(take.frames - 1, 1)[0].astype(np.int16)
            assert np.abs(encoded[-1] - expected[-1]).mean() * 3 < np.abs(encoded[-1] - ungraded).mean()
            # ... which the cut shows: its last frame.
            shown = read_frames(tmp_path / "out" / "cut.mp4", 24 + 35, 1)[0].astype(np.int16)
            assert np.abs(shown - expected[-1]).mean() < 3.0
            assert np.abs(shown - ungraded).mean() > 6.0

    # Pinning the runner-up encodes it then; nothing is submitted again. Pruning the
    # takes the last render does not use deletes nothing: the candidate the pin set aside
    # is on record, and each kept grade keeps the take it was made from.
    [other] = [c["id"] for c in segment["candidates"] if c["id"] != shot["chosen"]]
    assert stitch("pick", str(board), "b", other[:12], cwd=tmp_path, env=env).returncode == 0
    again = stitch("render", str(board), "--json", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-4000:]
    assert json.loads(again.stdout)["takes_generated"] == 0
    assert fakes.submissions == (3, 0)
    picked = store.get(other)
    assert picked is not None and picked.encoded
    assert manifest(tmp_path)["shots"]["b"]["segments"][0]["set_aside"] == [shot["chosen"]]
    pruned = stitch("cache", "prune", str(board), "--unused", "--json", cwd=tmp_path, env=env)
    assert pruned.returncode == 0, pruned.stderr[-3000:]
    assert json.loads(pruned.stdout)["takes"] == [], pruned.stdout
    third = stitch("render", str(board), "--json", cwd=tmp_path, env=env)
    assert third.returncode == 0 and json.loads(third.stdout)["takes_generated"] == 0
    assert fakes.submissions == (3, 0)
