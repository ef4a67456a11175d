"""LPIPS scorers: perceptual distance across a seam and between consecutive frames.

LPIPS's small linear layers ship inside the ``lpips`` package; its AlexNet backbone
is torchvision's ``alexnet-owt-7be5be79.pth``, which is never downloaded here. It is
found at ``scoring.lpips_weights`` (or ``$STITCHCRAFT_LPIPS_WEIGHTS``): the file, or a
folder holding it; else in torch's hub cache, ``$TORCH_HOME/hub/checkpoints/``
(``~/.cache/torch/hub/checkpoints/`` by default).

LPIPS distances run from 0 (identical) to about 1; consecutive frames of smooth video
sit near 0.05-0.15 and unrelated images near 0.5-0.8.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .base import FrameSource, Score, Scorer

if TYPE_CHECKING:
    from ..engines.base import Availability
    from ..storyboard import Scoring

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
FLICKER_PAIRS = 6
SHORT_SIDE = 224


class LpipsUnavailable(Exception):
    """No AlexNet backbone on disk (or lpips not installed); the message says what to do."""


def torch_hub_checkpoints() -> Path:
    """Where torch.hub keeps downloaded checkpoints, computed without importing torch."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home) / "hub" / "checkpoints"


def find_backbone(settings: Scoring) -> Path:
    """The AlexNet backbone file LPIPS needs.

    Raises:
        LpipsUnavailable: not installed or not found; says where to put the file.
    """
    if not importlib.util.find_spec("lpips") or not importlib.util.find_spec("torchvision"):
        raise LpipsUnavailable("LPIPS scorers need lpips and torchvision: pip install "
                               "'stitchcraft[models]' (or pip install lpips torchvision)")
    configured = settings.lpips_weights or os.environ.get("STITCHCRAFT_LPIPS_WEIGHTS")
    if configured:
        path = Path(configured).expanduser()
        if path.is_dir():
            path = path / ALEXNET_FILE
        if not path.is_file():
            raise LpipsUnavailable(f"scoring.lpips_weights: {path} not found (expected torchvision's "
                                   f"{ALEXNET_FILE}, or a folder holding it)")
        return path
    default = torch_hub_checkpoints() / ALEXNET_FILE
    if not default.is_file():
        raise LpipsUnavailable(
            f"LPIPS backbone not found: put torchvision's {ALEXNET_FILE} in {default.parent} "
            f"(it is https://download.pytorch.org/models/{ALEXNET_FILE}; or run `python -c "
            f"\"import torchvision; torchvision.models.alexnet(weights='DEFAULT')\"` where there "
            "is network), or set scoring.lpips_weights to the file")
    return default


class LpipsModel:
    """LPIPS (AlexNet, v0.1) in eval mode, distances computed in batches."""

    def __init__(self, backbone: Path | None, *, allow_random: bool = False):
        import warnings

        import lpips
        import torch

        if backbone is None and not allow_random:
            raise LpipsUnavailable("no LPIPS backbone given")
        torch_cache = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
        # torchvision loads the backbone itself only from its own cache, where it would
        # otherwise download; any other file is loaded into a randomly built trunk.
        from_cache = backbone is not None and torch_cache.is_file() and backbone.resolve() == torch_cache.resolve()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=not from_cache, verbose=False)
        if backbone is not None and not from_cache:
            _load_backbone(model, backbone)
        self.model = model.eval()
        self.backbone = backbone
        self._torch = torch

    def distances(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """LPIPS distance of each pair of uint8 RGB frames (N x H x W x 3 each)."""
        torch = self._torch
        with torch.no_grad():
            a = torch.from_numpy(_prepare(first)).permute(0, 3, 1, 2) / 127.5 - 1.0
            b = torch.from_numpy(_prepare(second)).permute(0, 3, 1, 2) / 127.5 - 1.0
            return self.model(a, b).reshape(-1).numpy().astype(np.float64)


def _prepare(frames: np.ndarray) -> np.ndarray:
    import cv2

    height, width = frames.shape[1:3]
    scale = SHORT_SIDE / min(height, width)
    if scale < 1:
        size = (round(width * scale), round(height * scale))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    return np.ascontiguousarray(frames).astype(np.float32)


def _load_backbone(model, path: Path) -> None:
    """Loads torchvision AlexNet weights (``features.N.*``) into LPIPS's trunk slices."""
    import torch

    from ..errors import ConfigError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read LPIPS backbone {path}: {exc}") from exc
    trunk = model.net
    slices = {name: module for slice_ in trunk.children() for name, module in slice_.named_children()}
    loaded = 0
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] != "features" or parts[1] not in slices:
            continue
        getattr(slices[parts[1]], parts[2]).data.copy_(tensor)
        loaded += 1
    if loaded != 10:  # five convolutions, weight and bias each
        raise ConfigError(f"{path} is not torchvision AlexNet weights ({loaded} of 10 tensors matched)")


