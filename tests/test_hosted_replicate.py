"""The replicate engine against a fake of Replicate's API over real HTTP
(tests/fakes/replicate.py), through the official ``replicate`` SDK pointed at it with
``base_url``.

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
from fakes.replicate import ABORT_WORD, FakeReplicate

from stitchcraft.engines.base import SegmentRequest, Take, TakeFailure
from stitchcraft.engines.hosted import base as hosted_base
from stitchcraft.engines.hosted.replicate import (
    MODELS,
    ReplicateEngine,
    ReplicateSettings,
    throttle_wait,
)
from stitchcraft.errors import ConfigError, EngineUnavailable
from stitchcraft.generate.jobs import JobBook, JobJournal

KEY = "r8_test-token-0123456789abcdef"
STITCH = str(Path(sys.executable).parent / "stitch")
VERSION = "5" * 64


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Any]:
    started: list[FakeReplicate] = []

    def make(**options: Any) -> FakeReplicate:
        options = {"queued": 0.05, "running": 0.15, **options}
        service = FakeReplicate(tmp_path / f"svc{len(started)}", keys=(KEY,), **options).start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REPLICATE_API_TOKEN", KEY)
    monkeypatch.delenv("REPLICATE_BASE_URL", raising=False)
    return KEY


def engine_for(service: FakeReplicate, **settings: Any) -> ReplicateEngine:
    return ReplicateEngine(ReplicateSettings(base_url=service.base_url, poll_interval=0.05, **settings))


def still(value: int, size: tuple[int, int] = (320, 180)) -> np.ndarray:
    return np.random.default_rng(value).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def make_takes(engine: ReplicateEngine, journal: JobJournal, seeds: list[int], *,
               prompt: str | None = "a lighthouse at dusk", frames: int = 36,
               first: np.ndarray | None = None) -> list[Take | TakeFailure]:
    book = JobBook(journal, {s: f"take-{s}" for s in seeds}, engine="replicate")
    request = SegmentRequest(
        shot_id="s", segment=0, kind="prompt", frames=frames, width=320, height=180,
        fps=Fraction(24), seeds=seeds, prompt=prompt,
        condition_frames=first[None] if first is not None else None, jobs=book)
    return list(engine.generate(request))


def decode_png(uri: str) -> np.ndarray:
    from PIL import Image

    head, _, payload = uri.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


# -- the render, end to end ------------------------------------------------------------------

STORYBOARD = """
version: 1
title: replicate test
output: {{path: out/rp.mp4, size: 320x180, fps: 24}}
engines:
  replicate: {{base_url: "{base_url}", poll_interval: 0.05, model: minimax/hailuo-02}}
shots:
  - {{id: a, prompt: "a harbour at dawn", duration: 2, engine: replicate, candidates: 2}}
  - {{id: b, prompt: "the boats leave", duration: 3, engine: replicate, candidates: 2, continuity: chain}}
