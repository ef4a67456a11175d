"""What every diffusers engine shares: finding weights, loading, placing, batching.

A `DiffusionEngine` subclass says which checkpoints it needs and turns a request into
one planned pipeline `Call`; this module does the rest: it checks cheaply whether the
engine can run here, loads each pipeline once per engine instance (derived pipelines
share components through ``from_pipe``), runs the candidates in batches with one seeded
generator per take, retries a CUDA out-of-memory error with a smaller batch and then
with model offload, and hands back exactly the frames the take keeps.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ...errors import EngineError, EngineUnavailable
from ...storyboard import EngineSettings, FilePath
from ..base import Availability, Engine, SegmentRequest, Take
from .frames import Window, to_uint8

ALLOW_CPU_ENV = "STITCHCRAFT_ALLOW_CPU"
ALLOW_DOWNLOAD_ENV = "STITCHCRAFT_ALLOW_DOWNLOAD"
INSTALL_HINT = "pip install 'stitchcraft[models]'"
DEFAULT_BATCH = 4
_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_NO_CUDA = "no CUDA GPU found; set device: cpu to force (very slow)"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _cuda_present() -> bool:
    """Whether an NVIDIA (or ROCm) GPU is visible, without importing torch if possible."""
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    markers = ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd")
    return any(Path(p).exists() for p in markers) or shutil.which("nvidia-smi") is not None


def _mps_present() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def is_local(model: str) -> bool:
    """A model setting names a folder (rather than a Hugging Face id) when it exists or
    is written as a path."""
    return Path(model).expanduser().exists() or model.startswith(("/", ".", "~")) or "\\" in model


def model_index_of(model: str, revision: str | None = None) -> dict[str, Any]:
    """A checkpoint's model_index.json, from a folder or the HF cache; empty when it
    cannot be read without downloading."""
    index = _model_index(model, revision)
    if index is None:
        return {}
    try:
        return json.loads(index.read_text())
    except (OSError, ValueError):
        return {}


def pipeline_class_of(model: str) -> str | None:
    """The pipeline class a checkpoint was saved from (``_class_name``), if known."""
    return model_index_of(model).get("_class_name")


def _model_index(model: str, revision: str | None = None) -> Path | None:
    """The model_index.json of a folder, or of the cached snapshot of a model id (at
    `revision`, else the one the cache's main ref names)."""
    if is_local(model):
        index = Path(model).expanduser() / "model_index.json"
        return index if index.is_file() else None
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "model_index.json", revision=revision)
    except ValueError:  # not a valid repo id
        return None
    return Path(cached) if isinstance(cached, str) else None


