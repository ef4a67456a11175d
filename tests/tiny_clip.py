"""Tiny random-weight scoring models, saved to disk and loaded back the way real
weights are: an open_clip model registered from a JSON config, and a torchvision
AlexNet backbone placed where LPIPS looks for it.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP = "stitchcraft-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def make_tiny_clip(folder: Path) -> dict[str, str]:
    """Writes a tiny random CLIP and registers its architecture with open_clip.

    Returns:
        ``clip_model`` values that reach it: ``file`` (ARCH:/path/weights.safetensors)
        and ``local_dir`` (local-dir:/folder with open_clip_config.json).
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{TINY_CLIP}.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config_path)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    weights = folder / "tiny-clip.safetensors"
    save_file(state, str(weights))
    local = folder / "local"
    local.mkdir(exist_ok=True)
    (local / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": TINY_CLIP_CONFIG,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711]},
    }))
    save_file(state, str(local / "open_clip_model.safetensors"))
    return {"file": f"{TINY_CLIP}:{weights}", "local_dir": f"local-dir:{local}"}


def make_alexnet_backbone(path: Path) -> Path:
    """Saves a random-weight torchvision AlexNet state dict at `path` (the file LPIPS's
    trunk loads; real weights are torchvision's alexnet-owt-7be5be79.pth)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path
