"""The diffusers engine family: LTX-Video, Wan, Stable Video Diffusion, CogVideoX, and
the keyframe (text-to-image) engines FLUX, SDXL and SD3.

Importing this package imports neither torch nor diffusers; they load with the first
pipeline. Model ids or local folders come from each engine's settings (``model``, and
``image_model`` for families with a separate image-to-video checkpoint).
"""

from .cogvideox import CogVideoXEngine
from .image import FluxEngine, SD3Engine, SDXLEngine, TextToImageEngine
from .ltx import LTXVideoEngine
from .runtime import ALLOW_CPU_ENV, ALLOW_DOWNLOAD_ENV, DiffusionEngine
from .svd import StableVideoDiffusionEngine
from .wan import WanEngine

__all__ = [
    "ALLOW_CPU_ENV", "ALLOW_DOWNLOAD_ENV", "CogVideoXEngine", "DiffusionEngine", "FluxEngine",
    "LTXVideoEngine", "SD3Engine", "SDXLEngine", "StableVideoDiffusionEngine",
    "TextToImageEngine", "WanEngine",
]
