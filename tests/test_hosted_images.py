"""The hosted image engines (imagen, runway-image, luma-image, fal-image, replicate-image)
against fakes of their providers over real HTTP, through the same clients as the video
engines: keyframe takes of exactly the shot's size, refusals, resumed jobs, keys and
reference images.

Tested against protocol fakes, not the live services (no network here).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes.fal import FakeFal
from fakes.imagen import ImagenService
from fakes.luma import FakeImageHost, FakeLuma
from fakes.replicate import FakeReplicate
from fakes.runway import RunwayService
from fakes.service import REFUSED_AFTER_RUN, REFUSED_AT_SUBMIT, FakeJob, FakeService
from PIL import Image

from stitchcraft.engines import engine_class
from stitchcraft.engines.base import SegmentRequest, Take, TakeFailure
from stitchcraft.engines.hosted.base import png
from stitchcraft.engines.hosted.images import ImageEngine, nearest_ratio
from stitchcraft.errors import ConfigError, EngineUnavailable
from stitchcraft.generate.jobs import JobBook, JobJournal

HOST_TOKEN = "image-host-token-0c1d2e3f4a5b"


@dataclass
class Provider:
    """How to run one image engine against its fake.

    Attributes:
        engine: The engine's name.
        key_var: Its key's environment variable.
        key: The key the fake accepts.
        start: Starts the fake (folder, key) -> service.
        settings: The engine's settings for a started fake (and image host).
        size: A shot size whose cover scale on the fake's picture is exactly 1 (one
            side matches, the other is cropped), so the reference is a numpy slice.
        seeded: The provider takes a seed (the fake's job records it).
        price: USD of one image at the default model, for `size`.
    """

    engine: str
    key_var: str
    key: str
    start: Callable[[Path, str], FakeService]
    settings: Callable[[Any, FakeImageHost], dict[str, Any]]
    size: tuple[int, int]
    seeded: bool
    price: float
    extra_env: dict[str, str] = field(default_factory=dict)


def _fast(options: dict[str, Any]) -> dict[str, Any]:
    return {"queued": 0.05, "running": 0.1, **options}


PROVIDERS = {
    "imagen": Provider(
        "imagen", "GEMINI_API_KEY", "imagen-test-key-7a1c9e0b3d",
        lambda root, key: ImagenService(root, keys=(key,), **_fast({})),
        lambda fake, host: {"base_url": fake.base_url},
        (320, 192), seeded=False, price=0.04),
    "runway-image": Provider(
        "runway-image", "RUNWAYML_API_SECRET", "rw-test-key-0123456789abcdef",
        lambda root, key: RunwayService(root, keys=(key,), **_fast({})),
        lambda fake, host: {"base_url": fake.base_url},
        (320, 170), seeded=True, price=0.05),
    "luma-image": Provider(
        "luma-image", "LUMAAI_API_KEY", "luma-test-key-5f0c2a9e77d1",
        lambda root, key: FakeLuma(root, keys=(key,), **_fast({})),
        lambda fake, host: {"base_url": fake.api_url, "image_host": {
            "upload": host.template(), "token_env": "TEST_IMAGE_HOST_TOKEN"}},
        (240, 144), seeded=False, price=0.015, extra_env={"TEST_IMAGE_HOST_TOKEN": HOST_TOKEN}),
    "fal-image": Provider(
        "fal-image", "FAL_KEY", "fal-test-key-1b2c3d4e5f6a",
        lambda root, key: FakeFal(root, keys=(key,), **_fast({})),
        lambda fake, host: {"base_url": fake.base_url},
        (304, 170), seeded=True, price=0.003),
    "replicate-image": Provider(
        "replicate-image", "REPLICATE_API_TOKEN", "r8_test_token_9f8e7d6c5b4a",
        lambda root, key: FakeReplicate(root, keys=(key,), **_fast({})),
        lambda fake, host: {"base_url": fake.base_url},
        (320, 192), seeded=True, price=0.003),
}


@dataclass
class Rig:
    provider: Provider
    fake: FakeService
    host: FakeImageHost
    root: Path

    def engine(self, **settings: Any) -> ImageEngine:
        cls = engine_class(self.provider.engine)
        fields = {**self.provider.settings(self.fake, self.host), "poll_interval": 0.05, **settings}
        made = cls(cls.settings_for(fields))
        assert isinstance(made, ImageEngine)
        return made

    def request(self, seeds: list[int], *, prompt: str = "a lighthouse keeper at dusk",
                journal: str = "jobs", size: tuple[int, int] | None = None,
                references: list[Path] | None = None) -> SegmentRequest:
        width, height = size or self.provider.size
        book = JobBook(JobJournal(self.root / journal), {s: f"take-{s}" for s in seeds},
                       self.provider.engine)
        return SegmentRequest(shot_id="k", segment=0, kind="keyframe", frames=1, width=width,
                              height=height, fps=Fraction(24), seeds=seeds, prompt=prompt,
                              references=references or [], jobs=book)

    def images(self) -> list[FakeJob]:
        """The fake's image jobs, in the order they were made."""
        return sorted((j for j in self.fake.jobs.values() if j.kind == "image"),
                      key=lambda j: j.created)


@pytest.fixture(params=sorted(PROVIDERS))
def rig(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[Rig]:
    provider = PROVIDERS[request.param]
    monkeypatch.setenv(provider.key_var, provider.key)
    for name, value in provider.extra_env.items():
        monkeypatch.setenv(name, value)
    with provider.start(tmp_path / "fake", provider.key) as fake, \
            FakeImageHost(tmp_path / "host", token=HOST_TOKEN) as host:
        yield Rig(provider, fake, host, tmp_path)


def served(job: FakeJob) -> np.ndarray:
    """What the fake served for a job, decoded."""
    assert job.video is not None
    return np.asarray(Image.open(io.BytesIO(job.video.read_bytes())).convert("RGB"))


def cropped(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """The cover rule where one side already matches: the centre, (excess // 2) off the
    left or top."""
    h, w = picture.shape[:2]
    assert (w == width and h >= height) or (h == height and w >= width), (w, h, width, height)
    top, left = (h - height) // 2, (w - width) // 2
    return picture[top:top + height, left:left + width]


# -- candidates ---------------------------------------------------------------------------------


def test_two_candidates_are_the_served_pictures_cut_to_the_shot(rig: Rig) -> None:
    width, height = rig.provider.size
    made = list(rig.engine().generate(rig.request([7, 8])))
    assert [m.seed for m in made] == [7, 8]
    assert all(isinstance(m, Take) for m in made), made
    jobs = rig.images()
    assert len(jobs) == 2 and rig.fake.submissions == 2
    for take, job in zip(made, jobs, strict=True):
        assert isinstance(take, Take) and take.frames is not None
        assert take.frames.shape == (1, height, width, 3) and take.frames.dtype == np.uint8
        np.testing.assert_array_equal(take.frames[0], cropped(served(job), width, height))
        assert take.meta["provider"] and take.meta["job"]
        assert take.meta["cost"] == pytest.approx(rig.provider.price)
        assert take.meta["billed_seconds"] == 0.0
    assert not np.array_equal(made[0].frames, made[1].frames)  # type: ignore[union-attr]
    if rig.provider.seeded:
        assert [job.seed for job in jobs] == [7, 8]


def test_a_picture_of_another_shape_is_scaled_to_cover_then_cropped(rig: Rig) -> None:
    """Twice the fake's picture in both sides minus a margin: scaled down by the cover
    rule, so each big colour block keeps its colour at its centre."""
    rig.fake.image_block = 48
    width, height = rig.provider.size
    made = list(rig.engine().generate(rig.request([3], size=(width // 2, height // 2 - 4))))
    [take] = made
    assert isinstance(take, Take) and take.frames is not None
    picture = served(rig.images()[0])
    h, w = picture.shape[:2]
    out_h, out_w = take.frames.shape[1:3]
    assert (out_w, out_h) == (width // 2, height // 2 - 4)
    scale = max(out_w / w, out_h / h)
    resized_w, resized_h = max(out_w, round(w * scale)), max(out_h, round(h * scale))
    left, top = (resized_w - out_w) // 2, (resized_h - out_h) // 2
    checked = 0
    for by in range(0, h, 48):
        for bx in range(0, w, 48):
            # the block's centre in the output, where the block is wide enough to hold it
            y, x = round((by + 24) * scale) - top, round((bx + 24) * scale) - left
            inside = 0 <= y < out_h and 0 <= x < out_w and by + 48 <= h and bx + 48 <= w
            if inside:
                np.testing.assert_allclose(take.frames[0, y, x], picture[by + 24, bx + 24], atol=3)
                checked += 1
    assert checked >= 4


@pytest.mark.parametrize("prompt", [f"a {REFUSED_AFTER_RUN} scene", f"a {REFUSED_AT_SUBMIT} scene"])
def test_a_refused_candidate_is_a_take_failure(rig: Rig, prompt: str) -> None:
    made = list(rig.engine().generate(rig.request([1], prompt=prompt)))
    [failure] = made
    assert isinstance(failure, TakeFailure) and failure.seed == 1
    assert rig.provider.key not in failure.reason
    entry = JobJournal(rig.root / "jobs").read("take-1")
    if REFUSED_AT_SUBMIT in prompt:
        assert "refused" in failure.reason
    else:
        assert entry["state"] == "failed"  # the next render does not pay for it again


def test_a_killed_render_resumes_the_job_without_submitting_again(rig: Rig) -> None:
    first = rig.engine()
    request = rig.request([5])
    assert request.jobs is not None
    job = first.job_for(request, 5)
    # What a render killed after the submission leaves: the intent and the job id.
    request.jobs.submitting(5, provider=first.PROVIDER, model=first.model, request={})
    request.jobs.submitted(5, first.submit(job))
    assert rig.fake.submissions == 1

    made = list(rig.engine().generate(rig.request([5])))  # the next render, a new process
    assert rig.fake.submissions == 1
    [result] = made
    if rig.provider.engine == "imagen":
        # Imagen answers with the picture: a render killed before saving it lost it.
        assert isinstance(result, TakeFailure)
        assert "billed" in result.reason and "--resubmit" in result.reason
    else:
        assert isinstance(result, Take) and result.frames is not None
        width, height = rig.provider.size
        np.testing.assert_array_equal(result.frames[0],
                                      cropped(served(rig.images()[0]), width, height))


def test_a_submission_cut_off_is_not_sent_again(rig: Rig) -> None:
    engine = rig.engine()
    request = rig.request([2])
    assert request.jobs is not None
    request.jobs.submitting(2, provider=engine.PROVIDER, model=engine.model, request={})
    [result] = list(engine.generate(request))
    assert isinstance(result, TakeFailure) and "--resubmit" in result.reason
    assert rig.fake.submissions == 0


def test_a_rejected_key_names_the_variable_and_not_the_key(rig: Rig,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "wrong-key-3e4f5a6b7c8d9e0f"
    monkeypatch.setenv(rig.provider.key_var, wrong)
    with pytest.raises(EngineUnavailable) as raised:
        list(rig.engine().generate(rig.request([1])))
    message = str(raised.value)
    assert rig.provider.key_var in message
    assert wrong not in message and wrong[:12] not in message and rig.provider.key not in message
    assert rig.fake.submissions == 0


def test_capabilities_declare_keyframes_and_a_per_image_price(rig: Rig) -> None:
    cls = engine_class(rig.provider.engine)
    settings = rig.engine().settings
    caps = cls.capabilities_for(settings)
    assert caps.kinds == frozenset({"keyframe"}) and caps.hosted and caps.max_seconds is None
    bill = cls.bill(settings, 5.0, size=rig.provider.size)
    assert bill.usd == pytest.approx(rig.provider.price) and bill.billed_seconds == 0.0
    assert cls.bill(cls.settings_for({**rig.provider.settings(rig.fake, rig.host),
                                      "price_per_image": 0.5}), 0.0).usd == 0.5
    with pytest.raises(ConfigError, match="price_per_image"):
        cls.settings_for({"price_per_second": 0.1})


# -- reference images ----------------------------------------------------------------------------


def _references(tmp_path: Path, count: int) -> tuple[list[Path], list[np.ndarray]]:
    pictures = [np.random.default_rng(100 + i).integers(0, 256, (120 + 20 * i, 160, 3),
                                                          dtype=np.uint8) for i in range(count)]
    paths = []
    for i, picture in enumerate(pictures):
        path = tmp_path / f"ref{i}.png"
        path.write_bytes(png(picture))
        paths.append(path)
    return paths, pictures


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("rig", ["runway-image"], indirect=True)
def test_three_references_reach_runways_reference_images(rig: Rig, tmp_path: Path) -> None:
    paths, pictures = _references(tmp_path, 3)
    assert engine_class("runway-image").capabilities_for(rig.engine().settings).references == 3
    [take] = list(rig.engine().generate(rig.request([4], references=paths)))
    assert isinstance(take, Take)
    [job] = rig.images()
    assert len(job.references) == 3
    for sent, path, picture in zip(job.references, paths, pictures, strict=True):
        assert sent == path.read_bytes()  # the PNG itself, byte for byte
        np.testing.assert_array_equal(_decoded(sent), picture)
    endpoint, body = rig.fake.bodies[-1]  # type: ignore[attr-defined]
    assert endpoint == "text_to_image" and body["model"] == "gen4_image"
    assert [ref["tag"] for ref in body["referenceImages"]] == ["ref1", "ref2", "ref3"]


@pytest.mark.parametrize("rig", ["runway-image"], indirect=True)
def test_the_turbo_model_needs_references_and_is_refused_without(rig: Rig) -> None:
    [failure] = list(rig.engine(model="gen4_image_turbo").generate(rig.request([1])))
    assert isinstance(failure, TakeFailure) and "reference" in failure.reason
    assert rig.fake.submissions == 0


@pytest.mark.parametrize("rig", ["luma-image"], indirect=True)
@pytest.mark.parametrize(("reference_as", "count"), [("image_ref", 3), ("character_ref", 3),
                                                     ("style_ref", 1)])
def test_references_reach_luma_through_the_image_host(rig: Rig, tmp_path: Path, reference_as: str,
                                                      count: int) -> None:
    engine = rig.engine(reference_as=reference_as)
    assert type(engine).capabilities_for(engine.settings).references == (1 if reference_as ==
                                                                          "style_ref" else 4)
    paths, pictures = _references(tmp_path, count)
    [take] = list(engine.generate(rig.request([4], references=paths)))
    assert isinstance(take, Take)
    [job] = rig.images()
    assert [_decoded(r).tobytes() for r in job.references] == [p.tobytes() for p in pictures]
    body = rig.fake.bodies[-1]  # type: ignore[attr-defined]
    assert reference_as in body and not ({"image_ref", "character_ref", "style_ref"} - {reference_as}) & set(body)
    assert rig.host.uploads == count


@pytest.mark.parametrize("rig", ["luma-image"], indirect=True)
def test_luma_takes_no_references_without_an_image_host(rig: Rig) -> None:
    cls = engine_class("luma-image")
    assert cls.capabilities_for(cls.settings_for({})).references == 0


@pytest.mark.parametrize("rig", ["imagen", "fal-image", "replicate-image"], indirect=True)
def test_engines_without_references_say_so_and_refuse_them(rig: Rig, tmp_path: Path) -> None:
    engine = rig.engine()
    assert type(engine).capabilities_for(engine.settings).references == 0
    paths, _ = _references(tmp_path, 1)
    [failure] = list(engine.generate(rig.request([1], references=paths)))
    assert isinstance(failure, TakeFailure) and "reference" in failure.reason
    assert rig.fake.submissions == 0


# -- what each provider is sent ------------------------------------------------------------------


@pytest.mark.parametrize("rig", ["imagen"], indirect=True)
def test_imagen_sends_what_the_gemini_api_takes(rig: Rig) -> None:
    list(rig.engine(input={"personGeneration": "allow_adult"}).generate(rig.request([1, 2])))
    sent = rig.fake.received[-1]  # type: ignore[attr-defined]
    assert sent == {"instances": [{"prompt": "a lighthouse keeper at dusk"}],
                    "parameters": {"sampleCount": 1, "aspectRatio": "16:9", "includeRaiReason": True,
                                   "personGeneration": "allow_adult"}}
    with pytest.raises(ConfigError, match="no seed"):
        engine_class("imagen").settings_for({"input": {"seed": 3}})
    with pytest.raises(ConfigError, match="1K"):
        engine_class("imagen").settings_for({"model": "imagen-4.0-fast-generate-001",
                                              "input": {"imageSize": "2K"}})


@pytest.mark.parametrize("rig", ["fal-image"], indirect=True)
def test_fal_asks_the_shots_size_on_flux_grid_and_bills_per_megapixel(rig: Rig) -> None:
    list(rig.engine(input={"num_inference_steps": 2}).generate(rig.request([9])))
    body = rig.fake.bodies[-1]  # type: ignore[attr-defined]
    assert body == {"prompt": "a lighthouse keeper at dusk", "seed": 9, "num_inference_steps": 2,
                    "image_size": {"width": 304, "height": 176}, "num_images": 1}
    cls = engine_class("fal-image")
    assert cls.bill(None, 0.0, size=(1920, 1080)).usd == pytest.approx(3 * 0.003)  # 2.09 Mpx
    with pytest.raises(ConfigError, match="image_size"):
        cls.settings_for({"input": {"image_size": "square"}})


@pytest.mark.parametrize("rig", ["replicate-image"], indirect=True)
def test_replicate_sends_the_nearest_aspect_and_one_output(rig: Rig) -> None:
    list(rig.engine().generate(rig.request([9])))
    body = rig.fake.bodies[-1]  # type: ignore[attr-defined]
    assert body == {"input": {"prompt": "a lighthouse keeper at dusk", "aspect_ratio": "16:9",
                              "seed": 9, "num_outputs": 1}}
    with pytest.raises(ConfigError, match="num_outputs"):
        engine_class("replicate-image").settings_for({"input": {"num_outputs": 2}})


def test_runway_asks_the_smallest_resolution_that_covers_the_shot() -> None:
    ratios = ("1280:720", "1920:1080", "1360:768", "720:1280", "1024:1024")
    assert nearest_ratio(ratios, 320, 180) == "1280:720"
    assert nearest_ratio(ratios, 1600, 900) == "1920:1080"
    assert nearest_ratio(ratios, 2560, 1440) == "1920:1080"  # none covers: the largest
    assert nearest_ratio(ratios, 500, 500) == "1024:1024"
    cls = engine_class("runway-image")
    assert cls.bill(None, 0.0, size=(320, 180)).usd == pytest.approx(0.05)  # 720p: 5 credits
    assert cls.bill(None, 0.0, size=(1920, 1080)).usd == pytest.approx(0.08)  # 1080p: 8


def test_the_image_engines_are_registered_and_cheap_to_list() -> None:
    for name in PROVIDERS:
        cls = engine_class(name)
        assert issubclass(cls, ImageEngine) and cls.NAME == name
        assert cls.durations(cls.DEFAULT_MODEL) == () and cls.price_per_second() == 0.0
