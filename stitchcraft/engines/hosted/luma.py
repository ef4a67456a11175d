"""Luma Dream Machine through the official `lumaai` SDK.

The API (``https://api.lumalabs.ai/dream-machine/v1``, Bearer ``LUMAAI_API_KEY``): a
generation is created with ``POST /generations/video`` (SDK 1.x; the docs' curl
examples use ``POST /generations``) and polled with ``GET /generations/{id}``; its
``state`` goes queued → dreaming → completed (``assets.video``) or failed
(``failure_reason``); ``DELETE /generations/{id}`` removes it. ``keyframes.frame0`` /
``frame1`` (first and last frame) are ``{type: image, url}`` or ``{type: generation,
id}``; durations "5s" and "9s"; seven aspect ratios.

Keyframe images are addresses, not bytes: Luma's docs say "You should upload and use
your own cdn image urls, currently this is the only way to pass an image", so a data
URI is not a documented input. A chained, bridged or ``image:`` shot therefore needs an
``image_host``: stitchcraft PUTs the lossless PNG there (named by its content hash, so a
retry uploads the same object), checks that the public address serves it, and sends
that address. Without one the engine makes text-to-video shots only, and the
storyboard check refuses the others before anything is submitted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from ...errors import EngineUnavailable
from ...storyboard import EngineSettings, Model
from ..base import Availability, Capabilities, SegmentRequest, Take, TakeFailure
from .base import (
    Bill,
    HostedEngine,
    HostedSettings,
    Job,
    JobStatus,
    KeyRejected,
    RateLimited,
    Refused,
    Transient,
    Uncertain,
    check_http,
    retry_after,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

RESOLUTIONS = ("540p", "720p", "1080p", "4k")
DEFAULT_RESOLUTION = "720p"

# USD per generated second by model and resolution: the published price of a 5 s
# generation divided by 5 (9 s costs 9/5 of it). Luma bills per million pixels
# ($0.0064/Mpx for ray-2, $0.0022/Mpx for ray-flash-2, 24 fps); the figures are the
# per-generation table of the Comfy-Org partner-node pricing page (2025-10-29), which
# passes Luma's API prices through.
PRICES: dict[str, dict[str, float]] = {
    "ray-2": {"540p": 0.080, "720p": 0.142, "1080p": 0.318, "4k": 1.274},
    "ray-flash-2": {"540p": 0.028, "720p": 0.048, "1080p": 0.110, "4k": 0.438},
}
PRICE_DATE = "2025-10-29"

# `input:` keys Luma's generation request takes besides those stitchcraft fills in
# itself (prompt, model, aspect_ratio, duration, keyframes), for the models it knows.
INPUT_KEYS = {"resolution", "loop", "concepts"}


class ImageHost(Model):
    """Where keyframe images are put so that Luma can fetch them.

    ``{name}`` in both addresses is replaced by the image's content hash plus ``.png``.
    """

    upload: str = Field(pattern=r"^https?://\S+$", max_length=500,
                        description="address the PNG is PUT to, with {name}")
    url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=500,
                            description="public address Luma fetches, with {name} "
                                        "(default: the upload address)")
    token_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100,
                                  description="environment variable holding a Bearer token "
                                              "for the upload (the token is never written)")

    @model_validator(mode="after")
    def _named(self) -> ImageHost:
        for field_name in ("upload", "url"):
            value = getattr(self, field_name)
            if value is not None and "{name}" not in value:
                raise ValueError(f"image_host.{field_name} must contain {{name}} (where the "
                                 "image's name goes), e.g. https://cdn.example.com/frames/{name}")
        return self

    def public(self, name: str) -> str:
        return (self.url or self.upload).replace("{name}", name)


class LumaSettings(HostedSettings):
    """``engines.luma:``: the hosted settings, and where keyframe images go."""

    PLACEMENT = HostedSettings.PLACEMENT | {"image_host"}

    image_host: ImageHost | None = Field(
        default=None, description="where first/last-frame images are uploaded for Luma to "
                                  "fetch (needed by chained, bridged and image shots)")

    @model_validator(mode="after")
    def _known_input(self) -> LumaSettings:
        model = self.model or LumaEngine.DEFAULT_MODEL
        if model not in PRICES:
            return self  # a model stitchcraft does not know: passed through as written
        unknown = sorted(set(self.input) - INPUT_KEYS)
        if unknown:
            raise ValueError(f"Luma's {model} takes no input {', '.join(unknown)} (it takes: "
                             f"{', '.join(sorted(INPUT_KEYS))}; prompt, duration, aspect ratio "
                             "and keyframes come from the shot)")
        resolution = self.input.get("resolution")
        if resolution is not None and resolution not in RESOLUTIONS:
            raise ValueError(f"input.resolution must be one of {', '.join(RESOLUTIONS)}, "
                             f"not {resolution!r}")
        if "loop" in self.input and not isinstance(self.input["loop"], bool):
            raise ValueError("input.loop must be true or false")
        concepts = self.input.get("concepts")
        if concepts is not None and not (isinstance(concepts, list) and all(
                isinstance(c, dict) and set(c) == {"key"} and isinstance(c["key"], str)
                for c in concepts)):
            raise ValueError("input.concepts must be a list of {key: name} (Luma's camera concepts)")
        return self


class LumaEngine(HostedEngine):
    """Luma Dream Machine (ray-2, ray-flash-2): text, first frame, last frame, or both."""

    NAME = "luma"
    VERSION = "1"
    SETTINGS: ClassVar[type[EngineSettings] | None] = LumaSettings
    PROVIDER = "Luma"
    KEY_VARS = ("LUMAAI_API_KEY",)
    SDK = "lumaai"
    DEFAULT_MODEL = "ray-2"
    DURATIONS: ClassVar[tuple[float, ...]] = (5.0, 9.0)
    ASPECTS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21")
    PRICE_PER_SECOND = (PRICES["ray-2"][DEFAULT_RESOLUTION], PRICE_DATE)
    TYPICAL_SECONDS = 120.0
    CAN_CANCEL = True  # DELETE /generations/{id}
    ASSET: ClassVar[str] = "video"  # the member of a completed generation's assets read
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt", "image"}), text_to_video=True,
                                image_to_video=True, first_last_frame=True, condition_frames=1)

    @property
    def luma(self) -> LumaSettings:
        assert isinstance(self.settings, LumaSettings)
        return self.settings

    # -- what it offers ------------------------------------------------------------------

    @classmethod
    def capabilities_for(cls, settings: EngineSettings | None = None) -> Capabilities:
        """Images reach Luma only as addresses: without an `image_host` it makes
        text-to-video shots only."""
        caps = super().capabilities_for(settings)
        chosen = cls.settings_for(settings)
        if isinstance(chosen, LumaSettings) and chosen.image_host is not None:
            return caps
        return dataclasses.replace(caps, kinds=caps.kinds - {"image"}, image_to_video=False,
                                   first_last_frame=False, condition_frames=0)

    @classmethod
    def tariff(cls, model: str, settings: HostedSettings, seconds: float, *, image: bool,
               references: bool) -> Bill:
        """Priced by model and ``input.resolution`` (720p unless set)."""
        table = PRICES.get(model, PRICES["ray-2"])  # an unknown model: ray-2's, the dearer
        rate = table.get(str(settings.input.get("resolution") or DEFAULT_RESOLUTION),
                         table[DEFAULT_RESOLUTION])
        asked = cls.fit_duration(model, seconds)
        return Bill(asked, asked, asked * rate)

    @classmethod
    def availability(cls, settings: EngineSettings | None = None) -> Availability:
        found = super().availability(settings)
        if not found:
            return found
        chosen = cls.settings_for(settings)
        host = chosen.image_host if isinstance(chosen, LumaSettings) else None
        if host is not None and host.token_env and not os.environ.get(host.token_env, "").strip():
            return Availability(False, f"set {host.token_env} to the token for "
                                       "engines.luma.image_host (read from the environment only)")
        return found

    def redact(self, text: str) -> str:
        text = super().redact(text)
        token = self._host_token()
        return text.replace(token, "[key]") if token and len(token) >= 4 else text

    def generate(self, request: SegmentRequest) -> Iterator[Take | TakeFailure]:
        wants_image = request.image is not None or request.last_frame is not None or (
            request.condition_frames is not None and len(request.condition_frames) > 0)
        if wants_image and self.luma.image_host is None:
            raise EngineUnavailable(
                f"shot '{request.shot_id}' gives Luma an image, and Luma takes images only as "
                "public addresses: set engines.luma.image_host (where stitchcraft uploads the "
                "frame) or give the shot another engine")
        yield from super().generate(request)

    # -- the provider's protocol -----------------------------------------------------------

    def client(self) -> Any:
        """The SDK client, made once; its own retries are off (the job loop owns them,
        and a retried POST after a timeout could pay twice)."""
        def make() -> Any:
            import httpx
            import lumaai

            return lumaai.LumaAI(auth_token=self.keys()["LUMAAI_API_KEY"],
                                 base_url=self.hosted.base_url, max_retries=0,
                                 timeout=httpx.Timeout(60.0, connect=15.0))

        return self._shared_client(make)

    def submit(self, job: Job) -> str:
        if job.negative_prompt:
            raise Refused("Luma's API takes no negative prompt: say it in `prompt:` or give "
                          "this shot another engine")
        if job.references:
            raise Refused("Luma's video API takes no reference image")
        keyframes = {}
        if job.first_frame is not None:
            keyframes["frame0"] = {"type": "image", "url": self.host_image(job.first_frame)}
        if job.last_frame is not None:
            keyframes["frame1"] = {"type": "image", "url": self.host_image(job.last_frame)}
        fields: dict[str, Any] = {"model": job.model, "aspect_ratio": job.aspect,
                                  "duration": f"{job.seconds:g}s"}
        if job.prompt:
            fields["prompt"] = job.prompt
        if keyframes:
            fields["keyframes"] = keyframes
        extra = dict(job.input)
        for name in ("resolution", "loop", "concepts"):
            if name in extra:
                fields[name] = extra.pop(name)
        if job.model in PRICES:
            fields.setdefault("resolution", DEFAULT_RESOLUTION)  # the price depends on it
        generation = self._call("submitting the generation", lambda: self.client().generations.create(
            **fields, extra_body=extra or None), submitting=True)
        if not generation.id:
            raise Transient("Luma answered the submission without a generation id")
        return str(generation.id)

    def status(self, job_id: str) -> JobStatus:
        generation = self._call("polling the generation",
                                lambda: self.client().generations.get(job_id))
        state = generation.state
        if state == "completed":
            found = getattr(generation.assets, self.ASSET, None) if generation.assets is not None \
                else None
            if not found:
                return JobStatus("failed", reason=f"completed without its {self.ASSET}")
            return JobStatus("succeeded", video=found)
        if state == "failed":
            return JobStatus("failed", reason=generation.failure_reason or "the generation failed")
        if state == "dreaming":
            return JobStatus("running")
        return JobStatus("queued")

    def cancel(self, job_id: str) -> bool:
        self._call("cancelling the generation", lambda: self.client().generations.delete(job_id))
        return True

    def _call(self, what: str, call: Callable[[], Any], *, submitting: bool = False) -> Any:
        """`call()` with the SDK's errors translated for the job loop."""
        import httpx
        import lumaai

        try:
            return call()
        except lumaai.APIStatusError as exc:
            code = exc.response.status_code
            detail = _detail(exc)
            check_http(code, exc.response.headers, what, detail)
            if code in (401, 403):
                raise KeyRejected(f"HTTP {code}: {detail}") from None
            if code == 402:
                raise KeyRejected(f"HTTP 402 (no credits left?): {detail}") from None
            if code == 404 and not submitting:
                raise Refused(f"the generation is gone (HTTP 404: {detail})") from None
            raise Refused(f"HTTP {code}: {detail}") from None
        except lumaai.APITimeoutError:
            if submitting:
                raise Uncertain(f"{what}: timed out waiting for Luma's answer") from None
            raise Transient(f"{what}: timed out") from None
        except lumaai.APIConnectionError as exc:
            never_sent = isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout))
            if submitting and not never_sent:
                raise Uncertain(f"{what}: the connection dropped ({type(exc.__cause__).__name__})") from None
            raise Transient(f"{what}: connection failed ({type(exc.__cause__).__name__})") from None

    # -- keyframe images ---------------------------------------------------------------------

    def _host_token(self) -> str:
        host = self.luma.image_host if isinstance(self.settings, LumaSettings) else None
        return os.environ.get(host.token_env, "").strip() if host and host.token_env else ""

    def host_image(self, image: bytes) -> str:
        """Uploads a PNG to the image host; returns the public address Luma fetches.

        Raises:
            Transient, RateLimited: the host failed in a way worth retrying.
            Refused: the host refused the upload, or its public address does not serve it.
        """
        import httpx

        host = self.luma.image_host
        assert host is not None
        name = hashlib.sha256(image).hexdigest()[:32] + ".png"
        headers = {"Content-Type": "image/png"}
        token = self._host_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        public = host.public(name)
        try:
            put = httpx.put(host.upload.replace("{name}", name), content=image, headers=headers,
                            timeout=httpx.Timeout(60.0, connect=15.0))
            check_http(put.status_code, put.headers, "uploading the keyframe to image_host")
            if put.status_code >= 300:
                hint = (" (check the token in " + host.token_env + ")") if host.token_env and \
                    put.status_code in (401, 403) else ""
                raise Refused(f"image_host refused the keyframe upload: HTTP {put.status_code}{hint}")
            got = httpx.get(public, timeout=httpx.Timeout(30.0, connect=15.0))
        except httpx.TransportError as exc:
            raise Transient(f"image_host: {type(exc).__name__}") from None
        if got.status_code == 429:
            raise RateLimited("image_host: 429 reading the keyframe back", retry_after(got.headers))
        if got.status_code != 200 or got.content != image:
            raise Refused(f"image_host.url {public} does not serve the uploaded keyframe "
                          f"(HTTP {got.status_code}), so Luma could not fetch it either")
        return public


def _detail(exc: Any) -> str:
    """The message in a Luma error body (``{"detail": ...}``), else the SDK's."""
    body = exc.body
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])[:500]
    return str(exc.message)[:500]
