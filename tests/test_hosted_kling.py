"""The Kling engine against a fake Kling API over real HTTP, with real JWTs."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import httpx
import jwt
import numpy as np
import pytest
from fakes.kling import FakeKling
from fakes.service import REFUSED_AFTER_RUN, REFUSED_AT_SUBMIT

from stitchcraft.engines.base import SegmentRequest, TakeFailure
from stitchcraft.engines.hosted import base as hosted_base
from stitchcraft.engines.hosted import kling as kling_module
from stitchcraft.engines.hosted.base import Refused
from stitchcraft.engines.hosted.kling import KlingEngine, kling_image
from stitchcraft.errors import ConfigError, EngineUnavailable
from stitchcraft.generate.jobs import JobBook, JobJournal

ACCESS = "ak-test-7d41c0b2e9f35a68"
SECRET = "sk-test-0f9e8d7c6b5a49382716a5b4c3d2e1f0"
STITCH = str(Path(sys.executable).with_name("stitch"))


@pytest.fixture
def kling(tmp_path: Path):
    with FakeKling(tmp_path / "kling", credentials={ACCESS: SECRET}, queued=0.05,
                   running=0.15) as service:
        yield service


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("KLING_SECRET_KEY", SECRET)


def engine(kling: FakeKling, **settings: object) -> KlingEngine:
    fields = {"base_url": kling.base_url, "poll_interval": 0.05, **settings}
    return KlingEngine(KlingEngine.settings_for(fields))


def request(tmp_path: Path, *, prompt: str = "a lighthouse in a storm",
            condition: np.ndarray | None = None, **fields: object) -> SegmentRequest:
    jobs = JobBook(JobJournal(tmp_path / "jobs"), {0: "take-0"}, "kling")
    return SegmentRequest(shot_id="a", segment=0, kind="prompt", frames=24, width=320, height=180,
                          fps=Fraction(24), seeds=[0], prompt=prompt, condition_frames=condition,
                          jobs=jobs, **fields)  # type: ignore[arg-type]


def only(results: list) -> object:
    assert len(results) == 1
    return results[0]


def token(secret: str = SECRET, **claims: object) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ACCESS, "exp": now + 1800, "nbf": now - 5, **claims}, secret,
                      algorithm="HS256")


# -- end to end ------------------------------------------------------------------------------


def render(storyboard: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STITCH, "render", str(storyboard), "--json"], cwd=storyboard.parent,
                          env=env, capture_output=True, text=True, timeout=180)


def stitch_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLING_")}
    return {**env, "STITCHCRAFT_DEBUG": "1", **extra}


def chained_storyboard(tmp_path: Path, kling: FakeKling) -> Path:
    path = tmp_path / "board.yaml"
    path.write_text(f"""
version: 1
title: lighthouse
output: {{path: out/lighthouse.mp4, size: 320x180, fps: 24}}
engines:
  kling: {{base_url: "{kling.base_url}", poll_interval: 0.05}}
shots:
  - {{id: a, prompt: "a lighthouse in a storm", duration: 2, engine: kling, candidates: 2}}
  - {{id: b, prompt: "the beam sweeps the waves", duration: 3, engine: kling, candidates: 2,
      continuity: chain}}
