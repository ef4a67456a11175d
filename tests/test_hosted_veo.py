"""The veo engine against a fake Gemini API over real HTTP (`tests/fakes/veo.py`).

The engine's real client code (google-genai, pointed at the fake with `base_url`) makes
real requests; the fake makes real mp4 files with ffmpeg. No test reaches Google.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from fakes.veo import VeoService
from PIL import Image

from stitchcraft.engines.base import SegmentRequest, Take, TakeFailure
from stitchcraft.engines.hosted.base import png
from stitchcraft.engines.hosted.veo import VeoEngine
from stitchcraft.errors import ConfigError, EngineUnavailable
from stitchcraft.generate.jobs import JobBook, JobJournal
from stitchcraft.media import probe
from stitchcraft.store import TakeStore

KEY = "test-key-5f3a9c0e7d21b4"
STITCH = Path(sys.executable).with_name("stitch")


@pytest.fixture
def service(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A started fake; `@pytest.mark.parametrize("service", [{...}], indirect=True)` sets
    its options."""
    options = {"queued": 0.05, "running": 0.15, **getattr(request, "param", {})}
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with VeoService(tmp_path / "fake", keys=(KEY,), **options) as fake:
        yield fake


def engine_for(service: VeoService, **settings) -> VeoEngine:
    return VeoEngine(VeoEngine.settings_for({"base_url": service.base_url, "poll_interval": 0.05,
                                             **settings}))


def make(engine: VeoEngine, journal: Path, seeds=(1,), frames: int = 48,
         prompt: str = "a lighthouse", **fields):
    """Runs `engine.generate` for one segment; returns its takes and failures by seed."""
    book = JobBook(JobJournal(journal), {seed: f"take{seed:04d}" + "0" * 56 for seed in seeds},
                   engine="veo")
    request = SegmentRequest(shot_id="a", segment=0, kind="prompt", frames=frames, width=320,
                             height=180, fps=Fraction(24), seeds=list(seeds), prompt=prompt, jobs=book,
                             **fields)
    return {made.seed: made for made in engine.generate(request)}


def frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)


def decoded(value: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(value["bytesBase64Encoded"]))).convert("RGB"))


# -- the render, end to end -----------------------------------------------------------


