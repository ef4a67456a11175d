"""Stable Video Diffusion: animates a still (an image shot, or the previous take's last
frame). It takes no prompt."""

from __future__ import annotations

from fractions import Fraction

from ...errors import EngineError
from ...media import read_image
from ..base import Capabilities, FrameRule, SegmentRequest
from .frames import plan_window, to_pil
from .runtime import Call, DiffusionEngine

# The temporal decoder cannot tile; decoding fewer frames at once bounds its memory.
DECODE_CHUNK = 8


def decode_chunk(total: int, most: int) -> int:
    """Frames to decode at once: a divisor of `total`, so that no chunk spans two takes of
    a batch (the pipeline chunks the whole batch's frames, and a chunk over a boundary
    would decode one take with another's frames as temporal context)."""
    best = max(n for n in range(1, min(most, total) + 1) if total % n == 0)
    return best if best >= 4 else total


class StableVideoDiffusionEngine(DiffusionEngine):
    NAME = "svd"
    DESCRIPTION = "Stability AI Stable Video Diffusion through diffusers: image-to-video"
    CAPABILITIES = Capabilities(
        kinds=frozenset({"prompt", "image"}), image_to_video=True, condition_frames=1,
        frame_rule=FrameRule(), max_frames=25, size_multiple=8, needs_gpu=True, batches=True,
        seconds_per_frame=1.5, keeps_lead=True)
    REQUIRES = ("torch", "diffusers", "transformers")
    DEFAULT_MODEL = "stabilityai/stable-video-diffusion-img2vid-xt"
    DEFAULT_STEPS = 25
    DEFAULT_GUIDANCE = 3.0
    MOTION_BUCKET = 127
    NOISE_AUG = 0.02

    def _build(self, key: str):
        return self._load("StableVideoDiffusionPipeline", self.model_for(self.settings))

    def plan(self, request: SegmentRequest) -> Call:
        width, height = request.width, request.height
        if request.condition_frames is not None and len(request.condition_frames):
            first, lead, label = request.condition_frames[-1], 1, "continues the last frame"
        elif request.image is not None:
            first, lead, label = read_image(request.image), 0, ""
        else:
            raise EngineError(f"svd: shot '{request.shot_id}' has no first frame; SVD animates "
                              "an image (an image shot, or chain from the previous shot)")
        window = plan_window(self.CAPABILITIES.frame_rule, request.frames, lead)
        kwargs = {"width": width, "height": height, "num_frames": window.total,
                  "num_inference_steps": self.steps(request),
                  "min_guidance_scale": 1.0, "max_guidance_scale": self.guidance(),
                  "fps": max(1, round(Fraction(request.fps))),
                  "motion_bucket_id": self.MOTION_BUCKET, "noise_aug_strength": self.NOISE_AUG,
                  "decode_chunk_size": (decode_chunk(window.total, DECODE_CHUNK)
                                        if self.settings.vae_tiling else window.total)}
        # One image per take: with a single image the augmentation noise comes from the
        # first generator alone, and a take would differ from the same seed made alone.
        return Call("video", window, kwargs, {"image": to_pil(first, width, height)}, label=label)
