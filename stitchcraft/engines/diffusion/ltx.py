"""LTX-Video: text-to-video, image-to-video, and tail-window extension and keyframes
through the condition pipeline. One checkpoint serves all three pipelines, which share
its components."""

from __future__ import annotations

from fractions import Fraction

from ...media import read_image
from ..base import Capabilities, FrameRule, SegmentRequest
from .frames import plan_window, tail_count, to_pil
from .runtime import Call, DiffusionEngine

# Tail frames a chained take conditions on: two latent frames of motion (8k+1).
TAIL_FRAMES = 9


class LTXVideoEngine(DiffusionEngine):
    NAME = "ltx-video"
    DESCRIPTION = "Lightricks LTX-Video through diffusers: fast text/image-to-video, extends clips"
    CAPABILITIES = Capabilities(
        kinds=frozenset({"prompt", "image"}), text_to_video=True, image_to_video=True,
        first_last_frame=True, condition_frames=TAIL_FRAMES, frame_rule=FrameRule(8, 1),
        max_frames=257, size_multiple=32, needs_gpu=True, batches=True,
        seconds_per_frame=0.05, keeps_lead=True)
    REQUIRES = ("torch", "diffusers", "transformers", "sentencepiece")
    DEFAULT_MODEL = "Lightricks/LTX-Video"
    DEFAULT_STEPS = 40
    DEFAULT_GUIDANCE = 3.0

    _CLASSES = {"text": "LTXPipeline", "image": "LTXImageToVideoPipeline",
                "condition": "LTXConditionPipeline"}

    def _build(self, key: str):
        if not self._pipes:
            return self._load(self._CLASSES[key], self.model_for(self.settings))
        return self._derive(self._CLASSES[key], next(iter(self._pipes.values())))

    def plan(self, request: SegmentRequest) -> Call:
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        rule = self.CAPABILITIES.frame_rule
        width, height = request.width, request.height
        conditions, lead, label = [], 0, ""
        if request.condition_frames is not None and len(request.condition_frames):
            lead = tail_count(rule, len(request.condition_frames), TAIL_FRAMES)
            tail = [to_pil(frame, width, height) for frame in request.condition_frames[-lead:]]
            conditions.append(LTXVideoCondition(video=tail, frame_index=0))
            label = f"continues {lead} frames"
        elif request.image is not None:
            first = to_pil(read_image(request.image), width, height)
            conditions.append(LTXVideoCondition(image=first, frame_index=0))
        window = plan_window(rule, request.frames, lead)
        if request.last_frame is not None:
            # Pinned at the take's last kept frame; frames past it are not kept.
            conditions.append(LTXVideoCondition(image=to_pil(request.last_frame, width, height),
                                                frame_index=lead + request.frames - 1))
            label = ", ".join(filter(None, [label, "ends on the next shot"]))
        kwargs = {"width": width, "height": height, "num_frames": window.total,
                  "frame_rate": max(1, round(Fraction(request.fps))),
                  "num_inference_steps": self.steps(request),
                  "guidance_scale": self.guidance()}
        per_take = {"prompt": request.prompt or "", "negative_prompt": request.negative_prompt}
        if not conditions:
            return Call("text", window, kwargs, per_take)
        if len(conditions) == 1 and conditions[0].image is not None and lead == 0:
            per_take["image"] = conditions[0].image
            return Call("image", window, kwargs, per_take)
        # The condition pipeline draws its encoder noise from the first generator only,
        # and crashes batching a condition away from frame 0: one take per call.
        return Call("condition", window, {**kwargs, "conditions": conditions}, per_take,
                    batchable=False, label=label)
