"""Keyframes from text-to-image diffusers pipelines: FLUX, Stable Diffusion XL, SD 3.

One engine serves any checkpoint ``AutoPipelineForText2Image`` loads (it reads the
pipeline class from the checkpoint's model_index.json); `FluxEngine`, `SDXLEngine` and
`SD3Engine` only choose the default checkpoint, the defaults that suit it and its size
rule. Loading, placing, batching seeds, out-of-memory retries and fingerprints are the
video engines' (`runtime.DiffusionEngine`).

An optional IP-Adapter (``engines.<name>.ip_adapter``) lets the engine take the first
reference image of a request as an identity or style reference.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ...errors import EngineError, EngineUnavailable
from ...media import read_image
from ...storyboard import EngineSettings, FilePath, Model
from ..base import Availability, Capabilities, FrameRule, SegmentRequest, Take
from .frames import cover, plan_window, to_pil
from .runtime import (
    ALLOW_DOWNLOAD_ENV,
    Call,
    DiffusionEngine,
    DiffusionSettings,
    _env_flag,
    is_local,
)

# Stands in for the reference when an IP-Adapter is loaded and a request has none: the
# adapter's layers need an image embedding, and at scale 0 they add nothing.
_NEUTRAL_SIZE = 64


class IPAdapterSettings(Model):
    """``engines.<image engine>.ip_adapter:``: an IP-Adapter's weights and strength."""

    model: FilePath = Field(description="the adapter's model id or local folder")
    weight_name: FilePath = Field(description="its weights file, e.g. ip-adapter_sdxl.safetensors")
    subfolder: str = Field(default="", max_length=200, description="the file's folder in the model")
    scale: float = Field(default=0.6, ge=0, le=2, description="how strongly the reference steers")
    image_encoder: FilePath | None = Field(default=None, description=(
        "where the adapter's image encoder is: a folder of the adapter's model (default "
        "image_encoder) for SDXL and SD3; a model id or folder for FLUX (default "
        "openai/clip-vit-large-patch14)"))


class KeyframeSettings(DiffusionSettings):
    """``engines.<image engine>:``: the diffusion settings and an optional IP-Adapter."""

    ip_adapter: IPAdapterSettings | None = None


@dataclass
class KeyframeCall(Call):
    """A keyframe call; `reference` is the image the IP-Adapter sees (None: no adapter,
    or no reference and the adapter muted)."""

    reference: Path | None = None


