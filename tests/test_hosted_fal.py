"""The fal engine against a fake of fal's queue API over real HTTP (tests/fakes/fal.py),
spoken over httpx (fal-client cannot be pointed at another endpoint; see the engine's
docstring).

Tested against a protocol fake, not the live service (no network here).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes.fal import FakeFal

from stitchcraft.engines.base import SegmentRequest, Take, TakeFailure
from stitchcraft.engines.hosted import base as hosted_base
from stitchcraft.engines.hosted.fal import MODELS, FalEngine, FalSettings, failure
from stitchcraft.errors import ConfigError, EngineUnavailable
from stitchcraft.generate.jobs import JobBook, JobJournal

KEY = "fal-test-key:0123456789abcdef0123"
STITCH = str(Path(sys.executable).parent / "stitch")
KLING = "fal-ai/kling-video/v2.1/standard/image-to-video"
WAN = "fal-ai/wan/v2.2-a14b/image-to-video"


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Any]:
    started: list[FakeFal] = []

    def make(**options: Any) -> FakeFal:
        options = {"queued": 0.05, "running": 0.15, **options}
        service = FakeFal(tmp_path / f"svc{len(started)}", keys=(KEY,), **options).start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FAL_KEY", KEY)
    return KEY


def engine_for(service: FakeFal, **settings: Any) -> FalEngine:
    return FalEngine(FalSettings(base_url=service.base_url, poll_interval=0.05, **settings))


def still(value: int, size: tuple[int, int] = (320, 180)) -> np.ndarray:
    return np.random.default_rng(value).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def make_takes(engine: FalEngine, journal: JobJournal, seeds: list[int], *,
               prompt: str | None = "a lighthouse at dusk", frames: int = 36,
               first: np.ndarray | None = None, last: np.ndarray | None = None,
               ) -> list[Take | TakeFailure]:
    book = JobBook(journal, {s: f"take-{s}" for s in seeds}, engine="fal")
    request = SegmentRequest(
        shot_id="s", segment=0, kind="prompt", frames=frames, width=320, height=180,
        fps=Fraction(24), seeds=seeds, prompt=prompt,
        condition_frames=first[None] if first is not None else None, last_frame=last, jobs=book)
    return list(engine.generate(request))


def decode_png(uri: str) -> np.ndarray:
    from PIL import Image

    head, _, payload = uri.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


# -- the render, end to end ------------------------------------------------------------------

STORYBOARD = """
version: 1
title: fal test
output: {{path: out/fal.mp4, size: 320x180, fps: 24}}
engines:
  fal: {{base_url: "{base_url}", poll_interval: 0.05}}
shots:
  - {{id: a, image: still.png, prompt: "the harbour wakes", duration: 2, engine: fal, candidates: 2}}
  - {{id: b, prompt: "the boats leave", duration: 3, engine: fal, candidates: 2, continuity: chain}}
