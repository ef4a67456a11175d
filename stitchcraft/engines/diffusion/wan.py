"""Wan 2.1 / 2.2: text-to-video from one checkpoint, image-to-video and first+last frame
from another (``image_model``); Wan 2.2 TI2V checkpoints do both."""

from __future__ import annotations

from typing import Any

from ...errors import EngineError
from ...media import read_image
from ..base import Capabilities, FrameRule, SegmentRequest
from .frames import plan_window, to_pil
from .runtime import Call, DiffusionEngine, model_index_of, pipeline_class_of


class WanEngine(DiffusionEngine):
    NAME = "wan"
    DESCRIPTION = "Wan 2.1 / 2.2 through diffusers: text/image-to-video, first+last frame"
    CAPABILITIES = Capabilities(
        kinds=frozenset({"prompt", "image"}), text_to_video=True, image_to_video=True,
        first_last_frame=True, condition_frames=1, frame_rule=FrameRule(4, 1), max_frames=81,
        size_multiple=16, needs_gpu=True, batches=True, seconds_per_frame=10.0, keeps_lead=True)
    DEFAULT_MODEL = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    DEFAULT_IMAGE_MODEL = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
    DEFAULT_STEPS = 40
    DEFAULT_GUIDANCE = 5.0

    @classmethod
    def _serves_images(cls, model: str) -> bool:
        # An I2V checkpoint, or Wan 2.2 TI2V (one checkpoint, text and image).
        index = model_index_of(model)
        return (index.get("_class_name") == "WanImageToVideoPipeline"
                or bool(index.get("expand_timesteps")))

    @classmethod
    def _image_only(cls, model: str) -> bool:
        return pipeline_class_of(model) == "WanImageToVideoPipeline"

    def _dtype_arg(self, dtype: Any) -> Any:
        import torch

        # Wan's VAE is meant to run in fp32; half precision shows up as colour drift.
        return dtype if dtype == torch.float32 else {"default": dtype, "vae": torch.float32}

    def _model_of(self, key: str) -> str:
        return self.image_model_for(self.settings) if key == "image" else self.model_for(self.settings)

    def _build(self, key: str):
        model, image_model = self.model_for(self.settings), self.image_model_for(self.settings)
        if key == "text":
            if self._image_only(model):
                raise EngineError(self._i2v_only(model))
            pipe = self._load("WanPipeline", model)
            transformer = pipe.transformer or pipe.transformer_2
            if transformer.config.in_channels != pipe.vae.config.z_dim:
                raise EngineError(self._i2v_only(model))
            return pipe
        if image_model == model and "text" in self._pipes:
            return self._derive("WanImageToVideoPipeline", self._pipes["text"])
        return self._load("WanImageToVideoPipeline", image_model, "image_model")

    def _i2v_only(self, model: str) -> str:
        return (f"wan: '{model}' is an image-to-video checkpoint and cannot start a shot from "
                "a prompt; set model to a text-to-video checkpoint (e.g. "
                f"{self.DEFAULT_MODEL}) and image_model to '{model}'")

    def plan(self, request: SegmentRequest) -> Call:
        width, height = request.width, request.height
        first, lead = None, 0
        if request.condition_frames is not None and len(request.condition_frames):
            first, lead = request.condition_frames[-1], 1
        elif request.image is not None:
            first = read_image(request.image)
        bridge = request.last_frame is not None
        if bridge and first is None:
            raise EngineError(f"wan: shot '{request.shot_id}': a bridge needs a first frame "
                              "(the previous take's last frame or an image)")
        window = plan_window(self.CAPABILITIES.frame_rule, request.frames, lead,
                             ends_on_last=bridge)
        kwargs = {"width": width, "height": height, "num_frames": window.total,
                  "num_inference_steps": self.steps(request), "guidance_scale": self.guidance()}
        # Batched by repeating the prompt: num_videos_per_prompt crashes Wan I2V / FLF2V.
        per_take = {"prompt": request.prompt or "", "negative_prompt": request.negative_prompt}
        if first is None:
            return Call("text", window, kwargs, per_take)
        kwargs["image"] = to_pil(first, width, height)
        label = "continues the last frame" if lead else ""
        if bridge:
            kwargs["last_image"] = to_pil(request.last_frame, width, height)
            label = ", ".join(filter(None, [label, "ends on the next shot"]))
        self._check_image_model(bridge)
        return Call("image", window, kwargs, per_take, label=label)

    def _check_image_model(self, bridge: bool) -> None:
        """Wan 2.1 I2V takes no last frame and Wan 2.1 FLF2V needs one: say so plainly."""
        transformer = self._pipeline("image").transformer
        config = transformer.config if transformer is not None else None
        if config is None or config.image_dim is None:
            return  # Wan 2.2: no CLIP image embedding, first and last frame both optional.
        takes_two = config.pos_embed_seq_len is not None
        model = self.image_model_for(self.settings)
        if bridge and not takes_two:
            raise EngineError(f"wan: '{model}' cannot end on a given frame (bridge); set "
                              "image_model to a first+last frame checkpoint such as "
                              "Wan-AI/Wan2.1-FLF2V-14B-720P-Diffusers or Wan-AI/Wan2.2-I2V-A14B-Diffusers")
        if takes_two and not bridge:
            raise EngineError(f"wan: '{model}' is a first+last frame checkpoint and needs a "
                              "bridge; use an image-to-video checkpoint for chain and image shots")