@pytest.mark.parametrize("service", [{"flagged_seeds": (2,), "rate_limit": 9}], indirect=True)
def test_render_chains_refuses_one_and_never_submits_twice(service: VeoService, tmp_path: Path):
    storyboard = tmp_path / "board.yaml"
    storyboard.write_text(textwrap.dedent(f"""
        version: 1
        title: veo
        output: {{path: out/veo.mp4, size: 320x180, fps: 24}}
        engines:
          veo: {{base_url: "{service.base_url}", poll_interval: 0.05}}
        shots:
          - {{id: a, prompt: "a harbour at dawn", duration: 2, engine: veo, candidates: 2}}
          - {{id: b, prompt: "boats leave the harbour", duration: 3, engine: veo, candidates: 2,
              continuity: chain}}
    """))
    env = {**os.environ, "STITCHCRAFT_DEBUG": "1"}
    run = subprocess.run([str(STITCH), "render", str(storyboard), "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert probe(tmp_path / "out/veo.mp4", count_frames=True).frames == 5 * 24
    assert service.submissions == 4 and service.rate_limited > 0

    manifest = json.loads((tmp_path / "out/veo.manifest.json").read_text())
    first, chained = manifest["shots"]["a"], manifest["shots"]["b"]
    [segment] = first["segments"]
    [refused] = segment["failed"]  # the second submission was withheld by the filters
    assert "safety filters" in refused["reason"] and "Responsible AI" in refused["reason"]
    assert refused["job"].startswith("models/veo-3.1-generate-preview/operations/")
    for shot in (first, chained):
        for candidate in shot["segments"][0]["candidates"]:
            assert candidate["provider"] == "Google Veo"
            assert candidate["job"].startswith("models/veo-3.1-generate-preview/operations/")
            assert candidate["billed_seconds"] == 4.0 and candidate["cost"] == pytest.approx(1.6)
    assert len(chained["segments"][0]["candidates"]) == 2

    # The chained shot's submissions started on the chosen take's last frame, exactly.
    store = TakeStore(tmp_path / ".stitchcraft/cache")
    tail = store.get(first["chosen"]).tail()[-1]
    chained_requests = [r for r in service.received if "image" in r["instances"][0]]
    assert len(chained_requests) == 2
    for sent in chained_requests:
        assert sent["instances"][0]["image"]["mimeType"] == "image/png"
        assert np.array_equal(decoded(sent["instances"][0]["image"]), tail)

    # The key is nowhere: not in what was written, not in what was said.
    assert KEY not in run.stdout + run.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".html", ".yaml", ".txt", ".log"):
            assert KEY not in path.read_text(errors="replace"), path

    again = subprocess.run([str(STITCH), "render", str(storyboard), "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert service.submissions == 4


def test_missing_key_fails_before_any_submission(service: VeoService, tmp_path: Path):
    storyboard = tmp_path / "board.yaml"
    storyboard.write_text(textwrap.dedent(f"""
        version: 1
        output: {{path: out/veo.mp4, size: 320x180, fps: 24}}
        engines:
          veo: {{base_url: "{service.base_url}"}}
        shots:
          - {{id: a, prompt: "a harbour", duration: 2, engine: veo}}
    """))
    env = {k: v for k, v in os.environ.items() if k != "GEMINI_API_KEY"}
    run = subprocess.run([str(STITCH), "render", str(storyboard), "--json"], cwd=tmp_path,
                         env={**env, "STITCHCRAFT_DEBUG": "1"}, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode != 0
    assert "GEMINI_API_KEY" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert service.submissions == 0 and service.requests == []


# -- behaving well towards the provider ----------------------------------------------------


@pytest.mark.parametrize("service", [{"rate_limit": 2, "retry_after": 0.3}], indirect=True)
def test_rate_limit_waits_the_delay_google_asks(service: VeoService, tmp_path: Path):
    made = make(engine_for(service), tmp_path / "jobs")
    assert isinstance(made[1], Take)
    assert service.rate_limited >= 2 and service.submissions == 1
    log = [entry for entry in service.log if not entry[2].startswith("/results/")]
    for (when, _, _, status), (after, _, _, _) in zip(log, log[1:], strict=False):
        if status == 429:
            assert after - when >= 0.29


@pytest.mark.parametrize("service", [{"fail_next": {"submit": 2, "poll": 2, "download": 1}}],
                         indirect=True)
def test_overloaded_answers_are_retried(service: VeoService, tmp_path: Path):
    made = make(engine_for(service), tmp_path / "jobs")
    assert isinstance(made[1], Take), made[1]
    assert service.submissions == 1
    assert [s for _, _, _, s in service.log].count(503) == 5
    assert probe(made[1].source).duration == pytest.approx(4.0, abs=0.05)


@pytest.mark.parametrize("service", [{"flagged_seeds": (1,)}], indirect=True)
def test_filtered_video_is_a_failed_candidate_with_googles_reason(service: VeoService,
                                                                  tmp_path: Path):
    made = make(engine_for(service), tmp_path / "jobs", seeds=(7, 8))
    failed = [m for m in made.values() if isinstance(m, TakeFailure)]
    assert len(failed) == 1 and len([m for m in made.values() if isinstance(m, Take)]) == 1
    assert "withheld by Google's safety filters" in failed[0].reason
    assert "Support codes: 17301594" in failed[0].reason


def test_prompt_refused_at_submission_makes_no_job(service: VeoService, tmp_path: Path):
    made = make(engine_for(service), tmp_path / "jobs", prompt="a forbidden-at-submit scene")
    failure = made[1]
    assert isinstance(failure, TakeFailure)
    assert "INVALID_ARGUMENT" in failure.reason and "usage guidelines" in failure.reason
    assert service.submissions == 0


@pytest.mark.parametrize("service", [{"url_ttl": 0.0}], indirect=True)
def test_video_past_its_retention_is_reported_expired(service: VeoService, tmp_path: Path):
    made = make(engine_for(service), tmp_path / "jobs")
    assert isinstance(made[1], TakeFailure)
    assert "PERMISSION_DENIED" in made[1].reason and "two days" in made[1].reason
    downloads = [e for e in service.log if e[2].endswith(":download")]
    assert len(downloads) == 2  # asked again after a fresh poll, once
    assert service.downloads == 0


@pytest.mark.parametrize("service", [{"running": 30.0}], indirect=True)
def test_job_past_its_timeout_is_cancelled(service: VeoService, tmp_path: Path):
    made = make(engine_for(service, timeout=1), tmp_path / "jobs")
    assert isinstance(made[1], TakeFailure)
    assert "did not finish within 1 s" in made[1].reason
    [job] = service.jobs.values()
    assert service.cancels == [f"models/veo-3.1-generate-preview/operations/{job.id}"]
    # The best-effort cancel was not accepted (404): the job may go on, and be billed.
    assert "cancelled" not in made[1].reason and "Google Veo has no cancel" in made[1].reason
    assert "may still finish and be billed" in made[1].reason


@pytest.mark.parametrize("service", [{"submit_delay": 1.5}], indirect=True)
def test_submission_cut_off_is_never_submitted_again(service: VeoService, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(VeoEngine, "REQUEST_TIMEOUT", 0.5)
    engine = engine_for(service)
    for _ in range(2):
        made = make(engine, tmp_path / "jobs")
        assert isinstance(made[1], TakeFailure)
        assert "may be running and billed" in made[1].reason
    assert service.submissions == 1


def test_rejected_key_makes_the_engine_unavailable(service: VeoService, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    wrong = "wrong-key-0a1b2c3d4e5f6a7b"
    monkeypatch.setenv("GEMINI_API_KEY", wrong)
    with pytest.raises(EngineUnavailable) as caught:
        make(engine_for(service), tmp_path / "jobs")
    message = str(caught.value)
    assert "GEMINI_API_KEY" in message and "API key not valid" in message
    assert wrong not in message and wrong[:12] not in message
    assert service.submissions == 0


# -- what Veo is asked -----------------------------------------------------------------


def test_first_and_last_frame_and_negative_prompt_are_sent(service: VeoService, tmp_path: Path):
    tail, last = frame(1), frame(2)
    made = make(engine_for(service), tmp_path / "jobs", frames=71, negative_prompt="fog",
                condition_frames=tail[None], last_frame=last)
    assert isinstance(made[1], Take)
    assert made[1].start == pytest.approx(1 / 24)  # the take starts one frame in
    [sent] = service.received
    instance, parameters = sent["instances"][0], sent["parameters"]
    assert np.array_equal(decoded(instance["image"]), tail)
    assert np.array_equal(decoded(instance["lastFrame"]), last)
    assert parameters == {"aspectRatio": "16:9", "durationSeconds": 4, "negativePrompt": "fog"}
    assert "seed" not in json.dumps(sent)


def test_reference_image_asks_eight_seconds(service: VeoService, tmp_path: Path):
    reference = tmp_path / "ref.png"
    reference.write_bytes(png(frame(3)))
    made = make(engine_for(service), tmp_path / "jobs", references=[reference])
    assert isinstance(made[1], Take)
    assert made[1].meta["billed_seconds"] == 8.0 and made[1].meta["cost"] == pytest.approx(3.2)
    [sent] = service.received
    [ref] = sent["instances"][0]["referenceImages"]
    assert ref["referenceType"] == "asset" and np.array_equal(decoded(ref["image"]), frame(3))
    assert sent["parameters"]["durationSeconds"] == 8


def test_three_reference_images_reach_reference_images_in_order(service: VeoService,
                                                               tmp_path: Path):
    paths = []
    for seed in (3, 4, 5):
        paths.append(tmp_path / f"ref{seed}.png")
        paths[-1].write_bytes(png(frame(seed)))
    engine = engine_for(service)
    assert VeoEngine.capabilities_for(engine.settings).references == 3
    made = make(engine, tmp_path / "jobs", references=paths)
    assert isinstance(made[1], Take)
    [sent] = service.received
    refs = sent["instances"][0]["referenceImages"]
    assert [ref["referenceType"] for ref in refs] == ["asset"] * 3
    for ref, path, seed in zip(refs, paths, (3, 4, 5), strict=True):
        assert base64.b64decode(ref["image"]["bytesBase64Encoded"]) == path.read_bytes()
        assert np.array_equal(decoded(ref["image"]), frame(seed))
    # The Fast model takes none (a strict reading of the docs): its limit is 0.
    assert VeoEngine.capabilities_for(VeoEngine.settings_for(
        {"model": "veo-3.1-fast-generate-preview"})).references == 0


def test_model_without_last_frame_refuses_before_submitting(service: VeoService, tmp_path: Path):
    made = make(engine_for(service, model="veo-3.0-fast-generate-001"), tmp_path / "jobs",
                condition_frames=frame(1)[None], last_frame=frame(2))
    assert isinstance(made[1], TakeFailure) and "takes no last frame" in made[1].reason
    assert service.submissions == 0


def test_fake_is_strict_about_the_wire(service: VeoService):
    import httpx

    url = f"{service.base_url}/v1beta/models/veo-2.0-generate-001:predictLongRunning"
    headers = {"x-goog-api-key": KEY}
    good = {"instances": [{"prompt": "x"}], "parameters": {"durationSeconds": 5}}
    assert httpx.post(url, json=good, headers=headers).status_code == 200
    for bad in ({**good, "seed": 1},
                {"instances": [{"prompt": "x"}], "parameters": {"durationSeconds": 4}},
                {"instances": [{"prompt": "x"}], "parameters": {"durationSeconds": "5"}},
                {"instances": [{"prompt": "x"}], "parameters": {"resolution": "1080p"}}):
        answer = httpx.post(url, json=bad, headers=headers)
        assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert httpx.post(url, json=good).status_code == 403
    assert httpx.post(url.replace("v1beta", "v1"), json=good, headers=headers).status_code == 404
    assert service.submissions == 1


# -- settings and capabilities -----------------------------------------------------------


def test_settings_check_input_for_known_models():
    VeoEngine.settings_for({"input": {"resolution": "1080p", "personGeneration": "allow_adult"}})
    VeoEngine.settings_for({"model": "veo-9-unknown", "input": {"anything": 1}})
    for settings, words in (({"input": {"seed": 3}}, "takes no seed"),
                            ({"input": {"fps": 30}}, "not a Veo field"),
                            ({"input": {"resolution": "8k"}}, "'8k' is not one of"),
                            ({"model": "veo-2.0-generate-001", "input": {"resolution": "720p"}},
                             "takes no resolution")):
        with pytest.raises(ConfigError, match=words):
            VeoEngine.settings_for(settings)


def test_capabilities_and_prices_follow_the_model():
    veo2 = VeoEngine.settings_for({"model": "veo-2.0-generate-001"})
    assert VeoEngine.durations("veo-2.0-generate-001") == (5.0, 6.0, 8.0)
    assert not VeoEngine.capabilities_for(veo2).first_last_frame
    assert VeoEngine.capabilities_for(veo2).max_seconds == 8.0
    assert VeoEngine.price_per_second(veo2) == 0.35
    fast = VeoEngine.settings_for({"model": "veo-3.1-fast-generate-preview"})
    assert VeoEngine.capabilities_for(fast).first_last_frame
    assert VeoEngine.price_per_second(fast) == 0.15
    assert VeoEngine.price_per_second(VeoEngine.settings_for({"price_per_second": 0.2})) == 0.2
    assert VeoEngine.fit_aspect("veo-3.1-generate-preview", 1080, 1920) == "9:16"
    assert VeoEngine.fit_duration("veo-3.1-generate-preview", 4.5) == 6.0