"""


def stitch(storyboard: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STITCH, "render", str(storyboard), "--json"], cwd=storyboard.parent,
                          env=env, capture_output=True, text=True, timeout=180)


def test_render_chains_reports_refusals_and_resumes_without_submitting(
        make_service: Any, write_storyboard: Any, tmp_path: Path) -> None:
    from PIL import Image

    from stitchcraft.media import probe
    from stitchcraft.store import TakeStore

    # Kling takes no seed: the fake flags its 4th submission, one of shot b's two.
    service = make_service(rate_limit=5, retry_after=0.1, flagged_seeds=(4,))
    picture = still(9)
    Image.fromarray(picture).save(tmp_path / "still.png")
    storyboard = write_storyboard(STORYBOARD.format(base_url=service.base_url))
    env = {**os.environ, "FAL_KEY": KEY, "STITCHCRAFT_DEBUG": "1"}

    done = stitch(storyboard, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert service.rate_limited > 0 and service.submissions == 4

    output = tmp_path / "out" / "fal.mp4"
    assert probe(output, count_frames=True).frames == 48 + 72

    manifest = json.loads((tmp_path / "out" / "fal.manifest.json").read_text())
    for shot in ("a", "b"):
        for candidate in manifest["shots"][shot]["segments"][0]["candidates"]:
            assert candidate["provider"] == "fal"
            assert candidate["job"] in service.jobs
            assert candidate["billed_seconds"] == 5.0
            assert candidate["cost"] == pytest.approx(5.0 * 0.056)
    b_segment = manifest["shots"]["b"]["segments"][0]
    assert len(manifest["shots"]["a"]["segments"][0]["candidates"]) == 2
    assert len(b_segment["candidates"]) == 1 and len(b_segment["failed"]) == 1
    assert "content_policy_violation" in b_segment["failed"][0]["reason"]

    # Shot a animated the still; shot b was sent the chosen take of a's last frame.
    store = TakeStore(tmp_path / ".stitchcraft" / "cache")
    chosen = store.get(manifest["shots"]["a"]["chosen"])
    assert chosen is not None
    a_bodies = [b for b in service.bodies if b["prompt"] == "the harbour wakes"]
    b_bodies = [b for b in service.bodies if b["prompt"] == "the boats leave"]
    assert len(a_bodies) == 2 and len(b_bodies) == 2
    for body in a_bodies:
        assert np.array_equal(decode_png(body["image_url"]), picture)
    for body in b_bodies:
        assert np.array_equal(decode_png(body["image_url"]), chosen.tail()[-1])
        assert set(body) == {"prompt", "image_url", "duration"} and body["duration"] == "5"

    assert KEY not in done.stderr + done.stdout
    for path in tmp_path.rglob("*"):
        if path.is_file() and "svc" not in path.parts[len(tmp_path.parts)]:
            assert KEY.encode() not in path.read_bytes(), path

    again = stitch(storyboard, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert service.submissions == 4  # the re-render submitted nothing
    assert probe(output, count_frames=True).frames == 120


def test_missing_key_fails_before_submitting(make_service: Any, write_storyboard: Any,
                                             tmp_path: Path) -> None:
    from PIL import Image

    service = make_service()
    Image.fromarray(still(9)).save(tmp_path / "still.png")
    storyboard = write_storyboard(STORYBOARD.format(base_url=service.base_url))
    env = {k: v for k, v in os.environ.items() if k != "FAL_KEY"}
    env["STITCHCRAFT_DEBUG"] = "1"
    done = stitch(storyboard, env)
    assert done.returncode != 0
    assert "FAL_KEY" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert service.submissions == 0 and service.requests == []


# -- the engine, job by job ------------------------------------------------------------------

def test_rejected_key_names_the_variable_and_hides_the_key(
        make_service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = make_service()
    wrong = "fal-wrong-key:9876543210fedcba9876"
    monkeypatch.setenv("FAL_KEY", wrong)
    journal = JobJournal(tmp_path / "jobs")
    with pytest.raises(EngineUnavailable) as caught:
        make_takes(engine_for(service), journal, [0], first=still(1))
    message = str(caught.value)
    assert "FAL_KEY" in message and "401" in message
    assert wrong not in message and wrong[:14] not in message
    assert service.submissions == 0 and journal.entries() == []


def test_rate_limits_wait_retry_after(
        make_service: Any, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = make_service(rate_limit=2, retry_after=0.3)
    slept: list[float] = []
    real_sleep = hosted_base.time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(hosted_base.time, "sleep", sleep)
    takes = make_takes(engine_for(service), JobJournal(tmp_path / "jobs"), [0], first=still(1))
    assert isinstance(takes[0], Take), takes
    assert service.submissions == 1 and service.rate_limited >= 2
    assert slept.count(0.3) == service.rate_limited


def test_unavailable_is_retried_and_other_submit_errors_are_uncertain(
        make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service()
    service.fail_next("POST", 503, 503)
    service.fail_next("GET", 500, 502)
    journal = JobJournal(tmp_path / "jobs")
    takes = make_takes(engine_for(service), journal, [3], first=still(1))
    assert isinstance(takes[0], Take), takes
    assert takes[0].meta["provider"] == "fal" and takes[0].meta["job"] in service.jobs
    assert service.submissions == 1
    assert service.requests.count(("POST", f"/{KLING}")) == 3
    # status at the app's owner/alias, as fal hands out the addresses
    assert ("GET", f"/fal-ai/kling-video/requests/{takes[0].meta['job']}/status") in service.requests

    service.fail_next("POST", 500)  # may have queued the request: never resent
    for _ in range(2):
        again = make_takes(engine_for(service), journal, [4], first=still(1))
        assert isinstance(again[0], TakeFailure) and "may be running and billed" in again[0].reason
    assert service.requests.count(("POST", f"/{KLING}")) == 4


def test_failures_carry_fals_reason(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(flagged_seeds=(2,), fail_every=3)
    journal = JobJournal(tmp_path / "jobs")
    assert isinstance(make_takes(engine_for(service), journal, [7], first=still(1))[0], Take)
    flagged = make_takes(engine_for(service), journal, [8], first=still(1))  # submission 2
    assert isinstance(flagged[0], TakeFailure)
    assert "content_policy_violation" in flagged[0].reason  # from the result's 422
    assert journal.read("take-8")["state"] == "failed"
    broken = make_takes(engine_for(service), journal, [9], first=still(1))  # submission 3
    assert isinstance(broken[0], TakeFailure) and "runner_error" in broken[0].reason  # status error

    refused = make_takes(engine_for(service), journal, [10], first=still(1),
                         prompt="forbidden-at-submit")
    assert isinstance(refused[0], TakeFailure)
    assert "refused the take" in refused[0].reason and "content checker" in refused[0].reason
    assert failure([{"loc": ["body", "x"], "msg": "bad", "type": "t"}], None) == "bad (t)"


def test_expired_result_url_fails_the_candidate(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(url_ttl=-1)
    takes = make_takes(engine_for(service), JobJournal(tmp_path / "jobs"), [0], first=still(1))
    assert isinstance(takes[0], TakeFailure) and "expired" in takes[0].reason
    assert service.downloads == 0


def test_a_request_past_its_timeout_is_cancelled(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(queued=0.1, running=60)
    takes = make_takes(engine_for(service, timeout=1), JobJournal(tmp_path / "jobs"), [0],
                       first=still(1))
    assert isinstance(takes[0], TakeFailure) and "did not finish within 1 s" in takes[0].reason
    [job_id] = service.jobs
    assert service.cancels == [job_id] and service.jobs[job_id].cancelled
    assert ("PUT", f"/fal-ai/kling-video/requests/{job_id}/cancel") in service.requests


def test_a_resumed_engine_rebuilds_the_addresses(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(running=0.6)
    journal = JobJournal(tmp_path / "jobs")
    engine = engine_for(service)
    book = JobBook(journal, {0: "take-0"}, engine="fal")
    job_id = engine.submit(engine.job_for(SegmentRequest(
        shot_id="s", segment=0, kind="prompt", frames=36, width=320, height=180,
        fps=Fraction(24), seeds=[0], prompt="p", condition_frames=still(1)[None], jobs=book), 0))
    book.submitting(0, provider="fal", model=KLING, request={})
    book.submitted(0, job_id)
    takes = make_takes(engine_for(service), journal, [0], first=still(1))  # a fresh engine
    assert isinstance(takes[0], Take), takes
    assert service.submissions == 1 and takes[0].meta["job"] == job_id


def test_frame_count_models_and_first_last_frames(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(fps=16)
    first, last = still(2), still(3)
    takes = make_takes(engine_for(service, model=WAN, input={"resolution": "480p"}),
                       JobJournal(tmp_path / "jobs"), [12], first=first, last=last)
    assert isinstance(takes[0], Take), takes
    [body] = service.bodies
    # 36 frames at 24 fps and the frame it starts on: 1.54 s; Wan makes 4k+1 frames at
    # 16 fps, so the next allowed count is 25 (1.5625 s).
    assert body["num_frames"] == 25 and body["frames_per_second"] == 16
    assert body["seed"] == 12 and body["resolution"] == "480p" and "aspect_ratio" not in body
    assert np.array_equal(decode_png(body["end_image_url"]), last)
    assert takes[0].meta["billed_seconds"] == pytest.approx(25 / 16)
    # fal bills Wan 2.2 at 480p $0.04 a second (0.08 is its 720p price)
    assert takes[0].meta["cost"] == pytest.approx(25 / 16 * 0.04, abs=1e-4)
    assert FalEngine.fit_duration(WAN, 2.0) == pytest.approx(33 / 16)
    assert MODELS[WAN].frame_count(33 / 16) == 33
    assert FalEngine.fit_duration(WAN, 60.0) == pytest.approx(161 / 16)


def test_an_unknown_app_gets_generic_names_and_its_input_passed_through(
        make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(generic_apps=("acme/any-video",))
    takes = make_takes(engine_for(service, model="acme/any-video"), JobJournal(tmp_path / "jobs"),
                       [0], prompt="a field")
    assert isinstance(takes[0], Take), takes
    assert service.bodies == [{"prompt": "a field", "duration": "5"}]
    # its price is unknown: estimated at the highest in the table
    assert FalEngine.price_per_second(FalSettings(model="acme/any-video")) == pytest.approx(0.08)


def test_models_declare_what_they_make() -> None:
    kling = FalEngine.capabilities_for(None)
    assert not kling.text_to_video and kling.image_to_video and not kling.first_last_frame
    assert kling.max_seconds == 10
    hailuo_model = "fal-ai/minimax/hailuo-02/standard/image-to-video"
    hailuo = FalEngine.capabilities_for(FalSettings(model=hailuo_model))
    assert hailuo.first_last_frame and FalEngine.durations(hailuo_model) == (6.0, 10.0)
    assert FalEngine.fit_duration(KLING, 5.01) == 10.0
    assert FalEngine.price_per_second(None) == pytest.approx(0.056) and FalEngine.PRICE_PER_SECOND[1]


@pytest.mark.parametrize(("settings", "why"), [
    ({"input": {"duration": "10"}}, "filled by stitchcraft"),
    ({"input": {"cfg_scale": 3}}, "from 0 to 1"),
    ({"input": {"aspect_ratio": "16:9"}}, "not an input of"),
    ({"model": WAN, "input": {"resolution": "1080p"}}, "must be one of"),
    ({"model": "kling"}, "fal app id"),
])
def test_settings_check_input_per_model(settings: dict[str, Any], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        FalEngine.settings_for(settings)
    FalEngine.settings_for({"model": "acme/any-video", "input": {"anything": 1}})
