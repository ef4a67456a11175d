"""fal: any video model it hosts, through fal's queue API over httpx.

The model is a setting (``engines.fal.model: fal-ai/kling-video/v2.1/standard/image-to-video``),
so the open and closed models fal hosts are one line away. Fields that differ per model
go under ``input:``.

Why httpx and not ``fal-client``: fal-client 1.0 builds its queue addresses from
``https://`` and a host read once at import (``FAL_QUEUE_RUN_HOST``), with no client
argument for another base URL or transport, so it cannot be pointed at
``http://127.0.0.1`` (or any other endpoint a user names in ``base_url``). It also
retries every timed-out request, POST included, which could submit (and bill) a take
twice. The queue API is small and documented, so this engine speaks it directly.

The protocol (fal.ai/docs, "Queue"):

- ``POST {queue}/{app}`` with the model's input as the JSON body and
  ``Authorization: Key $FAL_KEY`` returns ``{request_id, status_url, response_url,
  cancel_url}``; those addresses are used afterwards (a resumed render that has only
  the request id rebuilds them as fal-client does: ``{queue}/{owner}/{alias}/requests/{id}``).
- ``GET status_url``: ``IN_QUEUE`` (``queue_position``), ``IN_PROGRESS`` (``logs``),
  ``COMPLETED`` (with ``error``/``error_type`` when the app failed).
- ``GET response_url`` once completed: the result, ``{"video": {"url": ...}}`` for the
  video apps; an app's failure answers 4xx/5xx with ``detail`` (a message, or a list of
  ``{loc, msg, type}`` such as ``content_policy_violation``).
- ``PUT cancel_url`` cancels a request that has not finished.
- Images go as data URIs, which fal's apps accept wherever they take a file URL.

Models in `MODELS` have their input names, durations and ``input:`` keys checked against
their published schemas (fal.ai/models/<app>/llms.txt). Any other model is sent
``prompt``, ``image_url`` (the first frame) and ``duration`` as a string of whole seconds
(``"5"``, the form fal's video apps use), and its ``input:`` is passed through as
written, overriding those; its cost is estimated at the highest price in the table.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator, model_validator

from ..base import Capabilities
from .base import (
    HostedSettings,
    Job,
    JobStatus,
    KeyRejected,
    RateLimited,
    Refused,
    Transient,
    Uncertain,
    check_http,
    data_uri,
    retry_after,
)
from .models import ModelSpec, Range, TableEngine, frame_durations

QUEUE_URL = "https://queue.fal.run"
_READ = "2026-12-02"

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    # fal.ai/models/fal-ai/kling-video/v2.1/standard/image-to-video: prompt and image_url
    # required, duration "5" | "10", negative_prompt, cfg_scale 0..1; no seed, no last
    # frame, the image decides the shape. "$0.28 for 5 s, $0.056 each further second".
    ModelSpec("fal-ai/kling-video/v2.1/standard/image-to-video", image="image_url",
              negative_prompt="negative_prompt", durations=(5.0, 10.0), duration_str=True,
              fps=24, aspects=("16:9", "9:16", "1:1"), needs_image=True,
              options={"cfg_scale": Range(0, 1)}, billed_from=5.0,
              price=(0.056, _READ, "fal.ai model page: $0.28 per 5 s, $0.056 per extra second")),
    # fal.ai/models/fal-ai/minimax/hailuo-02/standard/image-to-video: prompt, image_url,
    # end_image_url, duration "6" | "10", resolution 512P | 768P, prompt_optimizer.
    ModelSpec("fal-ai/minimax/hailuo-02/standard/image-to-video", image="image_url",
              last_image="end_image_url", durations=(6.0, 10.0), duration_str=True, fps=25,
              aspects=("16:9", "9:16", "1:1"), needs_image=True,
              options={"resolution": ("512P", "768P"), "prompt_optimizer": bool},
              price_by=("resolution", {"768P": 0.045, "512P": 0.017}),
              price=(0.045, _READ, "fal.ai model page: $0.045/s at 768P, ~$0.017/s at 512P")),
    # fal.ai/models/fal-ai/wan/v2.2-a14b/image-to-video: num_frames 17..161 (Wan makes
    # 4k+1 frames, so those are the counts asked), frames_per_second 4..60 (16 here, the
    # rate fal bills at), seed, negative_prompt, end_image_url, aspect_ratio auto | 16:9 |
    # 9:16 | 1:1 (auto with an image), resolution 480p | 580p | 720p.
    ModelSpec("fal-ai/wan/v2.2-a14b/image-to-video", image="image_url",
              last_image="end_image_url", duration=None, aspect="aspect_ratio", seed="seed",
              negative_prompt="negative_prompt", frames="num_frames",
              frame_counts=(17, 161, 4), fps=16, fps_field="frames_per_second",
              durations=frame_durations(17, 161, 4, 16), aspects=("16:9", "9:16", "1:1"),
              needs_image=True,
              options={"resolution": ("480p", "580p", "720p"), "num_inference_steps": Range(2, 40),
                       "enable_safety_checker": bool, "enable_prompt_expansion": bool,
                       "guidance_scale": Range(1, 10), "shift": Range(1, 10)},
              price_by=("resolution", {"720p": 0.08, "580p": 0.06, "480p": 0.04}),
              price=(0.08, _READ, "fal.ai model page: $0.08 per video second at 720p "
                                  "($0.06 580p, $0.04 480p), seconds counted at 16 fps")),
)}

# An unknown model: the names most fal video apps use; `input:` passes through.
GENERIC = ModelSpec("", image="image_url", durations=(5.0,), duration_str=True,
                    aspects=("16:9", "9:16", "1:1"), known=False)



class FalSettings(HostedSettings):
    """``engines.fal:``: the shared hosted settings, the model an app id of fal's."""

    @field_validator("model")
    @classmethod
    def _app_id(cls, value: str | None) -> str | None:
        import re

        if value is not None and not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)+", value):
            raise ValueError(f"'{value}' is not a fal app id like fal-ai/kling-video/v2.1/"
                             "standard/image-to-video")
        return value

    @model_validator(mode="after")
    def _known_input(self) -> FalSettings:
        FalEngine.spec(self.model or FalEngine.DEFAULT_MODEL).check_input(self.input)
        return self


