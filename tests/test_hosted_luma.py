"""The Luma engine against a fake Dream Machine API over real HTTP, through `lumaai`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import httpx
import numpy as np
import pytest
from fakes.luma import FakeImageHost, FakeLuma
from fakes.service import REFUSED_AFTER_RUN, REFUSED_AT_SUBMIT

from stitchcraft.engines.base import SegmentRequest, TakeFailure
from stitchcraft.engines.hosted import base as hosted_base
from stitchcraft.engines.hosted.luma import LumaEngine
from stitchcraft.errors import ConfigError, EngineUnavailable
from stitchcraft.generate.jobs import JobBook, JobJournal

KEY = "luma-test-key-5f0c2a9e77d1"
TOKEN = "image-host-token-93be11d0a4"
STITCH = str(Path(sys.executable).with_name("stitch"))


@pytest.fixture
def luma(tmp_path: Path):
    with FakeLuma(tmp_path / "luma", keys=(KEY,), queued=0.05, running=0.15) as service:
        yield service


@pytest.fixture
def host(tmp_path: Path):
    with FakeImageHost(tmp_path / "host", token=TOKEN) as service:
        yield service


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMAAI_API_KEY", KEY)
    monkeypatch.setenv("TEST_IMAGE_HOST_TOKEN", TOKEN)


def engine(luma: FakeLuma, host: FakeImageHost | None = None, **settings: object) -> LumaEngine:
    fields: dict[str, object] = {"base_url": luma.api_url, "poll_interval": 0.05, **settings}
    if host is not None:
        fields["image_host"] = {"upload": host.template(), "token_env": "TEST_IMAGE_HOST_TOKEN"}
    return LumaEngine(LumaEngine.settings_for(fields))


def request(tmp_path: Path, *, seeds: tuple[int, ...] = (0,), prompt: str = "a harbour at dawn",
            condition: np.ndarray | None = None, **fields: object) -> SegmentRequest:
    jobs = JobBook(JobJournal(tmp_path / "jobs"), {s: f"take-{s}" for s in seeds}, "luma")
    return SegmentRequest(shot_id="a", segment=0, kind="prompt", frames=24, width=320, height=180,
                          fps=Fraction(24), seeds=list(seeds), prompt=prompt,
                          condition_frames=condition, jobs=jobs, **fields)  # type: ignore[arg-type]


def only(results: list) -> object:
    assert len(results) == 1
    return results[0]


# -- end to end ------------------------------------------------------------------------------


def render(storyboard: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STITCH, "render", str(storyboard), "--json"], cwd=storyboard.parent,
                          env=env, capture_output=True, text=True, timeout=180)


def stitch_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LUMAAI_API_KEY", "TEST_IMAGE_HOST_TOKEN")}
    return {**env, "STITCHCRAFT_DEBUG": "1", **extra}


def chained_storyboard(tmp_path: Path, luma: FakeLuma, host: FakeImageHost | None) -> Path:
    image_host = f', image_host: {{upload: "{host.template()}", token_env: TEST_IMAGE_HOST_TOKEN}}' \
        if host else ""
    path = tmp_path / "board.yaml"
    path.write_text(f"""
version: 1
title: harbour
output: {{path: out/harbour.mp4, size: 320x180, fps: 24}}
engines:
  luma: {{base_url: "{luma.api_url}", poll_interval: 0.05{image_host}}}
shots:
  - {{id: a, prompt: "a harbour at dawn", duration: 2, engine: luma, candidates: 2}}
  - {{id: b, prompt: "boats leave the harbour", duration: 3, engine: luma, candidates: 2,
      continuity: chain}}