class TextToImageEngine(DiffusionEngine):
    """Keyframes from any text-to-image checkpoint; subclasses pick the defaults."""

    SETTINGS = KeyframeSettings
    CAPABILITIES = Capabilities(kinds=frozenset({"keyframe"}), frame_rule=FrameRule(),
                                max_frames=1, size_multiple=8, needs_gpu=True, batches=True,
                                seconds_per_frame=5.0)
    PIPELINE: ClassVar[str] = "AutoPipelineForText2Image"
    # The text encoder's token limit, when the pipeline's own default does not suit.
    MAX_SEQUENCE_LENGTH: ClassVar[int | None] = None
    NEGATIVE_PROMPT: ClassVar[bool] = True

    settings: KeyframeSettings

    @classmethod
    def capabilities_for(cls, settings: EngineSettings | None = None) -> Capabilities:
        """One reference image when an IP-Adapter is configured, none otherwise."""
        adapter = getattr(cls.settings_for(settings), "ip_adapter", None)
        return dataclasses.replace(cls.CAPABILITIES, references=1) if adapter else cls.CAPABILITIES

    @classmethod
    def availability(cls, settings: EngineSettings | None = None) -> Availability:
        """Also whether the IP-Adapter's weights are here."""
        available = super().availability(settings)
        adapter = getattr(cls.settings_for(settings), "ip_adapter", None)
        if not available or adapter is None:
            return available
        problem = _adapter_problem(cls.NAME, adapter)
        return Availability(False, problem) if problem else available

    # -- loading -----------------------------------------------------------------------

    def _build(self, key: str) -> Any:
        pipe = self._load(self.PIPELINE, self.model_for(self.settings))
        adapter = self.settings.ip_adapter
        if adapter is not None:
            self._load_adapter(pipe, adapter)
        return pipe

    def _load_adapter(self, pipe: Any, adapter: IPAdapterSettings) -> None:
        if not hasattr(pipe, "load_ip_adapter"):
            raise EngineError(f"{self.NAME}: {type(pipe).__name__} takes no IP-Adapter; remove "
                              "ip_adapter from the engine's settings")
        _, dtype = self._resolve_device()
        try:
            pipe.load_ip_adapter(adapter.model, subfolder=adapter.subfolder,
                                 weight_name=adapter.weight_name,
                                 local_files_only=not _env_flag(ALLOW_DOWNLOAD_ENV),
                                 **self._image_encoder_arguments(adapter, dtype))
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise EngineUnavailable(f"{self.NAME}: cannot load IP-Adapter '{adapter.model}' "
                                    f"({adapter.weight_name}): {exc}") from exc

    def _image_encoder_arguments(self, adapter: IPAdapterSettings, dtype: Any) -> dict[str, Any]:
        """Where `load_ip_adapter` finds the image encoder (SDXL's and SD3's form: a
        folder of the adapter's model, ``image_encoder`` unless set)."""
        return {"image_encoder_folder": adapter.image_encoder} if adapter.image_encoder else {}

    # -- generating --------------------------------------------------------------------

    def plan(self, request: SegmentRequest) -> KeyframeCall:
        where = f"{self.NAME}: shot '{request.shot_id}'"
        if request.frames != 1:
            raise EngineError(f"{where}: a keyframe is one frame, not {request.frames}")
        if request.condition_frames is not None or request.image is not None:
            raise EngineError(f"{where}: a text-to-image engine starts from the prompt alone; "
                              "it takes no first frame")
        kwargs: dict[str, Any] = {"width": request.width, "height": request.height,
                                  "num_inference_steps": self.steps(request),
                                  "guidance_scale": self.guidance()}
        if self.MAX_SEQUENCE_LENGTH:
            kwargs["max_sequence_length"] = self.MAX_SEQUENCE_LENGTH
        per_take: dict[str, Any] = {"prompt": request.prompt or ""}
        if self.NEGATIVE_PROMPT:
            per_take["negative_prompt"] = request.negative_prompt
        reference, label = None, ""
        if self.settings.ip_adapter is not None:
            # The pipeline repeats one adapter image over the batch: it is shared, not per take.
            if request.references:
                reference = request.references[0]
                still = read_image(reference)
                kwargs["ip_adapter_image"] = to_pil(still, still.shape[1], still.shape[0])
                label = f"reference {reference.name}"
            else:
                kwargs["ip_adapter_image"] = to_pil(
                    np.full((_NEUTRAL_SIZE, _NEUTRAL_SIZE, 3), 128, np.uint8),
                    _NEUTRAL_SIZE, _NEUTRAL_SIZE)
        return KeyframeCall("text", plan_window(FrameRule(), 1), kwargs, per_take, label=label,
                            reference=reference)

    def _invoke(self, call: Call, seeds: list[int]) -> tuple[np.ndarray, float]:
        adapter = self.settings.ip_adapter
        if adapter is not None:
            reference = call.reference if isinstance(call, KeyframeCall) else None
            self._pipeline(call.pipeline).set_ip_adapter_scale(
                adapter.scale if reference is not None else 0.0)
        return super()._invoke(call, seeds)

    @staticmethod
    def _frames_of(output: Any) -> np.ndarray:
        return np.asarray(output.images)[:, None]

    def _take(self, request: SegmentRequest, call: Call, seed: int, frames: np.ndarray,
              batch: int, seconds: float) -> Take:
        # A pipeline that rounds the size (some floor it to their multiple) still gives
        # the requested frame: cover-scale and centre-crop.
        if frames.shape[1:3] != (request.height, request.width):
            frames = cover(frames[0], request.width, request.height)[None]
        take = super()._take(request, call, seed, frames, batch, seconds)
        if not self.NEGATIVE_PROMPT and request.negative_prompt:
            take.meta["negative_prompt"] = "not used: this model takes no negative prompt"
        if self.settings.ip_adapter is not None:
            reference = call.reference if isinstance(call, KeyframeCall) else None
            take.meta["reference"] = str(reference) if reference else None
            take.meta["ip_adapter_scale"] = self.settings.ip_adapter.scale if reference else 0.0
        return take


