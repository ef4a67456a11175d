"""A fake of the Gemini API's Imagen endpoint, beside its Veo ones (`VeoService`).

Written from google-genai's ``generate_images`` request (``_GenerateImagesConfig_to_mldev``:
what the Gemini API takes and what the client refuses) and the Imagen guide:

- ``POST /v1beta/models/{model}:predict`` with ``{instances: [{prompt}], parameters}``
  answers at once ``{predictions: [{bytesBase64Encoded, mimeType}]}``: the image is in
  the answer, there is no operation to poll;
- parameters: ``sampleCount`` 1-4, ``aspectRatio`` 1:1, 3:4, 4:3, 9:16, 16:9,
  ``imageSize`` 1K/2K (Standard and Ultra only), ``personGeneration``,
  ``includeRaiReason``, ``includeSafetyAttributes``, ``guidanceScale``,
  ``safetySetting``, ``language``, ``outputOptions``; ``seed``, ``negativePrompt``,
  ``addWatermark`` and ``enhancePrompt`` are refused ("not supported in Gemini API");
  any other name is an unknown field;
- a prompt holding REFUSED_AT_SUBMIT is a 400 (the prompt itself refused); one holding
  REFUSED_AFTER_RUN, or the Nth request in ``flagged_seeds``, comes back filtered: a
  prediction holding only ``raiFilteredReason`` when ``includeRaiReason`` is set, else
  no prediction at all;
- images are served at the 1K sizes the guide lists for each ratio, times
  `image_scale` (tests keep them small).

Keys, errors and rate limits are `VeoService`'s (``x-goog-api-key``; 403 without one,
400 API_KEY_INVALID for a wrong one; 429 RESOURCE_EXHAUSTED with a RetryInfo delay).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .service import REFUSED_AFTER_RUN, REFUSED_AT_SUBMIT, BadRequest, FakeJob, Reply
from .veo import VeoService, error, unknown

MODELS = {"imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001",
          "imagen-4.0-fast-generate-001", "imagen-3.0-generate-002"}
SIZED = {"imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001"}
# The 1K output of each aspect ratio (the Imagen guide's table).
SIZES = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408),
         "16:9": (1408, 768)}
PARAMETERS = {"sampleCount", "aspectRatio", "imageSize", "personGeneration", "includeRaiReason",
              "includeSafetyAttributes", "guidanceScale", "safetySetting", "language",
              "outputOptions"}
NOT_IN_GEMINI_API = {"seed", "negativePrompt", "addWatermark", "enhancePrompt", "storageUri"}
FILTERED = ("Your current safety filter threshold filtered out the generated image. You will "
            "not be charged for blocked images. Try rephrasing the prompt. Support codes: 29310472")


class ImagenService(VeoService):
    """The fake Gemini API with Imagen's ``:predict`` (and Veo's routes beside it).

    Attributes:
        image_scale: The served size as a share of the documented 1K size.
        images: Each image job made, in order (its `FakeJob`, picture in ``video``).
    """

    name = "imagen"

    def __init__(self, *args: Any, image_scale: float = 0.25, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.image_scale = image_scale
        self.images: list[FakeJob] = []

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: bytes) -> Reply:
        rest = path.removeprefix("/v1beta/")
        if method == "POST" and rest.startswith("models/") and rest.endswith(":predict"):
            refused = self._check_key(headers, query)
            if refused is not None:
                return refused
            return self._unavailable("submit") or self._predict(
                rest.removeprefix("models/").removesuffix(":predict"), headers, body)
        return super().route(method, path, query, headers, body)

    def served_size(self, aspect: str) -> tuple[int, int]:
        w, h = SIZES[aspect]
        return (round(w * self.image_scale), round(h * self.image_scale))

    def _predict(self, model: str, headers: dict[str, str], body: bytes) -> Reply:
        if model not in MODELS:
            return error(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta, "
                                           "or is not supported for predict.")
        if not headers.get("content-type", "").startswith("application/json"):
            raise BadRequest("the request body must be application/json")
        try:
            request = json.loads(body)
        except ValueError:
            raise BadRequest("Invalid JSON payload received.") from None
        prompt, parameters = check_predict(request, model)
        with self.lock:
            self.received.append(request)
        if REFUSED_AT_SUBMIT in prompt:
            return error(400, "INVALID_ARGUMENT",
                         "Image generation failed with the following error: The prompt could "
                         "not be submitted. This prompt contains sensitive words that violate "
                         "Google's Responsible AI practices. Support codes: 42876398")
        aspect = parameters.get("aspectRatio", "1:1")
        with self.lock:  # Imagen takes no seed: flagged_seeds count requests from 1
            job = self.new_job(request, seconds=0.0, aspect=(1, 1), prompt=prompt,
                               seed=self.submissions + 1)
            job.kind, job.size = "image", self.served_size(aspect)
            self.images.append(job)
        if job.outcome == "failed" or REFUSED_AFTER_RUN in prompt:
            job.outcome = "failed"
            filtered = [{"raiFilteredReason": FILTERED}] if parameters.get("includeRaiReason") else []
            return Reply.json(200, {"predictions": filtered} if filtered else {})
        picture = self.make_image(job).read_bytes()
        return Reply.json(200, {"predictions": [
            {"mimeType": "image/png", "bytesBase64Encoded": base64.b64encode(picture).decode()}]})


def check_predict(request: Any, model: str) -> tuple[str, dict[str, Any]]:
    """The prompt and parameters of an Imagen request, checked as the Gemini API does.

    Raises:
        BadRequest: a field it does not take, or a value the model does not allow.
    """
    if not isinstance(request, dict):
        raise BadRequest("Invalid JSON payload received. Expected an object.")
    unknown(request, {"instances", "parameters"}, "")
    instances = request.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise BadRequest("instances must hold exactly one instance")
    unknown(instances[0], {"prompt"}, "instances[0].")
    prompt = instances[0].get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("instances[0].prompt is required")
    parameters = request.get("parameters", {})
    if not isinstance(parameters, dict):
        raise BadRequest("parameters must be an object")
    for name in parameters:
        if name in NOT_IN_GEMINI_API:
            raise BadRequest(f"{name} parameter is not supported in Gemini API.")
    unknown(parameters, PARAMETERS, "parameters.")
    count = parameters.get("sampleCount", 4)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 4:
        raise BadRequest("parameters.sampleCount must be from 1 to 4")
    if parameters.get("aspectRatio", "1:1") not in SIZES:
        raise BadRequest(f"parameters.aspectRatio: {parameters.get('aspectRatio')!r} is not "
                         "supported; use 1:1, 3:4, 4:3, 9:16 or 16:9.")
    if "imageSize" in parameters:
        if model not in SIZED:
            raise BadRequest(f"parameters.imageSize isn't supported by {model}.")
        if parameters["imageSize"] not in ("1K", "2K"):
            raise BadRequest("parameters.imageSize must be 1K or 2K")
    if parameters.get("personGeneration", "allow_adult") not in ("dont_allow", "allow_adult",
                                                                 "allow_all"):
        raise BadRequest("parameters.personGeneration must be dont_allow, allow_adult or allow_all")
    return prompt, parameters