class FalEngine(TableEngine):
    """A video model hosted on fal (queue API, over httpx)."""

    NAME = "fal"
    DESCRIPTION = "any video model on fal (the app id in the settings)"
    PROVIDER = "fal"
    KEY_VARS = ("FAL_KEY",)
    SDK = "httpx"
    SETTINGS = FalSettings
    MODELS = MODELS
    GENERIC = GENERIC
    DEFAULT_MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
    DURATIONS = MODELS[DEFAULT_MODEL].durations
    ASPECTS = MODELS[DEFAULT_MODEL].aspects
    PRICE_PER_SECOND = MODELS[DEFAULT_MODEL].price[:2]  # type: ignore[index]
    TYPICAL_SECONDS = 240.0
    CAN_CANCEL = True
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt", "image"}), text_to_video=False,
                                image_to_video=True, condition_frames=1)

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self._addresses: dict[str, dict[str, str]] = {}
        self._completed: set[str] = set()  # completed requests: only their result is read

    # -- what the model offers -----------------------------------------------------------

    # -- talking to fal ------------------------------------------------------------------

    @property
    def queue(self) -> str:
        return (self.hosted.base_url or QUEUE_URL).rstrip("/")

    @property
    def http(self) -> Any:
        import httpx

        return self._shared_client(lambda: httpx.Client(
            headers={"Authorization": f"Key {self.keys()['FAL_KEY']}"},
            timeout=httpx.Timeout(60.0, connect=15.0), follow_redirects=True))

    def payload(self, job: Job) -> dict[str, Any]:
        """The app's input for `job`, under the model's field names."""
        if job.references:
            raise Refused(f"{job.model} takes no reference images through stitchcraft")
        return self.spec(job.model).build_input(
            prompt=job.prompt, negative_prompt=job.negative_prompt, seconds=job.seconds,
            aspect=job.aspect, seed=job.seed,
            first_image=data_uri(job.first_frame) if job.first_frame is not None else None,
            last_image=data_uri(job.last_frame) if job.last_frame is not None else None,
            extra=job.input)

    def submit(self, job: Job) -> str:
        import httpx

        payload = self.payload(job)
        try:
            response = self.http.post(f"{self.queue}/{job.model}", json=payload)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Transient(f"submitting: {type(exc).__name__} (not sent)") from None
        except httpx.TransportError as exc:
            raise Uncertain(f"submitting: {type(exc).__name__} after the request was sent") from None
        if response.status_code >= 500 and response.status_code != 503:
            # only "unavailable" surely did no work: another 5xx may have come after the
            # request was queued (and billed)
            raise Uncertain(f"submitting: HTTP {response.status_code} after the request was sent")
        self._check(response, "submitting")
        found = response.json()
        request_id = str(found["request_id"])
        self._addresses[request_id] = {k: found[k] for k in ("status_url", "response_url", "cancel_url")
                                       if isinstance(found.get(k), str)}
        return request_id

    def _address(self, request_id: str, which: str) -> str:
        """A request's status/response/cancel address: as fal gave it, or rebuilt from
        the app id (a resumed render knows only the request id)."""
        given = self._addresses.get(request_id, {}).get(which)
        if given:
            return given
        parts = self.model.split("/")
        app = "/".join(parts[:3] if parts[0] in ("workflows", "comfy") else parts[:2])
        base = f"{self.queue}/{app}/requests/{request_id}"
        return {"status_url": f"{base}/status", "response_url": base,
                "cancel_url": f"{base}/cancel"}[which]

    def status(self, job_id: str) -> JobStatus:
        if job_id in self._completed:  # a retry after the result's answer failed
            return self._result(job_id)
        found = self._get(self._address(job_id, "status_url"), "reading the request's status")
        state = found.get("status")
        if state == "IN_QUEUE":
            return JobStatus("queued")
        if state == "IN_PROGRESS":
            return JobStatus("running")
        if state in ("CANCELED", "CANCELLED"):
            return JobStatus("cancelled", reason="the request was cancelled")
        if state == "FAILED" or (state == "COMPLETED" and found.get("error")):
            return JobStatus("failed", reason=failure(found.get("error"), found.get("error_type")))
        if state != "COMPLETED":
            raise Transient(f"the request is in an unknown state {state!r}")
        self._completed.add(job_id)
        return self._result(job_id)

    def _result(self, job_id: str) -> JobStatus:
        """A completed request's result: its video, or why the app failed."""
        import httpx

        try:
            response = self.http.get(self._address(job_id, "response_url"))
        except httpx.TransportError as exc:
            raise Transient(f"reading the result: {type(exc).__name__}") from None
        check_http(response.status_code, response.headers, "reading the result")
        if response.status_code in (401, 403):
            raise KeyRejected(f"reading the result: HTTP {response.status_code}")
        body = _json(response)
        if response.status_code >= 400:
            return JobStatus("failed", reason=failure(body.get("detail"), response.headers.get(
                "x-fal-error-type")) or f"HTTP {response.status_code}")
        return self.output(body)

    def output(self, body: dict[str, Any]) -> JobStatus:
        """A completed request's result: where its video is."""
        video = body.get("video")
        if not isinstance(video, dict) and isinstance(body.get("videos"), list) and body["videos"]:
            video = body["videos"][0]
        url = video.get("url") if isinstance(video, dict) else None
        if not isinstance(url, str):
            return JobStatus("failed", reason="the result holds no video")
        return JobStatus("succeeded", video=url)

    def cancel(self, job_id: str) -> bool:
        """``PUT cancel_url``: 202 when fal accepts it, 400 when the request has already
        finished (then nothing was cancelled)."""
        import httpx

        try:
            response = self.http.put(self._address(job_id, "cancel_url"))
        except httpx.TransportError as exc:
            raise Transient(f"cancelling: {type(exc).__name__}") from None
        check_http(response.status_code, response.headers, "cancelling")
        return response.status_code < 300

    def _get(self, url: str, what: str) -> dict[str, Any]:
        import httpx

        try:
            response = self.http.get(url)
        except httpx.TransportError as exc:
            raise Transient(f"{what}: {type(exc).__name__}") from None
        self._check(response, what)
        return _json(response)

    def _check(self, response: Any, what: str) -> None:
        """Raises the retry loop's error for a non-2xx answer."""
        code = response.status_code
        if code < 400:
            return
        detail = self.redact(failure(_json(response).get("detail"), None))
        if code == 429:
            raise RateLimited(f"{what}: 429 {detail}".strip(), retry_after(response.headers))
        if code >= 500:
            raise Transient(f"{what}: HTTP {code} {detail}".strip())
        if code in (401, 403):
            raise KeyRejected(f"{what}: HTTP {code} {detail}".strip())
        raise Refused(f"{what}: HTTP {code} {detail}".strip())


def failure(detail: Any, kind: Any) -> str:
    """A fal error's words: a message, or the ``msg`` (and ``type``) of each item of a
    validation-style list."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                text = str(item.get("msg") or "")
                if item.get("type"):
                    text = f"{text} ({item['type']})" if text else str(item["type"])
                parts.append(text)
            else:
                parts.append(str(item))
        text = "; ".join(p for p in parts if p)
    else:
        text = str(detail or "")
    if kind and str(kind) not in text:
        text = f"{text} ({kind})" if text else str(kind)
    return text


def _json(response: Any) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
