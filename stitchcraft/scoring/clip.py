"""CLIP scorers (open_clip): prompt alignment, reference likeness, seam similarity.

Weights are only ever read from disk; nothing is downloaded. ``scoring.clip_model``
(or ``$STITCHCRAFT_CLIP_MODEL``) names them, in one of these forms:

- ``ARCH:TAG`` such as ``ViT-B-32:openai`` (the default): an open_clip pretrained tag,
  looked up in the Hugging Face cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``,
  ``~/.cache/huggingface/hub``) and open_clip's own cache (``~/.cache/clip``);
- ``ARCH:/path/to/weights.safetensors`` (or ``.bin``/``.pt``), or a bare file path for
  ViT-B-32;
- ``local-dir:/folder`` or a bare folder holding ``open_clip_config.json`` and weights;
- ``hf-hub:org/repo``: that repository's snapshot in the Hugging Face cache.

Values (all 0..1, higher better) map raw cosine similarities, which the parts keep:
``prompt`` maps text-image similarity 0.10..0.35 to 0..1; ``reference`` and
``seam_clip`` map image-image similarity 0.50..0.95 and 0.60..1.0 to 0..1.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import FrameSource, Score, Scorer, file_stamp

if TYPE_CHECKING:
    from ..engines.base import Availability
    from ..storyboard import Scoring

DEFAULT_CLIP_MODEL = "ViT-B-32:openai"
PROMPT_SAMPLES = 8
REFERENCE_SAMPLES = 8
SEAM_FRAMES = 2
BATCH = 16
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                   "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ClipSpec:
    """Where a CLIP model's config and weights are, resolved on disk.

    Attributes:
        arch: open_clip architecture name (or ``local-dir:...``).
        weights: The weights file (None with a local-dir that open_clip reads itself).
        quick_gelu, mean, std: Settings that go with a pretrained tag's weights.
    """

    arch: str
    weights: Path | None
    quick_gelu: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    extra: tuple[Any, ...] = field(default=())

    def identity(self) -> str:
        """Names the model and its weights file (size and mtime) for cache keys."""
        target = self.weights
        if target is None and self.arch.startswith("local-dir:"):
            folder = Path(self.arch.removeprefix("local-dir:"))
            found = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
            target = found[0] if found else None
        stamp = ""
        if target is not None and target.is_file():
            stat = target.stat()
            stamp = f"{target.name}:{stat.st_size}:{int(stat.st_mtime)}"
        return f"{self.arch}|{stamp}"


class ClipUnavailable(Exception):
    """No usable CLIP model: the message says what is missing and how to get it."""


def configured_spec(settings: Scoring) -> str:
    return settings.clip_model or os.environ.get("STITCHCRAFT_CLIP_MODEL") or DEFAULT_CLIP_MODEL


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub itself would pick it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home) / "hub"


def _hf_cached(repo: str, filename: str) -> Path | None:
    """A file of a repository in the HF cache, found without any network access."""
    refs = hf_cache_dir() / f"models--{repo.replace('/', '--')}"
    snapshots = refs / "snapshots"
    if not snapshots.is_dir():
        return None
    preferred: list[Path] = []
    main = refs / "refs" / "main"
    if main.is_file():
        preferred.append(snapshots / main.read_text().strip())
    preferred += sorted(p for p in snapshots.iterdir() if p not in preferred)
    for snapshot in preferred:
        candidate = snapshot / filename
        if candidate.is_file():
            return candidate
    return None


def resolve_clip(spec: str) -> ClipSpec:
    """Finds the config and weights that `spec` names, on disk only.

    Raises:
        ClipUnavailable: nothing usable found; the message says where it looked.
    """
    how = ("set scoring.clip_model to a weights file, 'ARCH:/path/weights.safetensors' or "
           "'local-dir:/folder'")
    if not importlib.util.find_spec("open_clip"):
        raise ClipUnavailable("open_clip is not installed: pip install 'stitchcraft[models]' "
                              "(or pip install open-clip-torch)")
    if spec.startswith("local-dir:") or Path(spec).expanduser().is_dir():
        folder = Path(spec.removeprefix("local-dir:")).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise ClipUnavailable(f"CLIP folder {folder} has no open_clip_config.json; {how}")
        return ClipSpec(arch=f"local-dir:{folder}", weights=None)
    if spec.startswith("hf-hub:"):
        repo = spec.removeprefix("hf-hub:")
        config = _hf_cached(repo, "open_clip_config.json")
        if config is None:
            raise ClipUnavailable(
                f"CLIP model {repo} is not in the Hugging Face cache ({hf_cache_dir()}): fetch it "
                f"once with `huggingface-cli download {repo}` where there is network, or {how}")
        return ClipSpec(arch=f"local-dir:{config.parent}", weights=None)
    if Path(spec).expanduser().is_file():
        arch, rest = "ViT-B-32", spec
    else:
        arch, separator, rest = spec.partition(":")
        if not separator or not rest:
            raise ClipUnavailable(f"scoring.clip_model '{spec}': expected ARCH:TAG (ViT-B-32:openai), "
                                  "ARCH:/path/weights, a weights file, or local-dir:/folder")
    catalogue = _catalogue()
    if not catalogue.knows(arch):
        raise ClipUnavailable(f"scoring.clip_model '{spec}': unknown open_clip architecture "
                              f"'{arch}'")
    path = Path(rest).expanduser()
    if path.suffix in (".safetensors", ".bin", ".pt", ".pth") or os.sep in rest:
        if not path.is_file():
            raise ClipUnavailable(f"CLIP weights file {path} not found; {how}")
        return ClipSpec(arch=arch, weights=path)
    tag_cfg = catalogue.pretrained.get_pretrained_cfg(arch, rest)
    if not tag_cfg:
        known = ", ".join(catalogue.pretrained.list_pretrained_tags_by_model(arch))
        raise ClipUnavailable(f"scoring.clip_model '{spec}': open_clip knows no tag '{rest}' for "
                              f"{arch}; known: {known}")
    looked: list[str] = []
    found: Path | None = None
    if tag_cfg.get("file"):
        found = Path(tag_cfg["file"]) if Path(tag_cfg["file"]).is_file() else None
    if found is None and tag_cfg.get("hf_hub"):
        # "org/repo/" means the repository's default weights file, "org/repo/file" that file.
        repo, filename = os.path.split(tag_cfg["hf_hub"])
        for name in ([filename] if filename else list(HF_WEIGHT_FILES)):
            found = found or _hf_cached(repo, name)
        looked.append(f"{hf_cache_dir()}/models--{repo.replace('/', '--')}")
    if found is None and tag_cfg.get("url"):
        target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(tag_cfg["url"])
        found = target if target.is_file() else None
        looked.append(str(target))
    if found is None:
        raise ClipUnavailable(
            f"CLIP weights for {arch}:{rest} not found (looked in {'; '.join(looked)}). Fetch them "
            f"once where there is network: python -c \"import open_clip; "
            f"open_clip.create_model_and_transforms('{arch}', pretrained='{rest}')\", or {how}")
    return ClipSpec(arch=arch, weights=found, quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                    mean=tuple(tag_cfg["mean"]) if tag_cfg.get("mean") else None,
                    std=tuple(tag_cfg["std"]) if tag_cfg.get("std") else None)


@dataclass(frozen=True)
class _Catalogue:
    """open_clip's architectures and pretrained tags, read without loading models."""

    pretrained: Any  # open_clip's `pretrained` module
    architectures: Any  # a callable listing registered architectures, or a config folder

    def knows(self, arch: str) -> bool:
        if callable(self.architectures):
            return arch in self.architectures()
        return (Path(self.architectures) / f"{arch}.json").is_file()