_LOADED: dict[Path, LpipsModel] = {}
_LOCK = threading.Lock()


def load_lpips(backbone: Path) -> LpipsModel:
    """The LPIPS model for `backbone`, loaded once per process."""
    with _LOCK:
        if backbone not in _LOADED:
            _LOADED[backbone] = LpipsModel(backbone)
        return _LOADED[backbone]


class LpipsScorer(Scorer):
    """Common loading and availability of the LPIPS scorers."""

    VERSION = "1"

    @classmethod
    def availability(cls, settings: Scoring | None = None) -> Availability:
        from ..engines.base import Availability
        from ..storyboard import Scoring

        try:
            find_backbone(settings or Scoring())
        except LpipsUnavailable as exc:
            return Availability(False, str(exc))
        return Availability(True)

    def identity(self) -> str:
        path = find_backbone(self.settings)
        stat = path.stat()
        return f"alex-v0.1|{path.name}:{stat.st_size}:{int(stat.st_mtime)}"

    @property
    def model(self) -> LpipsModel:
        return load_lpips(find_backbone(self.settings))


class SeamLpipsScorer(LpipsScorer):
    """Perceptual continuity across a join: LPIPS between the previous take's last two
    frames and this take's first two. Parts: ``distance`` (mean LPIPS). Value:
    1 - distance / 0.6, clamped to 0..1.
    """

    NAME = "seam_lpips"
    SHAPE = "seam"
    DEFAULT_WEIGHT = 1.0
    DESCRIPTION = "seam continuity (LPIPS distance)"

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score | None:
        if previous is None:
            return None
        tail = previous.tail(2)
        head = take.head(2)
        if tail.shape[1:3] != head.shape[1:3]:
            import cv2

            head = np.stack([cv2.resize(f, (tail.shape[2], tail.shape[1])) for f in head])
        # The last frame against the first, and the frame before against the one after.
        distance = float(self.model.distances(tail[::-1], head).mean())
        return Score(float(min(1.0, max(0.0, 1.0 - distance / 0.6))), {"distance": distance})


class FlickerScorer(LpipsScorer):
    """Perceptual flicker inside a take: LPIPS between consecutive frames at
    `FLICKER_PAIRS` places spread across it. Parts: ``mean`` and ``max`` distance.
    Value: 1 - (mean + max) / 2 / 0.4, clamped to 0..1.
    """

    NAME = "flicker"
    SHAPE = "take"
    DEFAULT_WEIGHT = 0.5
    DESCRIPTION = "temporal flicker (LPIPS between consecutive frames)"
    APPLIES_TO = frozenset({"moving"})

    def score(self, take: FrameSource, previous: FrameSource | None = None) -> Score | None:
        scanned = take.scan()
        if len(scanned) < 2:
            return None
        starts = np.unique(np.linspace(0, len(scanned) - 2, num=min(FLICKER_PAIRS, len(scanned) - 1))
                           .round().astype(int))
        distances = self.model.distances(scanned[starts], scanned[starts + 1])
        mean, peak = float(distances.mean()), float(distances.max())
        return Score(float(min(1.0, max(0.0, 1.0 - (mean + peak) / 2 / 0.4))), {"mean": mean, "max": peak})