"""


def stitch(storyboard: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STITCH, "render", str(storyboard), "--json"], cwd=storyboard.parent,
                          env=env, capture_output=True, text=True, timeout=180)


def test_render_chains_reports_refusals_and_resumes_without_submitting(
        make_service: Any, write_storyboard: Any, tmp_path: Path) -> None:
    from stitchcraft.media import probe
    from stitchcraft.store import TakeStore

    # hailuo-02 takes no seed: the fake flags its 4th submission, one of shot b's two.
    service = make_service(rate_limit=5, retry_after=0.1, flagged_seeds=(4,))
    storyboard = write_storyboard(STORYBOARD.format(base_url=service.base_url))
    env = {**os.environ, "REPLICATE_API_TOKEN": KEY, "STITCHCRAFT_DEBUG": "1"}
    env.pop("REPLICATE_BASE_URL", None)

    done = stitch(storyboard, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert service.rate_limited > 0 and service.submissions == 4

    output = tmp_path / "out" / "rp.mp4"
    assert probe(output, count_frames=True).frames == 48 + 72

    manifest = json.loads((tmp_path / "out" / "rp.manifest.json").read_text())
    for shot in ("a", "b"):
        for candidate in manifest["shots"][shot]["segments"][0]["candidates"]:
            assert candidate["provider"] == "Replicate"
            assert candidate["job"] in service.jobs
            assert candidate["billed_seconds"] == 6.0  # hailuo-02 at 1080p makes 6 s
            assert candidate["cost"] == pytest.approx(6.0 * 0.08)
    b_segment = manifest["shots"]["b"]["segments"][0]
    assert len(manifest["shots"]["a"]["segments"][0]["candidates"]) == 2
    assert len(b_segment["candidates"]) == 1 and len(b_segment["failed"]) == 1
    assert "flagged as sensitive" in b_segment["failed"][0]["reason"]
    assert "E005" in b_segment["failed"][0]["reason"]

    # The chained shot was sent the chosen take of shot a's last frame, losslessly.
    store = TakeStore(tmp_path / ".stitchcraft" / "cache")
    chosen = store.get(manifest["shots"]["a"]["chosen"])
    assert chosen is not None
    chained = [body["input"] for body in service.bodies if "first_frame_image" in body["input"]]
    assert len(chained) == 2
    for body in chained:
        assert np.array_equal(decode_png(body["first_frame_image"]), chosen.tail()[-1])
        assert body["duration"] == 6 and set(body) == {"prompt", "first_frame_image", "duration"}

    assert KEY not in done.stderr + done.stdout
    for path in tmp_path.rglob("*"):
        if path.is_file() and "svc" not in path.parts[len(tmp_path.parts)]:
            assert KEY.encode() not in path.read_bytes(), path

    again = stitch(storyboard, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert service.submissions == 4  # the re-render submitted nothing
    assert probe(output, count_frames=True).frames == 120


def test_missing_key_fails_before_submitting(make_service: Any, write_storyboard: Any) -> None:
    service = make_service()
    storyboard = write_storyboard(STORYBOARD.format(base_url=service.base_url))
    env = {k: v for k, v in os.environ.items() if k != "REPLICATE_API_TOKEN"}
    env["STITCHCRAFT_DEBUG"] = "1"
    done = stitch(storyboard, env)
    assert done.returncode != 0
    assert "REPLICATE_API_TOKEN" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert service.submissions == 0 and service.requests == []


# -- the engine, job by job ------------------------------------------------------------------

def test_rejected_key_names_the_variable_and_hides_the_key(
        make_service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = make_service()
    wrong = "r8_wrong-token-9876543210fedcba"
    monkeypatch.setenv("REPLICATE_API_TOKEN", wrong)
    journal = JobJournal(tmp_path / "jobs")
    with pytest.raises(EngineUnavailable) as caught:
        make_takes(engine_for(service), journal, [0], first=still(1))
    message = str(caught.value)
    assert "REPLICATE_API_TOKEN" in message and "401" in message
    assert wrong not in message and wrong[:14] not in message
    assert service.submissions == 0 and journal.entries() == []


def test_throttled_create_waits_the_time_in_the_detail(
        make_service: Any, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = make_service(rate_limit=2, retry_after=0.3)
    slept: list[float] = []
    real_sleep = hosted_base.time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(hosted_base.time, "sleep", sleep)
    service.fail_next("POST", 429)  # the create itself is throttled (the SDK never retries it)
    takes = make_takes(engine_for(service), JobJournal(tmp_path / "jobs"), [0], first=still(1))
    assert isinstance(takes[0], Take), takes
    assert service.submissions == 1
    assert 0.3 in slept  # read from "Your rate limit resets in ~0.3s."
    assert throttle_wait("Request was throttled. Your rate limit resets in ~30s.") == 30.0
    assert throttle_wait("throttled") is None


def test_unavailable_is_retried_and_other_create_errors_are_uncertain(
        make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service()
    service.fail_next("POST", 503, 503)
    service.fail_next("GET", 500, 502)
    journal = JobJournal(tmp_path / "jobs")
    takes = make_takes(engine_for(service), journal, [3], first=still(1))
    assert isinstance(takes[0], Take), takes
    assert takes[0].meta["provider"] == "Replicate" and takes[0].meta["job"] in service.jobs
    assert service.submissions == 1
    posts = [r for r in service.requests if r == ("POST", "/v1/models/kwaivgi/kling-v2.1/predictions")]
    assert len(posts) == 3

    service.fail_next("POST", 500)  # may have made the prediction: never resent
    for _ in range(2):
        again = make_takes(engine_for(service), journal, [4], first=still(1))
        assert isinstance(again[0], TakeFailure) and "may be running and billed" in again[0].reason
    assert len([r for r in service.requests if r[0] == "POST"]) == 4


def test_failures_carry_replicates_reason(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(flagged_seeds=(2,))
    journal = JobJournal(tmp_path / "jobs")
    takes = make_takes(engine_for(service), journal, [7], first=still(1))
    assert isinstance(takes[0], Take), takes
    flagged = make_takes(engine_for(service), journal, [8], first=still(1))  # submission 2
    assert isinstance(flagged[0], TakeFailure) and "E005" in flagged[0].reason
    assert flagged[0].meta["job"] in service.jobs and journal.read("take-8")["state"] == "failed"

    aborted = make_takes(engine_for(service), journal, [9], first=still(1),
                         prompt=f"{ABORT_WORD} a quiet street")
    assert isinstance(aborted[0], TakeFailure) and "aborted" in aborted[0].reason

    refused = make_takes(engine_for(service), journal, [10], first=still(1),
                         prompt="forbidden-at-submit")
    assert isinstance(refused[0], TakeFailure)
    assert "refused the take" in refused[0].reason and "422" in refused[0].reason


def test_deleted_output_fails_the_candidate(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(url_ttl=0.0)  # outputs deleted as soon as the prediction ends
    takes = make_takes(engine_for(service), JobJournal(tmp_path / "jobs"), [0], first=still(1))
    assert isinstance(takes[0], TakeFailure), takes
    assert "expired" in takes[0].reason or "no output" in takes[0].reason
    assert service.downloads == 0


def test_a_prediction_past_its_timeout_is_canceled(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(queued=0.1, running=60)
    takes = make_takes(engine_for(service, timeout=1), JobJournal(tmp_path / "jobs"), [0],
                       first=still(1))
    assert isinstance(takes[0], TakeFailure) and "did not finish within 1 s" in takes[0].reason
    [job_id] = service.jobs
    assert service.cancels == [job_id]
    assert service.prediction(service.jobs[job_id])["status"] == "canceled"


def test_pinned_version_and_large_images_through_the_files_api(
        make_service: Any, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = make_service(versions={VERSION: "kwaivgi/kling-v2.1"})
    monkeypatch.setattr(ReplicateEngine, "DATA_URI_LIMIT", 1000)
    first = still(5)
    takes = make_takes(engine_for(service, version=VERSION, input={"mode": "pro"}),
                       JobJournal(tmp_path / "jobs"), [0, 1], first=first)
    assert all(isinstance(t, Take) for t in takes), takes
    assert service.uploads == 1  # one upload serves both candidates
    assert [r for r in service.requests if r[0] == "POST" and "predictions" in r[1]] == \
        [("POST", "/v1/predictions")] * 2
    for body in service.bodies:
        assert body["version"] == VERSION
        assert body["input"]["start_image"].startswith(f"{service.base_url}/v1/files/")
        assert body["input"]["mode"] == "pro" and body["input"]["duration"] == 5
    [uploaded] = service.files.values()
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(uploaded)).convert("RGB")), first)
    pinned = ReplicateEngine.fingerprint(ReplicateSettings(version=VERSION))
    assert pinned != ReplicateEngine.fingerprint(ReplicateSettings(version="6" * 64))
    assert pinned != ReplicateEngine.fingerprint(ReplicateSettings())


def test_frame_count_models_ask_the_next_allowed_count(
        make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service()
    model = "wan-video/wan-2.2-i2v-a14b"
    # 36 frames at 24 fps and the first frame it starts on: 1.54 s; Wan makes 81..100
    # frames at 16 fps, so the next allowed is 81 frames (5.06 s).
    takes = make_takes(engine_for(service, model=model, input={"resolution": "480p"}),
                       JobJournal(tmp_path / "jobs"), [11], first=still(2))
    assert isinstance(takes[0], Take), takes
    [body] = service.bodies
    assert body["input"]["num_frames"] == 81 and body["input"]["frames_per_second"] == 16
    assert body["input"]["seed"] == 11 and "duration" not in body["input"]
    assert takes[0].meta["billed_seconds"] == pytest.approx(81 / 16)
    # wan's price is not in the table: estimated at the highest price it knows
    assert takes[0].meta["cost"] == pytest.approx(81 / 16 * 0.08, abs=1e-4)
    assert ReplicateEngine.fit_duration(model, 145 / 24) == pytest.approx(97 / 16)
    assert MODELS[model].frame_count(97 / 16) == 97
    assert ReplicateEngine.fit_duration(model, 30.0) == pytest.approx(100 / 16)


def test_an_unknown_model_gets_generic_names_and_its_input_passed_through(
        make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(generic_models=("acme/any-video",))
    engine = engine_for(service, model="acme/any-video", input={"duration": 5})
    takes = make_takes(engine, JobJournal(tmp_path / "jobs"), [0], first=still(3))
    assert isinstance(takes[0], Take), takes
    [body] = service.bodies
    assert set(body["input"]) == {"prompt", "image", "duration"}
    caps = ReplicateEngine.capabilities_for(ReplicateSettings(model="acme/any-video"))
    assert caps.text_to_video and caps.image_to_video and caps.max_seconds == 5


def test_models_declare_what_they_make() -> None:
    kling = ReplicateEngine.capabilities_for(None)
    assert not kling.text_to_video and kling.image_to_video and not kling.first_last_frame
    assert ReplicateEngine.capabilities_for(ReplicateSettings(input={"mode": "pro"})).first_last_frame
    hailuo = ReplicateEngine.capabilities_for(ReplicateSettings(model="minimax/hailuo-02"))
    assert hailuo.text_to_video and hailuo.first_last_frame and hailuo.max_seconds == 6
    assert ReplicateEngine.durations("kwaivgi/kling-v2.1") == (5.0, 10.0)
    assert ReplicateEngine.fit_duration("kwaivgi/kling-v2.1", 5.2) == 10.0
    assert ReplicateEngine.price_per_second(None) == pytest.approx(0.05)
    assert ReplicateEngine.PRICE_PER_SECOND[1]  # dated
    assert ReplicateEngine.price_per_second(ReplicateSettings(price_per_second=0.5)) == 0.5


@pytest.mark.parametrize(("settings", "why"), [
    ({"input": {"duration": 10}}, "filled by stitchcraft"),
    ({"input": {"start_image": "x"}}, "filled by stitchcraft"),
    ({"input": {"mode": "ultra"}}, "must be one of"),
    ({"input": {"cfg": 1}}, "not an input of kwaivgi/kling-v2.1"),
    ({"model": "minimax/hailuo-02", "input": {"prompt_optimizer": "yes"}}, "true or false"),
    ({"model": "wan-video/wan-2.2-i2v-a14b", "input": {"sample_steps": 99}}, "from 1 to 50"),
    ({"model": "kling-v2.1"}, "owner/name"),
    ({"version": "latest"}, "version"),
])
def test_settings_check_input_per_model(settings: dict[str, Any], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        ReplicateEngine.settings_for(settings)
    ReplicateEngine.settings_for({"model": "acme/any-video", "input": {"anything": [1, 2]}})
