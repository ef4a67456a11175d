"""CogVideoX: text-to-video from one checkpoint, image-to-video from another
(``image_model``)."""

from __future__ import annotations

from ...errors import EngineError
from ...media import read_image
from ..base import Capabilities, FrameRule, SegmentRequest
from .frames import plan_window, to_pil
from .runtime import Call, DiffusionEngine, pipeline_class_of


class CogVideoXEngine(DiffusionEngine):
    NAME = "cogvideox"
    DESCRIPTION = "THUDM CogVideoX through diffusers: text/image-to-video"
    CAPABILITIES = Capabilities(
        kinds=frozenset({"prompt", "image"}), text_to_video=True, image_to_video=True,
        condition_frames=1, frame_rule=FrameRule(8, 1), max_frames=49, size_multiple=16,
        needs_gpu=True, batches=True, seconds_per_frame=2.0, keeps_lead=True)
    REQUIRES = ("torch", "diffusers", "transformers", "sentencepiece")
    DEFAULT_MODEL = "THUDM/CogVideoX-5b"
    DEFAULT_IMAGE_MODEL = "THUDM/CogVideoX-5b-I2V"
    DEFAULT_STEPS = 50
    DEFAULT_GUIDANCE = 6.0
    # The pipeline accepts 4k+1 frames, but its VAE decodes an even number of latent
    # frames to 3 frames more than asked (4 latents -> 16 frames, not 13): 8k+1 is exact.

    @classmethod
    def _serves_images(cls, model: str) -> bool:
        return pipeline_class_of(model) == "CogVideoXImageToVideoPipeline"

    def _model_of(self, key: str) -> str:
        return self.image_model_for(self.settings) if key == "image" else self.model_for(self.settings)

    def _build(self, key: str):
        if key == "text":
            model = self.model_for(self.settings)
            if self._serves_images(model):
                raise EngineError(f"cogvideox: '{model}' is an image-to-video checkpoint; set "
                                  f"model to a text-to-video one (e.g. {self.DEFAULT_MODEL}) "
                                  f"and image_model to '{model}'")
            return self._load("CogVideoXPipeline", model)
        return self._load("CogVideoXImageToVideoPipeline", self.image_model_for(self.settings),
                          "image_model")

    def plan(self, request: SegmentRequest) -> Call:
        width, height = request.width, request.height
        first, lead = None, 0
        if request.condition_frames is not None and len(request.condition_frames):
            first, lead = request.condition_frames[-1], 1
        elif request.image is not None:
            first = read_image(request.image)
        window = plan_window(self.CAPABILITIES.frame_rule, request.frames, lead)
        kwargs = {"width": width, "height": height, "num_frames": window.total,
                  "num_inference_steps": self.steps(request), "guidance_scale": self.guidance()}
        # Batched by repeating the prompt (and image): CogVideoX ignores num_videos_per_prompt.
        per_take = {"prompt": request.prompt or "", "negative_prompt": request.negative_prompt}
        key = "text"
        if first is not None:
            key, per_take["image"] = "image", to_pil(first, width, height)
        self._check_fixed_size(key, window.total, width, height)
        return Call(key, window, kwargs, per_take,
                    label="continues the last frame" if lead else "")

    def _check_fixed_size(self, key: str, frames: int, width: int, height: int) -> None:
        """Checkpoints with learned position embeddings make one size and length only."""
        pipe = self._pipeline(key)
        config = pipe.transformer.config
        if not config.use_learned_positional_embeddings:
            return
        native_w = config.sample_width * pipe.vae_scale_factor_spatial
        native_h = config.sample_height * pipe.vae_scale_factor_spatial
        native_frames = (config.sample_frames - 1) * pipe.vae_scale_factor_temporal + 1
        if (width, height) != (native_w, native_h) or frames > native_frames:
            raise EngineError(f"cogvideox: '{self._model_of(key)}' makes only {native_w}x{native_h} "
                              f"clips of up to {native_frames} frames; asked for {width}x{height}, "
                              f"{frames} frames")
