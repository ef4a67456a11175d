"""Runway's video models through its API and official SDK (``runwayml``).

A take is one task: ``POST /v1/image_to_video`` (a first frame, and a last frame where
the model takes one, as PNG data URIs in ``promptImage``) or ``POST /v1/text_to_video``
returns the task's id; ``GET /v1/tasks/{id}`` reports ``PENDING``, ``THROTTLED`` (the
organisation's concurrency is used up), ``RUNNING`` (with ``progress``), ``SUCCEEDED``
(``output``: addresses that expire within 24-48 h), ``FAILED`` (``failure`` and
``failureCode`` such as ``SAFETY.INPUT.TEXT``) or ``CANCELLED``; ``DELETE`` cancels it.
Requests carry ``Authorization: Bearer $RUNWAYML_API_SECRET`` and ``X-Runway-Version``.

Retries: the SDK retries 408, 409, 429, 5xx and dropped connections by itself (twice by
default) and sends no idempotency key, so a retried POST whose first attempt reached
Runway makes a second task, billed again. The client is built with ``max_retries=0``
for every call and the shared job loop (`HostedEngine`) owns all retrying: one bounded
budget, Retry-After honoured, and a submission whose fate is unknown (a read timeout,
a connection dropped after the request was sent, a 500) is `Uncertain`, never repeated.
Runway's error table (docs.dev.runwayml.com/errors/errors) names 429, 502, 503 and 504
as safe to retry ("shedding load", "overloaded"): those are retried, POST included.

The models and what each takes are from the ``runwayml`` 5.x request types and
Runway's API reference; where sources disagree the stricter reading is used (noted at
each model). Models not in the table pass through with generic limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import model_validator

from ..base import Capabilities
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
    data_uri,
    retry_after,
)

# The API version this adapter speaks, sent as X-Runway-Version (pinned here rather than
# left to the SDK's default, so an SDK upgrade cannot change the protocol silently).
API_VERSION = "2024-11-06"
# Runway bills in credits; 1 credit = USD 0.01 (docs.dev.runwayml.com/guides/pricing).
USD_PER_CREDIT = 0.01
# Prices per model, credits per generated second, as listed on
# docs.dev.runwayml.com/guides/pricing (not reachable from here: the figures are those
# two public projects copied from that page when they checked it on 2026-09-06 and
# 2026-09-21; they agree with each other).
PRICE_DATE = "2026-09-21"
PROMPT_LIMIT = 1000  # promptText: at most 1000 UTF-16 code units
SEED_LIMIT = 2 ** 32  # seed: 0 .. 4294967295

GEN4_RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
VEO_RATIOS = ("1280:720", "720:1280", "1080:1920", "1920:1080")


def _moderation(value: Any) -> str | None:
    if not isinstance(value, dict) or set(value) - {"publicFigureThreshold"} or \
            value.get("publicFigureThreshold", "auto") not in ("auto", "low"):
        return "must be {publicFigureThreshold: auto | low}"
    return None


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _mp4(value: Any) -> str | None:
    return None if value == "mp4" else ("must be mp4: stitchcraft cuts the take from an mp4 "
                                        "(the other formats are zips or ProRes)")


@dataclass(frozen=True)
class RunwayModel:
    """What one Runway model takes.

    Attributes:
        durations: Seconds it makes, ascending.
        image_ratios: ``ratio`` values for image-to-video (empty: no image-to-video).
        text_ratios: ``ratio`` values for text-to-video (empty: no text-to-video).
        last_frame: Takes ``promptImage`` ``position: last`` (beside a first frame).
        seed, negative_prompt: Takes ``seed`` / ``negativePrompt``.
        prompt_required: ``promptText`` is required with an image too.
        credits: Credits per second (with ``audio: false`` where `silent_credits` is set).
        silent_credits: Credits per second without generated audio, where it differs.
        inputs: The model-specific fields ``input:`` may set, each with its check.
    """

    durations: tuple[float, ...]
    image_ratios: tuple[str, ...]
    text_ratios: tuple[str, ...] = ()
    last_frame: bool = False
    seed: bool = True
    negative_prompt: bool = False
    prompt_required: bool = False
    credits: float = 0.0
    silent_credits: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, RunwayModel] = {
    # Flagship; text- and image-to-video, any whole second from 2 to 10.
    "gen4.5": RunwayModel(
        durations=tuple(float(s) for s in range(2, 11)), image_ratios=GEN4_RATIOS,
        text_ratios=("1280:720", "720:1280"), prompt_required=True, credits=12,
        inputs={"contentModeration": _moderation, "outputFormat": _mp4}),
    # Image-to-video only. Its duration is typed as any integer in the SDK; the API
    # reference listed 5 and 10 (newer third-party pages say 2-10): 5/10 is the strict
    # reading.
    "gen4_turbo": RunwayModel(
        durations=(5.0, 10.0), image_ratios=GEN4_RATIOS, credits=5,
        inputs={"contentModeration": _moderation}),
    # Legacy image-to-video, first and/or last frame. ComfyUI's docs report Runway retired
    # it on 2026-07-30 and runwayml 5.24 no longer lists it: kept for accounts that still
    # have it; a retired model is answered 400 and reported as a refusal.
    "gen3a_turbo": RunwayModel(
        durations=(5.0, 10.0), image_ratios=("1280:768", "768:1280"), last_frame=True,
        prompt_required=True, credits=5, inputs={"contentModeration": _moderation}),
    # Veo 3 through Runway: 8 s only; the SDK types disagree on its ratios over time and
    # on its seed (the intersection: 16:9 and 9:16 at 720p, no seed).
    "veo3": RunwayModel(
        durations=(8.0,), image_ratios=("1280:720", "720:1280"),
        text_ratios=("1280:720", "720:1280"), seed=False, credits=40),
    "veo3.1": RunwayModel(
        durations=(4.0, 6.0, 8.0), image_ratios=VEO_RATIOS, text_ratios=VEO_RATIOS,
        last_frame=True, negative_prompt=True, credits=40, silent_credits=20,
        inputs={"audio": _boolean}),
    "veo3.1_fast": RunwayModel(
        durations=(4.0, 6.0, 8.0), image_ratios=VEO_RATIOS, text_ratios=VEO_RATIOS,
        last_frame=True, negative_prompt=True, credits=15, silent_credits=10,
        inputs={"audio": _boolean}),
}

# A model not in the table (Runway also resells Kling, Seedance, Wan, ...): the gen4
# ratios, 5/10 s, first frame only, and the dearest known price, so budgets err high.
GENERIC = RunwayModel(durations=(5.0, 10.0), image_ratios=GEN4_RATIOS, text_ratios=GEN4_RATIOS,
                      credits=max(m.credits for m in MODELS.values()))

# Request fields the engine sets from the shot; ``input:`` may not set them.
RESERVED = frozenset({"model", "promptText", "promptImage", "ratio", "duration", "seed",
                      "negativePrompt"})


def model_spec(model: str) -> RunwayModel:
    return MODELS.get(model, GENERIC)


class RunwaySettings(HostedSettings):
    """``engines.runway:``: the hosted settings, with ``input:`` checked per model."""

    @model_validator(mode="after")
    def _check_input(self) -> RunwaySettings:
        model = self.model or RunwayEngine.DEFAULT_MODEL
        taken = sorted(RESERVED & set(self.input))
        if taken:
            raise ValueError(f"input: {', '.join(taken)} is set by stitchcraft from the shot "
                             "(prompt, image, duration, aspect, seed); remove it from input:")
        spec = MODELS.get(model)
        if spec is None:
            return self  # a model this table does not know: passed through as written
        for key, value in self.input.items():
            check = spec.inputs.get(key)
            if check is None:
                allowed = ", ".join(sorted(spec.inputs)) or "none"
                raise ValueError(f"input: Runway model '{model}' takes no field '{key}' "
                                 f"(fields it takes: {allowed})")
            problem = check(value)
            if problem:
                raise ValueError(f"input.{key} for Runway model '{model}' {problem}")
        return self


class RunwayEngine(HostedEngine):
    """Runway's text- and image-to-video models (gen4.5, gen4_turbo, veo3.1, ...)."""

    NAME = "runway"
    DESCRIPTION = "Runway API (runwayml): gen4.5, gen4_turbo, veo3.1, ... at Runway"
    SETTINGS = RunwaySettings
    PROVIDER = "Runway"
    KEY_VARS = ("RUNWAYML_API_SECRET",)
    SDK = "runwayml"
    DEFAULT_MODEL = "gen4.5"
    DURATIONS = MODELS["gen4.5"].durations
    ASPECTS = GEN4_RATIOS
    PRICE_PER_SECOND = (MODELS["gen4.5"].credits * USD_PER_CREDIT, PRICE_DATE)
    TYPICAL_SECONDS = 90.0
    CAN_CANCEL = True
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt", "image"}), text_to_video=True,
                                image_to_video=True, condition_frames=1)

    # -- what each model offers ------------------------------------------------------------

    @classmethod
    def durations(cls, model: str) -> tuple[float, ...]:
        return model_spec(model).durations

    @classmethod
    def aspects(cls, model: str, *, image: bool = False) -> tuple[str, ...]:
        """The ratios of the endpoint the job goes to (gen4.5 makes six ratios from an
        image but two from text); a model without that endpoint answers the other's, and
        the request is refused before it is sent."""
        spec = model_spec(model)
        ratios = spec.image_ratios if image else spec.text_ratios
        return ratios or spec.image_ratios or spec.text_ratios

    @classmethod
    def model_capabilities(cls, model: str) -> Capabilities:
        spec = model_spec(model)
        return Capabilities(kinds=frozenset({"prompt", "image"}),
                            text_to_video=bool(spec.text_ratios),
                            image_to_video=bool(spec.image_ratios),
                            first_last_frame=spec.last_frame, condition_frames=1)

    @classmethod
    def tariff(cls, model: str, settings: HostedSettings, seconds: float, *, image: bool,
               references: bool) -> Bill:
        """Credits per second by model; the Veo 3.1 models cost less without sound
        (``input: {audio: false}``)."""
        spec = model_spec(model)
        credits = spec.silent_credits if settings.input.get("audio") is False and \
            spec.silent_credits is not None else spec.credits
        asked = cls.fit_duration(model, seconds)
        return Bill(asked, asked, asked * credits * USD_PER_CREDIT)

    # -- the protocol ----------------------------------------------------------------------

    def _client(self) -> Any:
        """This thread's SDK client: no retries of its own (see the module docstring)."""

        def make() -> Any:
            import httpx
            from runwayml import RunwayML

            return RunwayML(api_key=self.keys()["RUNWAYML_API_SECRET"],
                            base_url=self.hosted.base_url, runway_version=API_VERSION,
                            max_retries=0, timeout=httpx.Timeout(120.0, connect=15.0))

        return self._thread_client(make)

    def request_body(self, job: Job) -> tuple[str, dict[str, Any]]:
        """The endpoint (``image_to_video`` or ``text_to_video``) and the SDK's arguments
        for `job`.

        Raises:
            Refused: the model cannot make this job (checked before anything is sent).
        """
        spec = model_spec(job.model)
        if job.references:
            # None of the video models in the table takes reference images (runwayml
            # 5.24); Runway's references serve keyframes (`runway_image`).
            raise Refused(f"Runway's {job.model} takes no reference images: make a keyframe "
                          "with runway-image and start the shot from it")
        args: dict[str, Any] = {"model": job.model, "ratio": job.aspect,
                                "duration": int(job.seconds)}
        if job.prompt:
            if len(job.prompt.encode("utf-16-le")) // 2 > PROMPT_LIMIT:
                raise Refused(f"the prompt is longer than Runway's {PROMPT_LIMIT} characters")
            args["prompt_text"] = job.prompt
        if job.first_frame is not None:
            if not spec.image_ratios:
                raise Refused(f"model '{job.model}' does not start from an image")
            if job.prompt is None and spec.prompt_required:
                raise Refused(f"model '{job.model}' needs a prompt beside the image")
            images = [{"uri": data_uri(job.first_frame), "position": "first"}]
            if job.last_frame is not None:
                if not spec.last_frame:
                    raise Refused(f"model '{job.model}' takes no last frame")
                images.append({"uri": data_uri(job.last_frame), "position": "last"})
            args["prompt_image"] = images
            endpoint = "image_to_video"
        else:
            if job.last_frame is not None:
                raise Refused(f"model '{job.model}' needs a first frame with a last frame")
            if not spec.text_ratios:
                raise Refused(f"model '{job.model}' makes video from an image only")
            if not job.prompt:
                raise Refused("text-to-video needs a prompt")
            endpoint = "text_to_video"
        if spec.seed:
            args["seed"] = job.seed % SEED_LIMIT
        if job.negative_prompt and spec.negative_prompt:
            args["negative_prompt"] = job.negative_prompt
        return endpoint, args

    def submit(self, job: Job) -> str:
        endpoint, args = self.request_body(job)
        resource = getattr(self._client(), endpoint)
        try:
            created = resource.create(**args, extra_body=dict(job.input) or None)
        except Exception as exc:
            raise self._translate(exc, f"POST /v1/{endpoint}", submitting=True) from None
        task_id = getattr(created, "id", None)
        if not isinstance(task_id, str) or not task_id:
            # A 2xx means the task exists; without its id it cannot be polled or cancelled.
            raise Uncertain(f"POST /v1/{endpoint} answered without a task id")
        return task_id

    def status(self, job_id: str) -> JobStatus:
        try:
            task = self._client().tasks.retrieve(job_id)
        except Exception as exc:
            raise self._translate(exc, f"GET /v1/tasks/{job_id}") from None
        state = getattr(task, "status", None)
        if state == "PENDING":
            return JobStatus("queued")
        if state == "THROTTLED":
            return JobStatus("throttled")
        if state == "RUNNING":
            progress = getattr(task, "progress", None)
            return JobStatus("running", progress=float(progress) if isinstance(progress, (int, float))
                             else None)
        if state == "SUCCEEDED":
            output = getattr(task, "output", None) or []
            if not output:
                return JobStatus("failed", reason="the task succeeded without an output")
            return JobStatus("succeeded", video=str(output[0]))
        if state == "FAILED":
            code = getattr(task, "failure_code", None)
            failure = getattr(task, "failure", None) or "the task failed"
            return JobStatus("failed", reason=f"{code}: {failure}" if code else str(failure))
        if state == "CANCELLED":
            return JobStatus("cancelled", reason="the task was cancelled or deleted at Runway")
        # Not a documented state: retried within the budget, then the candidate is given
        # up (the task stays journalled, so a later render polls it again).
        raise Transient(f"task {job_id} is in a state this adapter does not know: {state!r}")

    def cancel(self, job_id: str) -> bool:
        try:
            self._client().tasks.delete(job_id)
        except Exception as exc:
            raise self._translate(exc, f"DELETE /v1/tasks/{job_id}") from None
        return True

    def _translate(self, exc: Exception, what: str, *, submitting: bool = False) -> Exception:
        """An SDK exception as the job loop's error.

        A submission is retried only where Runway surely made no task: a 429, a
        documented load-shedding 502/503/504, or a connection that never opened.
        """
        import httpx
        import runwayml

        if isinstance(exc, runwayml.APIStatusError):
            code = exc.status_code
            detail = _error_text(exc)
            if code == 429:
                return RateLimited(f"{what}: 429 {detail}", retry_after(exc.response.headers))
            if code in (401, 403):
                return KeyRejected(f"{what}: HTTP {code} {detail}")
            if code in (502, 503, 504) or (code >= 500 and not submitting):
                return Transient(f"{what}: HTTP {code} {detail}")
            if code >= 500:
                return Uncertain(f"{what}: HTTP {code} {detail} (the task may have been created)")
            if code == 409 and submitting:  # undocumented for Runway: may be a duplicate
                return Uncertain(f"{what}: HTTP {code} {detail}")
            if code in (408, 409):
                return Transient(f"{what}: HTTP {code} {detail}")
            if code == 404 and not submitting:
                return Refused(f"{what}: the task no longer exists at Runway (404)")
            return Refused(f"{what}: HTTP {code} {detail}")
        if isinstance(exc, runwayml.APIConnectionError):
            cause = exc.__cause__
            never_sent = isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout,
                                            httpx.PoolTimeout))
            if submitting and not never_sent:
                return Uncertain(f"{what}: {type(cause or exc).__name__} after the request was sent")
            return Transient(f"{what}: {type(cause or exc).__name__}")
        if isinstance(exc, runwayml.APIResponseValidationError):
            return Uncertain(f"{what}: unreadable answer") if submitting else \
                Transient(f"{what}: unreadable answer")
        if isinstance(exc, runwayml.RunwayMLError):
            return KeyRejected(str(exc)) if "api_key" in str(exc) else Refused(f"{what}: {exc}")
        raise exc


def _error_text(exc: Any) -> str:
    """Runway's ``error`` member (400s carry a human-readable one), else the status."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and body.get("error"):
        issues = body.get("issues")
        extra = f" ({issues})" if issues else ""
        return f"{body['error']}{extra}"[:500]
    return str(getattr(getattr(exc, "response", None), "reason_phrase", "") or "")