""")
    return path


def test_render_chains_with_base64_frames_and_resumes_for_free(tmp_path, kling):
    from stitchcraft.media import probe

    kling.flagged_seeds = {4}  # the 4th task (one of shot b's two) fails moderation
    board = chained_storyboard(tmp_path, kling)
    env = stitch_env(KLING_ACCESS_KEY=ACCESS, KLING_SECRET_KEY=SECRET)
    done = render(board, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert probe(tmp_path / "out/lighthouse.mp4", count_frames=True).frames == 120
    assert kling.submissions == 4

    manifest = json.loads((tmp_path / "out/lighthouse.manifest.json").read_text())
    kept = [c for shot in manifest["shots"].values() for seg in shot["segments"]
            for c in seg["candidates"]]
    assert len(kept) == 3
    for candidate in kept:
        assert candidate["provider"] == "Kling"
        assert candidate["job"].split("/")[1] in kling.jobs
        assert candidate["billed_seconds"] == 5.0
        assert candidate["cost"] == pytest.approx(5 * 0.07)
    failed = manifest["shots"]["b"]["segments"][0]["failed"]
    assert len(failed) == 1 and "flagged by content moderation" in failed[0]["reason"]

    # Shot b started from shot a's chosen take's last frame: raw base64 PNG, each pixel
    # repeated twice each way to reach Kling's 300 px minimum, values untouched.
    chosen = manifest["shots"]["a"]["chosen"]
    tail = np.load(next((tmp_path / ".stitchcraft").rglob(f"{chosen}/tail.npy")))
    chained = [j for j in kling.jobs.values() if j.first_frame is not None]
    assert len(chained) == 2
    for job in chained:
        assert not job.params["image"].startswith("data:")
        assert "aspect_ratio" not in job.params
        sent = np.asarray(_image(job.first_frame))
        assert sent.shape == (360, 640, 3)
        np.testing.assert_array_equal(sent[::2, ::2], tail[-1])
        np.testing.assert_array_equal(sent[1::2, 1::2], tail[-1])

    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".html", ".txt", ".log", ".yaml"):
            text = path.read_text(errors="replace")
            assert SECRET not in text and ACCESS not in text, path
    assert SECRET not in done.stderr + done.stdout and ACCESS not in done.stderr + done.stdout

    again = render(board, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert kling.submissions == 4


def test_a_missing_secret_fails_before_anything_is_submitted(tmp_path, kling):
    done = render(chained_storyboard(tmp_path, kling), stitch_env(KLING_ACCESS_KEY=ACCESS))
    assert done.returncode != 0
    assert "KLING_SECRET_KEY" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert kling.submissions == 0


# -- the fake's auth is Kling's -------------------------------------------------------------


@pytest.mark.parametrize("authorization, code", [
    (None, 1001),
    ("Bearer not-a-jwt", 1002),
    (f"Bearer {token(secret='some-other-secret-of-32-bytes-or-more')}", 1002),
    (f"Bearer {token(exp=int(time.time()) - 60)}", 1004),
    (f"Bearer {token(nbf=int(time.time()) + 600)}", 1003),
    (f"Bearer {token(iss='ak-unknown')}", 1000),
])
def test_the_fake_verifies_the_jwt(kling, authorization, code):
    headers = {"Authorization": authorization} if authorization else {}
    answer = httpx.post(kling.base_url + "/v1/videos/text2video", json={"prompt": "x"},
                        headers=headers)
    assert answer.status_code == 401 and answer.json()["code"] == code
    assert kling.submissions == 0


def test_the_engine_signs_a_token_kling_accepts_and_renews_it(kling, monkeypatch):
    made = engine(kling)
    first = made.token()
    claims = jwt.decode(first, SECRET, algorithms=["HS256"])
    assert claims["iss"] == ACCESS
    assert 1790 <= claims["exp"] - time.time() <= 1800 and claims["nbf"] <= time.time() - 4
    assert made.token() == first
    later = time.time() + 1600  # inside the last 5 minutes of its life: a new one
    monkeypatch.setattr(kling_module.time, "time", lambda: later)
    renewed = made.token()
    assert renewed != first
    assert jwt.decode(renewed, SECRET, algorithms=["HS256"], options={"verify_exp": False,
                                                                      "verify_nbf": False})["exp"] > later


# -- the engine ---------------------------------------------------------------------------------


def test_a_rejected_secret_makes_the_engine_unavailable_without_showing_it(tmp_path, kling, monkeypatch):
    wrong = "sk-wrong-11112222333344445555666677778888"
    monkeypatch.setenv("KLING_SECRET_KEY", wrong)
    with pytest.raises(EngineUnavailable) as caught:
        list(engine(kling).generate(request(tmp_path)))
    said = str(caught.value)
    assert "KLING_SECRET_KEY" in said and "1002" in said
    assert wrong not in said and ACCESS not in said
    assert kling.submissions == 0


@pytest.mark.parametrize("errors_as_200", [False, True])
def test_service_codes_are_read_whatever_the_http_status(tmp_path, kling, errors_as_200):
    kling.errors_as_200 = errors_as_200
    failure = only(list(engine(kling).generate(request(tmp_path, prompt=f"x {REFUSED_AT_SUBMIT}"))))
    assert isinstance(failure, TakeFailure) and "1301" in failure.reason
    kling.balance = False
    with pytest.raises(EngineUnavailable, match="1102"):
        list(engine(kling).generate(request(tmp_path / "again")))
    assert kling.submissions == 0


def test_a_moderation_failure_after_running_is_the_candidates_failure(tmp_path, kling):
    failure = only(list(engine(kling).generate(request(tmp_path, prompt=f"x {REFUSED_AFTER_RUN}"))))
    assert isinstance(failure, TakeFailure)
    assert "flagged by content moderation" in failure.reason and "Kling" in failure.reason


def test_the_parallel_task_limit_is_waited_out(tmp_path, kling):
    kling.parallel, kling.running = 1, 0.8  # the busy task holds the only slot 0.85 s
    busy = httpx.post(kling.base_url + "/v1/videos/text2video",
                      json={"model_name": "kling-v1", "prompt": "x"},
                      headers={"Authorization": f"Bearer {token()}"})
    assert busy.json()["code"] == 0
    take = only(list(engine(kling).generate(request(tmp_path))))
    assert not isinstance(take, TakeFailure), take
    assert 1303 in kling.refusals and kling.submissions == 2


def test_rate_limits_are_waited_out_as_retry_after_says(tmp_path, kling, monkeypatch):
    waits: list[float] = []
    sleep = time.sleep
    monkeypatch.setattr(hosted_base.time, "sleep", lambda s: (waits.append(s), sleep(s)))
    kling.rate_limit, kling.retry_after = 2, 0.3
    take = only(list(engine(kling).generate(request(tmp_path))))
    assert not isinstance(take, TakeFailure), take
    assert kling.rate_limited >= 1 and waits.count(0.3) == kling.rate_limited


def test_server_errors_are_retried(tmp_path, kling):
    kling.server_errors = [5000, 5001, 5002]
    take = only(list(engine(kling).generate(request(tmp_path))))
    assert not isinstance(take, TakeFailure), take
    assert kling.server_errors == [] and kling.submissions == 1


def test_an_expired_result_address_is_asked_for_again(tmp_path, kling):
    kling.stale_urls = 1
    take = only(list(engine(kling).generate(request(tmp_path))))
    assert not isinstance(take, TakeFailure), take
    assert kling.downloads == 1
    kling.url_ttl = -1.0
    failure = only(list(engine(kling).generate(request(tmp_path / "again"))))
    assert isinstance(failure, TakeFailure) and "expired" in failure.reason
    # Billed and gone: failed in the journal, not polled by every later render.
    journal = JobJournal(tmp_path / "again" / "jobs")
    assert journal.read("take-0")["state"] == "failed"
    asked = len(kling.requests)
    again = only(list(engine(kling).generate(request(tmp_path / "again"))))
    assert isinstance(again, TakeFailure) and "--resubmit" in again.reason
    assert len(kling.requests) == asked


def test_a_job_past_its_timeout_is_given_up_without_a_cancel_call(tmp_path, kling):
    kling.running = 30.0
    failure = only(list(engine(kling, timeout=1).generate(request(tmp_path))))
    assert isinstance(failure, TakeFailure)
    assert "did not finish within 1 s" in failure.reason
    assert {method for method, _ in kling.requests} == {"POST", "GET"}  # Kling has no cancel
    # Said as it is: not cancelled, and it may still be billed.
    assert "Kling has no cancel" in failure.reason and "cancelled" not in failure.reason
    assert "may still finish and be billed" in failure.reason
    entry = JobJournal(tmp_path / "jobs").read("take-0")
    assert entry["state"] == "failed" and entry["left_running"]
    # Once it has finished after all, the next render collects it instead of paying again.
    kling.running = 0.0
    take = only(list(engine(kling, timeout=1).generate(request(tmp_path))))
    assert not isinstance(take, TakeFailure), take
    assert kling.submissions == 1


def test_a_last_frame_goes_as_image_tail_in_pro_mode_only(tmp_path, kling):
    rng = np.random.default_rng(2)
    first = rng.integers(0, 256, (1, 360, 640, 3), dtype=np.uint8)
    last = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    std = engine(kling, model="kling-v1-6")
    assert not KlingEngine.capabilities_for(std.settings).first_last_frame
    failure = only(list(std.generate(request(tmp_path, condition=first, last_frame=last))))
    assert isinstance(failure, TakeFailure) and "image_tail" in failure.reason
    assert kling.submissions == 0
    pro = engine(kling, model="kling-v1-6", input={"mode": "pro", "cfg_scale": 0.4})
    assert KlingEngine.capabilities_for(pro.settings).first_last_frame
    jobs = request(tmp_path / "pro", condition=first, last_frame=last)
    take = only(list(pro.generate(jobs)))
    assert not isinstance(take, TakeFailure), take
    job = next(iter(kling.jobs.values()))
    assert job.params["mode"] == "pro" and job.params["cfg_scale"] == 0.4
    np.testing.assert_array_equal(np.asarray(_image(job.first_frame)), first[-1])
    np.testing.assert_array_equal(np.asarray(_image(job.last_frame)), last)


def test_images_are_enlarged_by_whole_pixels_and_odd_ratios_refused():
    from PIL import Image

    frame = np.random.default_rng(3).integers(0, 256, (100, 160, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="PNG")
    sent = np.asarray(_image(base64.b64decode(kling_image(out.getvalue(), "the first frame"))))
    assert sent.shape == (300, 480, 3)
    np.testing.assert_array_equal(sent[::3, ::3], frame)
    wide = io.BytesIO()
    Image.fromarray(np.zeros((300, 900, 3), np.uint8)).save(wide, format="PNG")
    with pytest.raises(Refused, match="2.5:1"):
        kling_image(wide.getvalue(), "the first frame")


def test_settings_check_kling_inputs_models_and_prices():
    with pytest.raises(ConfigError, match="cfg_scale"):
        KlingEngine.settings_for({"model": "kling-v2-master", "input": {"cfg_scale": 0.5}})
    with pytest.raises(ConfigError, match="mode"):
        KlingEngine.settings_for({"model": "kling-v2-master", "input": {"mode": "pro"}})
    with pytest.raises(ConfigError, match="takes no input seed"):
        KlingEngine.settings_for({"input": {"seed": 1}})
    assert KlingEngine.settings_for({"model": "kling-v9", "input": {"anything": 1}})
    image_only = KlingEngine.settings_for({"model": "kling-v2-1"})
    assert not KlingEngine.capabilities_for(image_only).text_to_video
    assert KlingEngine.price_per_second(KlingEngine.settings_for({"model": "kling-v1"})) == 0.028
    assert KlingEngine.price_per_second(None) == 0.07
    assert KlingEngine.fit_duration("kling-v1", 6.0) == 10.0
    assert KlingEngine.fit_aspect("kling-v1", 1080, 1920) == "9:16"


def _image(data: bytes | None):
    from PIL import Image

    assert data is not None
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_reference_images_go_as_multi_image2video_on_kling_v1_6(tmp_path, kling):
    from stitchcraft.engines.hosted.base import png

    rng = np.random.default_rng(9)
    pictures = [rng.integers(0, 256, (320 + 20 * i, 400, 3), dtype=np.uint8) for i in range(3)]
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(tmp_path / f"ref{i}.png")
        paths[-1].write_bytes(png(picture))
    v16 = engine(kling, model="kling-v1-6")
    assert KlingEngine.capabilities_for(v16.settings).references == 4
    assert KlingEngine.capabilities_for(engine(kling).settings).references == 0  # v2.5 turbo
    take = only(list(v16.generate(request(tmp_path, references=paths))))
    assert not isinstance(take, TakeFailure), take
    [job] = kling.jobs.values()
    assert kling.kinds[job.id] == "multi-image2video"
    assert job.params["model_name"] == "kling-v1-6" and job.params["aspect_ratio"] == "16:9"
    assert len(job.params["image_list"]) == 3
    for sent, path, picture in zip(job.references, paths, pictures, strict=True):
        assert sent == path.read_bytes()  # at least 300 px a side: sent as they are
        np.testing.assert_array_equal(np.asarray(_image(sent)), picture)

    # References and a first frame do not go together; other models take none.
    first = rng.integers(0, 256, (1, 360, 640, 3), dtype=np.uint8)
    chained = only(list(v16.generate(request(tmp_path / "chained", condition=first,
                                             references=paths))))
    assert isinstance(chained, TakeFailure) and "not both" in chained.reason
    other = only(list(engine(kling, model="kling-v2-1-master").generate(
        request(tmp_path / "other", references=paths))))
    assert isinstance(other, TakeFailure) and "kling-v1-6" in other.reason
    assert kling.submissions == 1