""")
    return path


def test_render_chains_through_the_image_host_and_resumes_for_free(tmp_path, luma, host):
    from stitchcraft.media import probe

    luma.flagged_seeds = {4}  # the 4th generation (one of shot b's two) fails moderation
    board = chained_storyboard(tmp_path, luma, host)
    env = stitch_env(LUMAAI_API_KEY=KEY, TEST_IMAGE_HOST_TOKEN=TOKEN)
    done = render(board, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert probe(tmp_path / "out/harbour.mp4", count_frames=True).frames == 120
    assert luma.submissions == 4

    manifest = json.loads((tmp_path / "out/harbour.manifest.json").read_text())
    kept = [c for shot in manifest["shots"].values() for seg in shot["segments"]
            for c in seg["candidates"]]
    assert len(kept) == 3
    for candidate in kept:
        assert candidate["provider"] == "Luma" and candidate["job"] in luma.jobs
        assert candidate["billed_seconds"] == 5.0
        assert candidate["cost"] == pytest.approx(5 * 0.142)
    failed = manifest["shots"]["b"]["segments"][0]["failed"]
    assert len(failed) == 1 and "flagged by content moderation" in failed[0]["reason"]
    assert failed[0]["job"] in luma.jobs

    # Shot b started from shot a's chosen take's last frame, exactly, fetched by the fake
    # from the image host at the address the engine sent.
    chosen = manifest["shots"]["a"]["chosen"]
    tail = np.load(next((tmp_path / ".stitchcraft").rglob(f"{chosen}/tail.npy")))
    chained = [j for j in luma.jobs.values() if j.first_frame is not None]
    assert len(chained) == 2
    for job in chained:
        assert job.params["keyframes"]["frame0"]["url"].startswith(host.base_url + "/frames/")
        np.testing.assert_array_equal(np.asarray(_image(job.first_frame)), tail[-1])
    assert host.uploads >= 1

    # Neither the key nor the image host's token is written anywhere or shown.
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".html", ".txt", ".log", ".yaml"):
            text = path.read_text(errors="replace")
            assert KEY not in text and TOKEN not in text, path
    assert KEY not in done.stderr + done.stdout and TOKEN not in done.stderr + done.stdout

    again = render(board, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert luma.submissions == 4


def test_a_missing_key_fails_before_anything_is_submitted(tmp_path, luma, host):
    board = chained_storyboard(tmp_path, luma, host)
    done = render(board, stitch_env(TEST_IMAGE_HOST_TOKEN=TOKEN))
    assert done.returncode != 0
    assert "LUMAAI_API_KEY" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert luma.submissions == 0


def test_a_chain_without_an_image_host_is_refused_before_anything_is_submitted(tmp_path, luma):
    board = chained_storyboard(tmp_path, luma, None)
    done = render(board, stitch_env(LUMAAI_API_KEY=KEY))
    assert done.returncode != 0
    said = done.stderr + done.stdout
    assert "continuity" in said and "image-to-video" in said
    assert "Traceback" not in done.stderr
    assert luma.submissions == 0


# -- the engine ---------------------------------------------------------------------------------


def test_first_and_last_frames_go_as_keyframes_through_the_host(tmp_path, luma, host):
    rng = np.random.default_rng(1)
    first = rng.integers(0, 256, (1, 180, 320, 3), dtype=np.uint8)
    last = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)
    take = only(list(engine(luma, host).generate(request(tmp_path, condition=first, last_frame=last))))
    assert not isinstance(take, TakeFailure), take
    job = next(iter(luma.jobs.values()))
    frames = job.params["keyframes"]
    assert frames["frame0"]["type"] == frames["frame1"]["type"] == "image"
    np.testing.assert_array_equal(np.asarray(_image(job.first_frame)), first[-1])
    np.testing.assert_array_equal(np.asarray(_image(job.last_frame)), last)
    assert job.params["duration"] == "5s" and job.params["aspect_ratio"] == "16:9"
    assert job.params["resolution"] == "720p" and job.params["model"] == "ray-2"


def test_rate_limits_are_waited_out_as_retry_after_says(tmp_path, luma, monkeypatch):
    waits: list[float] = []
    sleep = time.sleep
    monkeypatch.setattr(hosted_base.time, "sleep", lambda s: (waits.append(s), sleep(s)))
    luma.rate_limit, luma.retry_after = 2, 0.3
    take = only(list(engine(luma).generate(request(tmp_path))))
    assert not isinstance(take, TakeFailure), take
    assert luma.rate_limited >= 1
    assert waits.count(0.3) == luma.rate_limited


def test_server_errors_are_retried(tmp_path, luma):
    luma.server_errors = [500, 503, 502]
    take = only(list(engine(luma).generate(request(tmp_path))))
    assert not isinstance(take, TakeFailure), take
    assert luma.server_errors == []
    assert luma.submissions == 1


@pytest.mark.parametrize("prompt, reason", [
    (f"a harbour, {REFUSED_AT_SUBMIT}", "advanced moderation failed"),
    (f"a harbour, {REFUSED_AFTER_RUN}", "flagged by content moderation"),
])
def test_a_moderation_refusal_is_the_candidates_failure(tmp_path, luma, prompt, reason):
    failure = only(list(engine(luma).generate(request(tmp_path, prompt=prompt))))
    assert isinstance(failure, TakeFailure)
    assert reason in failure.reason and "Luma" in failure.reason


def test_an_expired_result_address_is_asked_for_again(tmp_path, luma):
    luma.stale_urls = 1
    take = only(list(engine(luma).generate(request(tmp_path))))
    assert not isinstance(take, TakeFailure), take
    assert luma.downloads == 1


def test_a_result_address_that_stays_expired_fails_the_candidate(tmp_path, luma):
    luma.url_ttl = -1.0
    failure = only(list(engine(luma).generate(request(tmp_path))))
    assert isinstance(failure, TakeFailure)
    assert "expired" in failure.reason


def test_a_job_past_its_timeout_is_cancelled(tmp_path, luma):
    luma.running = 30.0
    failure = only(list(engine(luma, timeout=1).generate(request(tmp_path))))
    assert isinstance(failure, TakeFailure)
    assert "did not finish within 1 s" in failure.reason
    job_id = next(iter(luma.jobs))
    assert ("DELETE", f"/dream-machine/v1/generations/{job_id}") in luma.requests
    assert luma.jobs[job_id].cancelled


def test_a_rejected_key_makes_the_engine_unavailable_without_showing_it(tmp_path, luma, monkeypatch):
    wrong = "luma-wrong-key-0a1b2c3d4e5f"
    monkeypatch.setenv("LUMAAI_API_KEY", wrong)
    with pytest.raises(EngineUnavailable) as caught:
        list(engine(luma).generate(request(tmp_path)))
    assert "LUMAAI_API_KEY" in str(caught.value) and wrong not in str(caught.value)
    assert luma.submissions == 0


def test_a_refused_upload_fails_the_candidate_before_luma_is_paid(tmp_path, luma, host, monkeypatch):
    monkeypatch.setenv("TEST_IMAGE_HOST_TOKEN", "not-the-token-1234")
    frame = np.zeros((1, 180, 320, 3), np.uint8)
    failure = only(list(engine(luma, host).generate(request(tmp_path, condition=frame))))
    assert isinstance(failure, TakeFailure)
    assert "image_host refused" in failure.reason and "TEST_IMAGE_HOST_TOKEN" in failure.reason
    assert "not-the-token-1234" not in failure.reason
    assert luma.submissions == 0


def test_a_negative_prompt_is_refused_not_dropped(tmp_path, luma):
    failure = only(list(engine(luma).generate(request(tmp_path, negative_prompt="fog"))))
    assert isinstance(failure, TakeFailure) and "no negative prompt" in failure.reason
    assert luma.submissions == 0


def test_images_without_an_image_host_are_refused_up_front(tmp_path, luma):
    frame = np.zeros((1, 180, 320, 3), np.uint8)
    caps = LumaEngine.capabilities_for(engine(luma).settings)
    assert not caps.image_to_video and "image" not in caps.kinds
    with pytest.raises(EngineUnavailable, match="image_host"):
        list(engine(luma).generate(request(tmp_path, condition=frame)))
    assert luma.submissions == 0


def test_the_fake_refuses_data_uris_as_the_docs_do(luma):
    body = {"model": "ray-2", "prompt": "x",
            "keyframes": {"frame0": {"type": "image", "url": "data:image/png;base64,iVBORw0KGgo="}}}
    answer = httpx.post(luma.api_url + "/generations/video", json=body,
                        headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 400 and "data URIs" in answer.json()["detail"]
    assert luma.submissions == 0


def test_settings_check_luma_inputs_and_price_by_resolution():
    with pytest.raises(ConfigError, match="takes no input seed"):
        LumaEngine.settings_for({"input": {"seed": 3}})
    with pytest.raises(ConfigError, match="resolution"):
        LumaEngine.settings_for({"input": {"resolution": "8k"}})
    with pytest.raises(ConfigError, match=r"\{name\}"):
        LumaEngine.settings_for({"image_host": {"upload": "https://cdn.example.com/frames"}})
    flash = LumaEngine.settings_for({"model": "ray-flash-2", "input": {"resolution": "1080p"}})
    assert LumaEngine.price_per_second(flash) == pytest.approx(0.110)
    assert LumaEngine.settings_for({"model": "ray-3", "input": {"anything": 1}})  # unknown: passed
    assert LumaEngine.fit_duration("ray-2", 6.0) == 9.0
    assert LumaEngine.fit_aspect("ray-2", 2560, 1080) == "21:9"


def _image(data: bytes | None):
    from PIL import Image

    assert data is not None
    return Image.open(io.BytesIO(data)).convert("RGB")
