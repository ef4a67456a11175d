"""The runway engine against a fake of Runway's API over real HTTP (tests/fakes/runway.py),
through the official ``runwayml`` SDK pointed at it with ``base_url``.

Tested against a protocol fake, not the live service (no network here).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes.runway import RunwayService

from stitchcraft.engines.base import SegmentRequest, Take, TakeFailure
from stitchcraft.engines.hosted import base as hosted_base
from stitchcraft.engines.hosted.base import Job, Refused
from stitchcraft.engines.hosted.runway import GEN4_RATIOS, RunwayEngine, RunwaySettings
from stitchcraft.errors import ConfigError, EngineUnavailable
from stitchcraft.generate.jobs import JobBook, JobJournal

KEY = "rw-test-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent
STITCH = str(Path(sys.executable).parent / "stitch")


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Any]:
    started: list[RunwayService] = []

    def make(**options: Any) -> RunwayService:
        options = {"queued": 0.05, "running": 0.15, **options}
        service = RunwayService(tmp_path / f"svc{len(started)}", keys=(KEY,), **options).start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RUNWAYML_API_SECRET", KEY)
    monkeypatch.delenv("RUNWAYML_BASE_URL", raising=False)
    return KEY


def engine_for(service: RunwayService, **settings: Any) -> RunwayEngine:
    return RunwayEngine(RunwaySettings(base_url=service.base_url, poll_interval=0.05, **settings))


def make_takes(engine: RunwayEngine, journal: JobJournal, seeds: list[int], *,
               prompt: str | None = "a lighthouse at dusk", frames: int = 36,
               first: np.ndarray | None = None, last: np.ndarray | None = None,
               size: tuple[int, int] = (320, 180)) -> list[Take | TakeFailure]:
    """Drives `engine.generate` for one segment through a job book on `journal`."""
    book = JobBook(journal, {s: f"take-{s}" for s in seeds}, engine="runway")
    request = SegmentRequest(
        shot_id="s", segment=0, kind="prompt", frames=frames, width=size[0], height=size[1],
        fps=Fraction(24), seeds=seeds, prompt=prompt,
        condition_frames=first[None] if first is not None else None, last_frame=last, jobs=book)
    return list(engine.generate(request))


def still(value: int, size: tuple[int, int] = (320, 180)) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def decode_png(uri: str) -> np.ndarray:
    import base64

    from PIL import Image

    head, _, payload = uri.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


# -- the render, end to end ------------------------------------------------------------------

STORYBOARD = """
version: 1
title: runway test
output: {{path: out/rw.mp4, size: 320x180, fps: 24}}
engines:
  runway: {{base_url: "{base_url}", poll_interval: 0.05}}
shots:
  - {{id: a, prompt: "a harbour at dawn", duration: 2, engine: runway, candidates: 2}}
  - {{id: b, prompt: "the boats leave", duration: 3, engine: runway, candidates: 2, continuity: chain}}