class FluxEngine(TextToImageEngine):
    NAME = "flux"
    DESCRIPTION = "Black Forest Labs FLUX.1 through diffusers: keyframes, schnell in 4 steps"
    CAPABILITIES = dataclasses.replace(TextToImageEngine.CAPABILITIES, size_multiple=16,
                                       seconds_per_frame=2.0)
    DEFAULT_MODEL = "black-forest-labs/FLUX.1-schnell"
    DEFAULT_STEPS = 4
    DEFAULT_GUIDANCE = 0.0  # schnell is guidance-distilled; FLUX.1-dev wants about 3.5
    MAX_SEQUENCE_LENGTH = 256  # schnell's T5 limit; dev takes up to 512
    # FluxPipeline uses a negative prompt only with true_cfg_scale > 1 (twice the cost).
    NEGATIVE_PROMPT = False

    def _image_encoder_arguments(self, adapter: IPAdapterSettings, dtype: Any) -> dict[str, Any]:
        # FLUX adapters (XLabs) name their image encoder as a separate model.
        return {"image_encoder_pretrained_model_name_or_path":
                adapter.image_encoder or "openai/clip-vit-large-patch14",
                "image_encoder_dtype": dtype}


class SDXLEngine(TextToImageEngine):
    NAME = "sdxl"
    DESCRIPTION = "Stability AI Stable Diffusion XL through diffusers: keyframes"
    DEFAULT_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
    DEFAULT_STEPS = 30
    DEFAULT_GUIDANCE = 5.0


class SD3Engine(TextToImageEngine):
    NAME = "sd3"
    DESCRIPTION = "Stability AI Stable Diffusion 3.5 through diffusers: keyframes"
    # The latents are patched 2x2 after the 8x VAE: sizes are multiples of 16.
    CAPABILITIES = dataclasses.replace(TextToImageEngine.CAPABILITIES, size_multiple=16)
    DEFAULT_MODEL = "stabilityai/stable-diffusion-3.5-medium"
    DEFAULT_STEPS = 40
    DEFAULT_GUIDANCE = 4.5


def _adapter_problem(engine: str, adapter: IPAdapterSettings) -> str | None:
    """Why the IP-Adapter's weights file cannot be read offline, or None when it can."""
    relative = Path(adapter.subfolder, adapter.weight_name).as_posix()
    if is_local(adapter.model):
        weights = Path(adapter.model).expanduser() / relative
        return None if weights.is_file() else f"IP-Adapter weights {weights} not found"
    if _env_flag(ALLOW_DOWNLOAD_ENV) or importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(adapter.model, relative)
    except ValueError:  # not a valid repo id
        cached = None
    if isinstance(cached, str):
        return None
    return (f"IP-Adapter weights '{relative}' of '{adapter.model}' not found in the Hugging "
            f"Face cache; on a machine with internet run `huggingface-cli download "
            f"{adapter.model} {relative}`, or point engines.{engine}.ip_adapter.model at a "
            f"local copy (or set {ALLOW_DOWNLOAD_ENV}=1)")


__all__ = ["FluxEngine", "IPAdapterSettings", "KeyframeSettings", "SD3Engine", "SDXLEngine",
           "TextToImageEngine"]