def weights_problem(engine: str, role: str, model: str, revision: str | None = None) -> str | None:
    """Why the checkpoint `model` cannot be loaded offline, or None when it can."""
    if is_local(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            return f"{role} folder {folder} does not exist"
        if not (folder / "model_index.json").is_file():
            return (f"{role} folder {folder} has no model_index.json "
                    "(expected a diffusers pipeline saved with save_pretrained)")
        return None
    if _env_flag(ALLOW_DOWNLOAD_ENV) or _model_index(model, revision) is not None:
        return None
    at = f" at revision '{revision}'" if revision else ""
    fetch = f"{model} --revision {revision}" if revision else model
    return (f"weights for '{model}'{at} not found in the Hugging Face cache; on a machine with "
            f"internet run `huggingface-cli download {fetch}`, or point the engine at a local "
            f"copy with `engines: {{{engine}: {{{role}: /path/to/folder}}}}` "
            f"(or set {ALLOW_DOWNLOAD_ENV}=1 to download while rendering)")


class DiffusionSettings(EngineSettings):
    """``engines.<diffusion engine>:``: the shared settings and how to run a pipeline."""

    PLACEMENT = EngineSettings.PLACEMENT | {"offload"}

    image_model: FilePath | None = Field(default=None, description="checkpoint for image-to-video where it differs")
    offload: Literal["none", "model", "sequential"] = "none"
    vae_tiling: bool = True
    guidance: float | None = Field(default=None, ge=0, le=50)


# Files that say what a checkpoint is, without its weights: the pipeline's index and each
# component's configuration.
_INDEX_FILES = ("model_index.json", "*/config.json", "*/scheduler_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")


def weights_identity(model: str, revision: str | None = None) -> dict[str, Any]:
    """What names a checkpoint's weights, read cheaply: its id and revision, and for a
    folder (or a snapshot in the Hugging Face cache) a digest of its index and
    configuration files and the names and sizes of its weight files.

    The weights themselves are never read; a checkpoint not found locally is named by
    its id and revision alone.
    """
    identity: dict[str, Any] = {"model": model, "revision": revision}
    index = _model_index(model, revision)
    if index is None:
        return identity
    folder = index.parent
    if not is_local(model):
        identity["commit"] = folder.name  # the cache's snapshot folder is named by it
    digest = hashlib.sha256()
    for pattern in _INDEX_FILES:
        for path in sorted(folder.glob(pattern)):
            digest.update(f"{path.relative_to(folder).as_posix()}\0".encode())
            with contextlib.suppress(OSError):
                digest.update(path.read_bytes())
    for path in sorted(folder.glob("*/*")):
        if path.suffix in _WEIGHT_SUFFIXES:
            with contextlib.suppress(OSError):
                digest.update(f"{path.relative_to(folder).as_posix()}:{path.stat().st_size}\0".encode())
    identity["index"] = digest.hexdigest()
    return identity


@dataclass
class Call:
    """One planned pipeline call for a request, before seeds are attached.

    Attributes:
        pipeline: Which of the engine's pipelines runs it (``text``, ``image``, ...).
        window: Frames generated and frames kept.
        kwargs: Arguments shared by the whole batch (size, frames, steps, conditions).
        per_take: Arguments given once per take in a batch (prompt, image): batching
            by repeating them avoids the pipelines' ``num_videos_per_prompt`` bugs.
        batchable: Whether takes can share a call and still match a take made alone.
        label: How the take was conditioned, for its label.
    """

    pipeline: str
    window: Window
    kwargs: dict[str, Any]
    per_take: dict[str, Any] = field(default_factory=dict)
    batchable: bool = True
    label: str = ""


class DiffusionEngine(Engine):
    """Base of the diffusers engines; subclasses plan calls and build pipelines."""

    SETTINGS = DiffusionSettings
    LIBRARIES = {"diffusers": None, "torch": 1}
    REQUIRES: ClassVar[tuple[str, ...]] = ("torch", "diffusers", "transformers")
    DEFAULT_MODEL: ClassVar[str]
    DEFAULT_IMAGE_MODEL: ClassVar[str | None] = None
    DEFAULT_STEPS: ClassVar[int] = 30
    DEFAULT_GUIDANCE: ClassVar[float] = 5.0

    settings: DiffusionSettings

    def __init__(self, settings: EngineSettings | None = None):
        super().__init__(settings)
        self._pipes: dict[str, Any] = {}
        self._device: str | None = None
        self._dtype: Any = None
        self._offload = self.settings.offload
        self._offload_owner: str | None = None

    # -- configuration ---------------------------------------------------------------

    @classmethod
    def model_for(cls, settings) -> str:
        """The text-to-video (or only) checkpoint: the ``model`` setting or the default."""
        return (settings.model if settings and settings.model else cls.DEFAULT_MODEL)

    @classmethod
    def image_model_for(cls, settings) -> str | None:
        """The image-to-video checkpoint of families that use a separate one."""
        if cls.DEFAULT_IMAGE_MODEL is None:
            return None
        explicit = getattr(settings, "image_model", None) if settings else None
        if explicit:
            return explicit
        model = cls.model_for(settings)
        if cls._serves_images(model):
            return model
        return cls.DEFAULT_IMAGE_MODEL

    @classmethod
    def _serves_images(cls, model: str) -> bool:
        """Whether the checkpoint `model` also does image-to-video (read cheaply)."""
        return False

    def steps(self, request: SegmentRequest) -> int:
        return request.steps or self.settings.steps or self.DEFAULT_STEPS

    def guidance(self) -> float:
        return self.settings.guidance if self.settings.guidance is not None else self.DEFAULT_GUIDANCE

    @classmethod
    def fingerprint(cls, settings: EngineSettings | None = None) -> dict[str, Any]:
        """Also the checkpoints (id and revision, or a digest of a folder's index and
        configuration) and the defaults that stand in for unset settings."""
        settings = cls.settings_for(settings)
        image_model = cls.image_model_for(settings)
        revision = settings.revision
        return {**super().fingerprint(settings),
                "weights": weights_identity(cls.model_for(settings), revision),
                "image_weights": (weights_identity(image_model) if image_model
                                  and image_model != cls.model_for(settings) else None),
                "defaults": {"steps": cls.DEFAULT_STEPS, "guidance": cls.DEFAULT_GUIDANCE}}

    # -- availability ----------------------------------------------------------------

    @classmethod
    def availability(cls, settings=None) -> Availability:
        """Cheap: looks for packages, a GPU and the weights; imports no model code."""
        settings = cls.settings_for(settings)
        missing = [name for name in cls.REQUIRES if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"package{'s' * (len(missing) > 1)} missing: "
                                       f"{', '.join(missing)}; install with {INSTALL_HINT}")
        problems = []
        device_problem = cls._device_problem(settings.device)
        if device_problem:
            problems.append(device_problem)
        model_problem = weights_problem(cls.NAME, "model", cls.model_for(settings), settings.revision)
        if model_problem:
            problems.append(model_problem)
        if problems:
            return Availability(False, "; ".join(problems))
        image_model = cls.image_model_for(settings)
        if image_model and image_model != cls.model_for(settings):
            image_problem = weights_problem(cls.NAME, "image_model", image_model)
            if image_problem:
                return Availability(True, "text-to-video only (chain, bridge and image shots "
                                          f"will fail): {image_problem}")
        return Availability(True)

    @staticmethod
    def _device_problem(device: str) -> str | None:
        if device == "cpu" or (device == "auto" and _env_flag(ALLOW_CPU_ENV)):
            return None
        if device == "mps":
            return None if _mps_present() else "no Apple GPU (mps) on this machine"
        if _cuda_present() or (device == "auto" and _mps_present()):
            return None
        return _NO_CUDA

    # -- loading and placing ---------------------------------------------------------

    def _resolve_device(self) -> tuple[str, Any]:
        import torch

        if self._device is None:
            wanted = self.settings.device
            if wanted == "cpu":
                device = "cpu"
            elif wanted == "mps" or (wanted == "auto" and not torch.cuda.is_available()
                                     and torch.backends.mps.is_available()):
                if not torch.backends.mps.is_available():
                    raise EngineUnavailable(f"{self.NAME}: no Apple GPU (mps) on this machine")
                device = "mps"
            elif torch.cuda.is_available():
                device = "cuda"
            elif wanted == "auto" and _env_flag(ALLOW_CPU_ENV):
                device = "cpu"
            else:
                raise EngineUnavailable(f"{self.NAME}: {_NO_CUDA}")
            name = self.settings.dtype
            if name == "auto":
                name = {"cuda": "bf16" if torch.cuda.is_bf16_supported() else "fp16",
                        "mps": "fp16"}.get(device, "fp32")
            self._device, self._dtype = device, getattr(torch, _DTYPES[name])
        return self._device, self._dtype

    def _dtype_arg(self, dtype: Any) -> Any:
        """The ``torch_dtype`` given to from_pretrained (a dict to keep parts in fp32)."""
        return dtype

    def _load(self, class_name: str, model: str, role: str = "model") -> Any:
        """Loads a pipeline from a folder or the HF cache; never runs remote code."""
        import diffusers

        # The revision pins `model`; a separate image model is loaded as it is.
        revision = self.settings.revision if role == "model" and not is_local(model) else None
        problem = weights_problem(self.NAME, role, model, revision)
        if problem:
            raise EngineUnavailable(f"{self.NAME}: {problem}")
        _, dtype = self._resolve_device()
        try:
            pipe = getattr(diffusers, class_name).from_pretrained(
                model, **{_dtype_keyword(): self._dtype_arg(dtype)},
                **({"revision": revision} if revision else {}),
                local_files_only=not _env_flag(ALLOW_DOWNLOAD_ENV))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise EngineUnavailable(f"{self.NAME}: cannot load {role} '{model}' as "
                                    f"{class_name}: {exc}") from exc
        return self._place(pipe)

    def _derive(self, class_name: str, base: Any) -> Any:
        """Another pipeline over the same components (no second copy of the weights)."""
        import diffusers
        import torch

        # from_pipe casts every component to its dtype argument (fp32 when none is given),
        # and the components are shared: restore each one's own dtype afterwards.
        dtypes = {name: module.dtype for name, module in base.components.items()
                  if isinstance(module, torch.nn.Module)}
        pipe = getattr(diffusers, class_name).from_pipe(base, **{_dtype_keyword(): self._dtype})
        for name, dtype in dtypes.items():
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module) and module.dtype != dtype:
                module.to(dtype)
        return self._place(pipe)

    def _place(self, pipe: Any) -> Any:
        device, _ = self._resolve_device()
        pipe.set_progress_bar_config(disable=True)
        if self.settings.vae_tiling and hasattr(getattr(pipe, "vae", None), "enable_tiling"):
            with contextlib.suppress(NotImplementedError):  # SVD's temporal decoder
                pipe.vae.enable_tiling()
        if self._offload == "none" or device == "cpu":
            pipe.to(device)
        return pipe

    def _pipeline(self, key: str) -> Any:
        """The pipeline `key`, built on first use and kept for the engine's life."""
        if key not in self._pipes:
            self._pipes[key] = self._build(key)
        pipe = self._pipes[key]
        device, _ = self._resolve_device()
        # Offload hooks sit on shared components: re-hook for the pipeline about to run.
        if self._offload != "none" and device != "cpu" and self._offload_owner != key:
            if self._offload == "sequential":
                pipe.enable_sequential_cpu_offload(device=device)
            else:
                pipe.enable_model_cpu_offload(device=device)
            self._offload_owner = key
        return pipe

    def _build(self, key: str) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        self._pipes.clear()
        self._offload_owner = None
        gc.collect()
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            sys.modules["torch"].cuda.empty_cache()

    # -- generating ------------------------------------------------------------------

    def plan(self, request: SegmentRequest) -> Call:
        """The pipeline call that makes the takes of `request` (validated)."""
        raise NotImplementedError

    def check(self, request: SegmentRequest) -> None:
        """Raises EngineError when the request breaks this model's rules."""
        caps = self.capabilities_for(self.settings)
        where = f"{self.NAME}: shot '{request.shot_id}' segment {request.segment}"
        if request.kind not in caps.kinds:
            raise EngineError(f"{where}: cannot make a '{request.kind}' shot "
                              f"(serves {', '.join(sorted(caps.kinds))})")
        if not request.seeds:
            raise EngineError(f"{where}: no seeds requested")
        # Any count of frames can be asked for: the call generates the smallest count the
        # model's rule allows around it (see `frames.plan_window`) and keeps exactly these.
        if request.frames < 1:
            raise EngineError(f"{where}: no frames requested")
        if caps.max_frames and request.frames > caps.max_frames:
            raise EngineError(f"{where}: {request.frames} frames; at most {caps.max_frames} per call")
        multiple = caps.size_multiple
        if request.width % multiple or request.height % multiple:
            raise EngineError(f"{where}: size {request.width}x{request.height}; width and height "
                              f"must be multiples of {multiple}")
        if request.last_frame is not None and not caps.first_last_frame:
            raise EngineError(f"{where}: this model cannot end on a given frame (bridge)")
        if (request.kind == "prompt" and request.condition_frames is None
                and not caps.text_to_video):
            raise EngineError(f"{where}: this model needs a first frame (chain from the "
                              "previous shot, or an image shot)")

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        self.check(request)
        call = self.plan(request)
        caps = self.capabilities_for(self.settings)
        if caps.max_frames and call.window.total > caps.max_frames:
            raise EngineError(
                f"{self.NAME}: shot '{request.shot_id}' segment {request.segment}: "
                f"{call.window.frames} frames after {call.window.lead} conditioning frames "
                f"need {call.window.total} > {caps.max_frames} per call; split the shot")
        batch = 1
        if call.batchable:
            batch = self.settings.batch or DEFAULT_BATCH
        pending = list(request.seeds)
        batch = min(batch, len(pending))
        while pending:
            chunk = pending[:batch]
            try:
                videos, seconds = self._invoke(call, chunk)
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                self._free_accelerator()
                if batch > 1:
                    batch //= 2
                    continue
                if self._enable_offload():
                    continue
                raise EngineError(
                    f"{self.NAME}: out of GPU memory making {call.window.total} frames at "
                    f"{request.width}x{request.height} (shot '{request.shot_id}'), even one take "
                    "at a time with model offload; try dtype: bf16, offload: sequential, "
                    "vae_tiling: true, a smaller output size or shorter segments") from exc
            if videos.shape[1] != call.window.total:
                raise EngineError(f"{self.NAME}: asked the pipeline for {call.window.total} "
                                  f"frames and got {videos.shape[1]}")
            pending = pending[len(chunk):]
            kept = call.window.kept()
            lead = call.window.lead
            for seed, video in zip(chunk, videos, strict=True):
                take = self._take(request, call, seed, to_uint8(video[kept]), len(chunk), seconds)
                if lead:  # the conditioning frames made again: the join cross-fades them
                    take.lead = to_uint8(video[:lead])
                yield take

    def _invoke(self, call: Call, seeds: list[int]) -> tuple[np.ndarray, float]:
        """Runs one batch; returns float frames (takes x frames x H x W x 3) and seconds."""
        import torch

        pipe = self._pipeline(call.pipeline)
        arguments = dict(call.kwargs)
        for name, value in call.per_take.items():
            if value is not None:
                arguments[name] = [value] * len(seeds)
        # CPU generators: a seed gives the same starting noise on any device.
        arguments["generator"] = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        started = time.perf_counter()
        output = pipe(**arguments, output_type="np", return_dict=True)
        seconds = time.perf_counter() - started
        return self._frames_of(output), seconds

    @staticmethod
    def _frames_of(output: Any) -> np.ndarray:
        """A pipeline output's float frames, takes x frames x H x W x 3 (an image
        pipeline's ``images`` are takes x H x W x 3: its engine overrides this)."""
        return np.asarray(output.frames)

    def _take(self, request: SegmentRequest, call: Call, seed: int, frames: np.ndarray,
              batch: int, seconds: float) -> Take:
        expected = (request.frames, request.height, request.width, 3)
        if frames.shape != expected:
            raise EngineError(f"{self.NAME}: the pipeline returned frames of shape {frames.shape}, "
                              f"expected {expected}")
        device, dtype = self._resolve_device()
        pipe = self._pipes[call.pipeline]
        meta = {
            "model": self._model_of(call.pipeline), "pipeline": type(pipe).__name__,
            "steps": self.steps(request), "guidance": self.guidance(), "seed": seed,
            "dtype": str(dtype).removeprefix("torch."), "device": device,
            "offload": self._offload if device != "cpu" else "none", "batch": batch,
            "seconds": round(seconds / batch, 3), "generated_frames": call.window.total,
            "condition_frames": call.window.lead,
        }
        if call.window.dropped_inside:
            meta["dropped_inside"] = call.window.dropped_inside
        if request.references and not self.capabilities_for(self.settings).references:
            meta["reference"] = "not used: this model takes no reference image"
        label = f"{self.NAME} seed {seed}" + (f", {call.label}" if call.label else "")
        return Take(frames=frames, seed=seed, label=label, meta=meta)

    def _model_of(self, key: str) -> str:
        return self.model_for(self.settings)

    def _enable_offload(self) -> bool:
        """After an out-of-memory error at batch 1: offload models; False if not possible."""
        device, _ = self._resolve_device()
        if device == "cpu" or self._offload != "none":
            return False
        self._offload = "model"
        self._offload_owner = None
        return True

    @staticmethod
    def _free_accelerator() -> None:
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def _dtype_keyword() -> str:
    """diffusers renamed from_pretrained's ``torch_dtype`` to ``dtype`` (0.36)."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _is_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom)