"""


def stitch(storyboard: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STITCH, "render", str(storyboard), "--json"], cwd=storyboard.parent,
                          env=env, capture_output=True, text=True, timeout=180)


def test_render_chains_reports_refusals_and_resumes_without_submitting(
        make_service: Any, write_storyboard: Any, tmp_path: Path) -> None:
    from stitchcraft.media import probe
    from stitchcraft.store import TakeStore

    # Every 5th request is a 429; the second candidate of the chained shot (seed 1001)
    # fails moderation after running.
    service = make_service(rate_limit=5, retry_after=0.1, flagged_seeds=(1001,))
    storyboard = write_storyboard(STORYBOARD.format(base_url=service.base_url))
    env = {**os.environ, "RUNWAYML_API_SECRET": KEY, "STITCHCRAFT_DEBUG": "1"}
    env.pop("RUNWAYML_BASE_URL", None)

    done = stitch(storyboard, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert service.rate_limited > 0 and service.submissions == 4
    assert set(service.versions) == {"2024-11-06"}

    output = tmp_path / "out" / "rw.mp4"
    assert probe(output, count_frames=True).frames == 48 + 72

    manifest = json.loads((tmp_path / "out" / "rw.manifest.json").read_text())
    for shot in ("a", "b"):
        segment = manifest["shots"][shot]["segments"][0]
        for candidate in segment["candidates"]:
            assert candidate["provider"] == "Runway"
            assert candidate["job"] in service.jobs
            # a 3 s chained shot asks for 3 s, not 4 (its last frame held for one frame)
            assert candidate["billed_seconds"] == (2.0 if shot == "a" else 3.0)
            assert candidate["cost"] == pytest.approx(candidate["billed_seconds"] * 0.12)
    a_segment = manifest["shots"]["a"]["segments"][0]
    b_segment = manifest["shots"]["b"]["segments"][0]
    assert len(a_segment["candidates"]) == 2 and len(b_segment["candidates"]) == 1
    assert [f["seed"] for f in b_segment["failed"]] == [1001]
    assert "SAFETY.OUTPUT.VIDEO" in b_segment["failed"][0]["reason"]

    # The chained shot was sent the chosen take of shot a's last frame, losslessly.
    store = TakeStore(tmp_path / ".stitchcraft" / "cache")
    chosen = store.get(manifest["shots"]["a"]["chosen"])
    assert chosen is not None
    chained = [body for endpoint, body in service.bodies if endpoint == "image_to_video"]
    assert len(chained) == 2
    for body in chained:
        assert [image["position"] for image in body["promptImage"]] == ["first"]
        assert np.array_equal(decode_png(body["promptImage"][0]["uri"]), chosen.tail()[-1])
    assert {body["seed"] for _, body in service.bodies} == {0, 1, 1000, 1001}

    # The key is nowhere: output, manifest, report, cache, journal, logs.
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
    env = {k: v for k, v in os.environ.items() if k != "RUNWAYML_API_SECRET"}
    env["STITCHCRAFT_DEBUG"] = "1"
    done = stitch(storyboard, env)
    assert done.returncode != 0
    assert "RUNWAYML_API_SECRET" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert service.submissions == 0 and service.requests == []


# -- the engine, job by job ------------------------------------------------------------------

def test_rejected_key_names_the_variable_and_hides_the_key(
        make_service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = make_service()
    wrong = "rw-wrong-key-9876543210fedcba"
    monkeypatch.setenv("RUNWAYML_API_SECRET", wrong)
    journal = JobJournal(tmp_path / "jobs")
    with pytest.raises(EngineUnavailable) as caught:
        make_takes(engine_for(service), journal, [0])
    message = str(caught.value)
    assert "RUNWAYML_API_SECRET" in message and "401" in message
    assert wrong not in message and wrong[:14] not in message
    assert service.submissions == 0
    assert journal.entries() == []  # answered 401: no task, nothing left to resume


def test_rate_limit_waits_retry_after_and_sdk_does_not_retry(
        make_service: Any, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = make_service(rate_limit=2, retry_after=0.3, running=0.8)
    slept: list[float] = []
    real_sleep = hosted_base.time.sleep

    def sleep(seconds: float) -> None:  # time.sleep is shared: count the job loop's only
        if sys._getframe(1).f_globals["__name__"] == hosted_base.__name__:
            slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(hosted_base.time, "sleep", sleep)
    takes = make_takes(engine_for(service), JobJournal(tmp_path / "jobs"), [0])
    assert isinstance(takes[0], Take), takes
    assert service.submissions == 1
    # Each 429 was waited out by the job loop for exactly its Retry-After, once: the
    # SDK's own retries are off (they would show as 429s without a matching wait).
    assert service.rate_limited >= 2
    assert slept.count(0.3) == service.rate_limited


def test_load_shedding_is_retried_and_a_submission_is_made_once(
        make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service()
    service.fail_next("POST", 503, 502)  # documented as "shedding load": retried
    service.fail_next("GET", 500, 504, 500)
    takes = make_takes(engine_for(service), JobJournal(tmp_path / "jobs"), [3])
    assert isinstance(takes[0], Take), takes
    assert takes[0].meta["provider"] == "Runway" and takes[0].meta["job"] in service.jobs
    assert service.submissions == 1
    assert service.requests.count(("POST", "/v1/text_to_video")) == 3


@pytest.mark.parametrize("fault", ["dropped", "500"])
def test_uncertain_submission_is_never_repeated(
        make_service: Any, key: str, tmp_path: Path, fault: str) -> None:
    service = make_service()
    if fault == "dropped":
        service.drop_next_post()  # the task is made, the answer never arrives
    else:
        service.fail_next("POST", 500)  # not in Runway's retry table
    journal = JobJournal(tmp_path / "jobs")
    engine = engine_for(service)
    for _ in range(2):  # and a resumed render does not submit it either
        takes = make_takes(engine, journal, [5])
        assert isinstance(takes[0], TakeFailure), takes
        assert "may be running and billed" in takes[0].reason
        assert "--resubmit" in takes[0].reason
    assert service.requests.count(("POST", "/v1/text_to_video")) == 1
    assert service.submissions == (1 if fault == "dropped" else 0)
    assert journal.read("take-5")["state"] == "submitting"


def test_moderation_failures_drop_one_candidate_with_the_reason(
        make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(flagged_seeds=(8,))
    journal = JobJournal(tmp_path / "jobs")
    takes = make_takes(engine_for(service), journal, [7, 8])
    assert isinstance(takes[0], Take) and isinstance(takes[1], TakeFailure), takes
    assert "SAFETY.OUTPUT.VIDEO" in takes[1].reason and takes[1].meta["job"] in service.jobs

    refused = make_takes(engine_for(service), journal, [20], prompt="a forbidden scene")
    assert isinstance(refused[0], TakeFailure)
    assert "SAFETY.INPUT.TEXT" in refused[0].reason
    assert journal.read("take-20")["state"] == "failed"

    invalid = make_takes(engine_for(service), journal, [21], prompt="forbidden-at-submit")
    assert isinstance(invalid[0], TakeFailure)
    assert "refused the take" in invalid[0].reason and "promptText: Invalid input" in invalid[0].reason


def test_expired_result_address_is_asked_for_again(
        make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(expire_first_url=True)
    takes = make_takes(engine_for(service), JobJournal(tmp_path / "jobs"), [0])
    assert isinstance(takes[0], Take), takes
    assert service.downloads == 1 and service.served["SUCCEEDED"] == 2

    gone = make_service(url_ttl=-1)  # every address already expired
    takes = make_takes(engine_for(gone), JobJournal(tmp_path / "jobs2"), [0])
    assert isinstance(takes[0], TakeFailure)
    assert "expired" in takes[0].reason and gone.downloads == 0


def test_a_job_past_its_timeout_is_cancelled(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(queued=0.1, running=60)
    takes = make_takes(engine_for(service, timeout=1), JobJournal(tmp_path / "jobs"), [0])
    assert isinstance(takes[0], TakeFailure)
    assert "did not finish within 1 s" in takes[0].reason
    [job_id] = service.jobs
    assert service.deletes == [job_id]
    assert service.task(service.jobs[job_id])["status"] == "CANCELLED"


def test_throttled_tasks_wait_their_turn(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service(throttle=1, queued=0.05, running=0.3)
    engine = engine_for(service)
    journal = JobJournal(tmp_path / "jobs")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda seed: make_takes(engine, journal, [seed])[0], [0, 1]))
    assert all(isinstance(r, Take) for r in results), results
    assert service.served["THROTTLED"] > 0 and service.served["RUNNING"] > 0


def test_first_and_last_frame_on_veo31(make_service: Any, key: str, tmp_path: Path) -> None:
    service = make_service()
    first, last = still(1), still(2)
    takes = make_takes(engine_for(service, model="veo3.1", input={"audio": False}),
                       JobJournal(tmp_path / "jobs"), [4], first=first, last=last, frames=60)
    assert isinstance(takes[0], Take), takes
    [(endpoint, body)] = service.bodies
    assert endpoint == "image_to_video"
    assert body["model"] == "veo3.1" and body["duration"] == 4 and body["audio"] is False
    assert body["ratio"] == "1280:720"
    assert [i["position"] for i in body["promptImage"]] == ["first", "last"]
    assert np.array_equal(decode_png(body["promptImage"][0]["uri"]), first)
    assert np.array_equal(decode_png(body["promptImage"][1]["uri"]), last)
    assert takes[0].meta["cost"] == pytest.approx(4 * 0.20)


# -- what each model takes -------------------------------------------------------------------

def job(**fields: Any) -> Job:
    values: dict[str, Any] = {"prompt": "waves", "negative_prompt": None, "seconds": 5.0,
                              "aspect": "1280:720", "model": "gen4.5", "seed": 2 ** 32 + 7}
    return Job(**{**values, **fields})


def test_request_bodies_follow_each_model() -> None:
    engine = RunwayEngine()
    endpoint, args = engine.request_body(job())
    assert endpoint == "text_to_video"
    assert args == {"model": "gen4.5", "ratio": "1280:720", "duration": 5,
                    "prompt_text": "waves", "seed": 7}
    endpoint, args = engine.request_body(job(model="veo3", seconds=8.0, negative_prompt="fog",
                                             first_frame=b"\x89PNG..."))
    assert endpoint == "image_to_video" and "seed" not in args and "negative_prompt" not in args
    _, args = engine.request_body(job(model="veo3.1_fast", seconds=6.0, negative_prompt="fog"))
    assert args["negative_prompt"] == "fog"
    for bad, why in [(job(model="gen4_turbo"), "from an image only"),
                     (job(first_frame=b"\x89PNG", last_frame=b"\x89PNG"), "no last frame"),
                     (job(last_frame=b"\x89PNG", model="veo3.1"), "needs a first frame"),
                     (job(prompt="x" * 1001), "1000"),
                     (job(first_frame=b"\x89PNG", prompt=None), "needs a prompt")]:
        with pytest.raises(Refused, match=why):
            engine.request_body(bad)


def test_models_declare_their_durations_ratios_and_frames() -> None:
    assert RunwayEngine.durations("gen4_turbo") == (5.0, 10.0)
    assert RunwayEngine.durations("veo3.1") == (4.0, 6.0, 8.0)
    assert RunwayEngine.durations("gen4.5") == tuple(float(s) for s in range(2, 11))
    assert RunwayEngine.fit_duration("gen4_turbo", 5.5) == 10.0
    # gen4.5 makes six ratios from an image, two from text
    assert RunwayEngine.aspects("gen4.5", image=True) == GEN4_RATIOS
    assert RunwayEngine.aspects("gen4.5") == ("1280:720", "720:1280")
    assert RunwayEngine.fit_aspect("gen4.5", 1920, 816, image=True) == "1584:672"
    assert RunwayEngine.fit_aspect("gen4.5", 1920, 816) == "1280:720"
    assert RunwayEngine.fit_aspect("gen3a_turbo", 720, 1280, image=True) == "768:1280"
    turbo = RunwayEngine.capabilities_for(RunwaySettings(model="gen4_turbo"))
    assert not turbo.text_to_video and turbo.image_to_video and turbo.max_seconds == 10
    veo = RunwayEngine.capabilities_for(RunwaySettings(model="veo3.1"))
    assert veo.text_to_video and veo.first_last_frame and veo.hosted
    assert not RunwayEngine.capabilities_for().first_last_frame


def test_text_to_video_uses_the_ratios_of_that_endpoint(key: str, tmp_path: Path) -> None:
    engine = RunwayEngine()
    book = JobBook(JobJournal(tmp_path), {0: "t"}, engine="runway")
    wide = SegmentRequest(shot_id="s", segment=0, kind="prompt", frames=48, width=1584,
                          height=672, fps=Fraction(24), seeds=[0], prompt="p", jobs=book)
    assert engine.job_for(wide, 0).aspect == "1280:720"  # gen4.5 text: 16:9 or 9:16 only
    chained = SegmentRequest(shot_id="s", segment=0, kind="prompt", frames=48, width=1584,
                             height=672, fps=Fraction(24), seeds=[0], prompt="p", jobs=book,
                             condition_frames=still(3, (1584, 672))[None])
    assert engine.job_for(chained, 0).aspect == "1584:672"


def test_settings_check_input_per_model_and_price_it() -> None:
    assert RunwayEngine.price_per_second(RunwaySettings()) == pytest.approx(0.12)
    assert RunwayEngine.price_per_second(RunwaySettings(model="gen4_turbo")) == pytest.approx(0.05)
    assert RunwayEngine.price_per_second(RunwaySettings(model="veo3.1")) == pytest.approx(0.40)
    assert RunwayEngine.price_per_second(
        RunwaySettings(model="veo3.1_fast", input={"audio": False})) == pytest.approx(0.10)
    assert RunwayEngine.price_per_second(RunwaySettings(price_per_second=0.07)) == 0.07
    assert RunwayEngine.PRICE_PER_SECOND[1]  # dated
    RunwaySettings(model="gen4_turbo", input={"contentModeration": {"publicFigureThreshold": "low"}})
    RunwaySettings(model="kling_4", input={"anything": 1})  # unknown models pass through
    for settings, why in [({"input": {"seed": 3}}, "set by stitchcraft"),
                          ({"model": "veo3.1", "input": {"audio": "no"}}, "true or false"),
                          ({"input": {"watermark": True}}, "takes no field 'watermark'"),
                          ({"input": {"outputFormat": "prores"}}, "must be mp4")]:
        with pytest.raises(ConfigError, match=why):
            RunwayEngine.settings_for(settings)


def test_storyboard_validation_names_the_bad_input(write_storyboard: Any, tmp_path: Path) -> None:
    storyboard = write_storyboard(textwrap.dedent("""
        version: 1
        output: {path: out/x.mp4, size: 320x180, fps: 24}
        engines:
          runway: {model: veo3.1, input: {audio: maybe}}
        shots:
          - {id: a, prompt: "p", duration: 2, engine: runway}
    """))
    done = subprocess.run([STITCH, "validate", str(storyboard)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STITCHCRAFT_DEBUG": "1"})
    assert done.returncode != 0
    assert "audio" in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_video_models_take_no_references_and_refuse_them(make_service: Any, key: str,
                                                         tmp_path: Path) -> None:
    """runwayml 5.24: none of gen4.5, gen4_turbo, veo3.x takes reference images (only
    text_to_image does, through runway-image)."""
    service = make_service()
    for model in ("gen4.5", "gen4_turbo", "veo3.1"):
        assert RunwayEngine.capabilities_for(RunwaySettings(model=model)).references == 0
    engine = engine_for(service)
    job = Job(prompt="a harbour", negative_prompt=None, seconds=5.0, aspect="1280:720",
              references=[b"\x89PNG..."], model="gen4.5")
    with pytest.raises(Refused, match="runway-image"):
        engine.request_body(job)
    assert service.submissions == 0