def _catalogue() -> _Catalogue:
    """The table of open_clip's architectures and weights, without importing torch.

    Importing the `open_clip` package imports torch (about 4 s on these cores), yet its
    `pretrained` table and model configs need none. Until open_clip is imported for
    real (a model is about to run), that module is loaded by itself, under a private
    package name, from open_clip's folder.
    """
    import sys

    if "open_clip" in sys.modules:
        module = sys.modules["open_clip"]
        return _Catalogue(module.pretrained, module.list_models)
    found = importlib.util.find_spec("open_clip")
    folder = Path(next(iter(found.submodule_search_locations or []))) if found else None
    if folder is None:
        raise ClipUnavailable("open_clip is not installed: pip install 'stitchcraft[models]'")
    alias = "_stitchcraft_open_clip_tables"
    if alias not in sys.modules:
        import types

        package = types.ModuleType(alias)
        package.__path__ = [str(folder)]
        sys.modules[alias] = package
    # The table tries `import safetensors.torch` (torch) and huggingface_hub (httpx, 16 MB)
    # for loading and downloading, neither of which it is asked to do here: hide them
    # while this private copy loads.
    hidden = [name for name in ("safetensors.torch", "huggingface_hub") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        pretrained = importlib.import_module(f"{alias}.pretrained")
    except Exception:  # a release whose table needs more than its own module
        import open_clip

        return _Catalogue(open_clip.pretrained, open_clip.list_models)
    finally:
        for name in hidden:
            del sys.modules[name]
    return _Catalogue(pretrained, folder / "model_configs")


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Forbids Hugging Face network access while open_clip loads anything."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = None
    with contextlib.suppress(ImportError):
        from huggingface_hub import constants
    previous = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None and previous is not None:
            constants.HF_HUB_OFFLINE = previous
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class ClipModel:
    """A loaded CLIP model in eval mode with batched, normalised embeddings."""

    def __init__(self, spec: ClipSpec):
        import open_clip
        import torch

        self.spec = spec
        with _offline():
            try:
                if spec.weights is None:
                    model, preprocess = open_clip.create_model_from_pretrained(spec.arch, device="cpu")
                else:
                    kwargs: dict[str, Any] = {"pretrained": str(spec.weights), "device": "cpu",
                                              "force_quick_gelu": spec.quick_gelu}
                    if spec.mean:
                        kwargs["image_mean"] = spec.mean
                        kwargs["image_std"] = spec.std
                    model, _, preprocess = open_clip.create_model_and_transforms(spec.arch, **kwargs)
                tokenizer = open_clip.get_tokenizer(spec.arch)
            except Exception as exc:
                from ..errors import ConfigError

                where = spec.weights or spec.arch
                raise ConfigError(f"cannot load CLIP model from {where}: {exc}") from exc
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self._torch = torch

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 RGB images -> L2-normalised embeddings, N x D, in batches of `BATCH`."""
        from PIL import Image

        torch = self._torch
        out = []
        with torch.no_grad():
            for start in range(0, len(images), BATCH):
                batch = torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(image)))
                                     for image in images[start:start + BATCH]])
                features = self.model.encode_image(batch)
                out.append(torch.nn.functional.normalize(features.float(), dim=-1).numpy())
        return np.concatenate(out)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> L2-normalised embeddings, N x D."""
        torch = self._torch
        with torch.no_grad():
            features = self.model.encode_text(self.tokenizer(list(texts)))
            return torch.nn.functional.normalize(features.float(), dim=-1).numpy()


_LOADED: dict[ClipSpec, ClipModel] = {}
_LOCK = threading.Lock()


def load_clip(spec: ClipSpec) -> ClipModel:
    """The model for `spec`, loaded once per process."""
    with _LOCK:
        if spec not in _LOADED:
            _LOADED[spec] = ClipModel(spec)
        return _LOADED[spec]


class ClipScorer(Scorer):
    """Common loading and availability of the CLIP scorers."""

    VERSION = "1"

    def __init__(self, settings: Scoring | None = None):
        super().__init__(settings)
        self._spec: ClipSpec | None = None

    @classmethod
    def availability(cls, settings: Scoring | None = None) -> Availability:
        from ..engines.base import Availability
        from ..storyboard import Scoring

        try:
            resolve_clip(configured_spec(settings or Scoring()))
        except ClipUnavailable as exc:
            return Availability(False, str(exc))
        return Availability(True)

    @property
    def spec(self) -> ClipSpec:
        if self._spec is None:
            self._spec = resolve_clip(configured_spec(self.settings))
        return self._spec

    def identity(self) -> str:
        return self.spec.identity()

    @property
    def model(self) -> ClipModel:
        return load_clip(self.spec)


def _rescale(value: float, low: float, high: float) -> float:
    return float(min(1.0, max(0.0, (value - low) / (high - low))))


class PromptScorer(ClipScorer):
    """How well the take shows its prompt: CLIP text-image cosine similarity over
    frames sampled across the take. Parts: ``similarity`` (mean cosine), ``min``
    (the weakest frame's). Value: mean similarity mapped from 0.10..0.35 to 0..1.
    """

    NAME = "prompt"
    SHAPE = "take"
    DEFAULT_WEIGHT = 1.0
    DESCRIPTION = "prompt alignment (CLIP text-image similarity)"

    def inputs_key(self, take: FrameSource, previous: FrameSource | None = None) -> str:
        return hashlib.sha1((take.prompt or "").encode()).hexdigest()[:16]

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score | None:
        if not take.prompt:
            return None
        images = self.model.encode_images(list(take.sample(PROMPT_SAMPLES)))
        text = self.model.encode_text([take.prompt])[0]
        similarity = images @ text
        mean = float(similarity.mean())
        return Score(_rescale(mean, 0.10, 0.35), {"similarity": mean, "min": float(similarity.min())})


class ReferenceScorer(ClipScorer):
    """Identity/style likeness to the shot's reference image and its style images
    (`FrameSource.style`): CLIP image cosine similarity of sampled frames to each, the
    mean over frames and images. Parts: ``similarity``, ``min`` (the least of any frame
    to any image). Value: mean similarity mapped from 0.50..0.95 to 0..1.
    """

    NAME = "reference"
    SHAPE = "take"
    DEFAULT_WEIGHT = 1.0
    DESCRIPTION = "identity/style likeness to the reference and style images (CLIP)"

    def inputs_key(self, take: FrameSource, previous: FrameSource | None = None) -> str:
        images = _reference_images(take)
        return file_stamp(images) if images else ""

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score | None:
        images = _reference_images(take)
        if not images:
            return None
        from ..media import read_image

        references = self.model.encode_images([read_image(path) for path in images])
        similarity = self.model.encode_images(list(take.sample(REFERENCE_SAMPLES))) @ references.T
        mean = float(similarity.mean())
        return Score(_rescale(mean, 0.50, 0.95), {"similarity": mean, "min": float(similarity.min())})


def _reference_images(take: FrameSource) -> list[Path]:
    """The reference image, then the style images: what `ReferenceScorer` compares with."""
    return ([take.reference] if take.reference is not None else []) + take.style


class SeamClipScorer(ClipScorer):
    """Semantic continuity across a join: CLIP image cosine similarity between the
    previous take's last frames and this take's first frames (mean embeddings).
    Parts: ``similarity``. Value: similarity mapped from 0.60..1.0 to 0..1.
    """

    NAME = "seam_clip"
    SHAPE = "seam"
    DEFAULT_WEIGHT = 1.0
    DESCRIPTION = "seam continuity (CLIP image similarity)"

    def __init__(self, settings: Scoring | None = None):
        super().__init__(settings)
        # One chosen take meets every candidate after it: embed its tail once.
        self._ends: dict[tuple[str, str], np.ndarray] = {}

    def _end(self, source: FrameSource, which: str) -> np.ndarray:
        key = (source.take_id, which)
        if key not in self._ends:
            frames = source.tail(SEAM_FRAMES) if which == "tail" else source.head(SEAM_FRAMES)
            if len(self._ends) > 256:
                self._ends.clear()
            self._ends[key] = self.model.encode_images(list(frames)).mean(axis=0)
        return self._ends[key]

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score | None:
        if previous is None:
            return None
        before = self._end(previous, "tail")
        after = self._end(take, "head")
        similarity = float(before @ after / (np.linalg.norm(before) * np.linalg.norm(after) + 1e-8))
        return Score(_rescale(similarity, 0.60, 1.0), {"similarity": similarity})
