"""The diffusers engine family: LTX-Video, Wan, Stable Video Diffusion, CogVideoX.

Importing this package imports neither torch nor diffusers; they load with the first
pipeline. Model ids or local folders come from each engine's settings (``model``, and
``image_model`` for families with a separate image-to-video checkpoint).
"""

from .cogvideox import CogVideoXEngine
from .ltx import LTXVideoEngine
from .runtime import ALLOW_CPU_ENV, ALLOW_DOWNLOAD_ENV, DiffusionEngine
from .svd import StableVideoDiffusionEngine
from .wan import WanEngine

__all__ = [
    "ALLOW_CPU_ENV", "ALLOW_DOWNLOAD_ENV", "CogVideoXEngine", "DiffusionEngine",
    "LTXVideoEngine", "StableVideoDiffusionEngine", "WanEngine",
]
