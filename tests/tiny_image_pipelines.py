"""Tiny random-weight text-to-image pipelines (FLUX, SDXL) and an IP-Adapter for each,
saved the way real checkpoints are.

Each pipeline keeps the real model's compression (an 8x VAE, FLUX's 2x2 latent packing),
so the size rules the engines check are the real ones, with components of a few
thousand parameters. Everything is built offline: the CLIP tokenizers from a small
in-memory vocabulary, the T5 tokenizer as in tests/tiny_pipelines.py. The engines load
the folders back through ``AutoPipelineForText2Image.from_pretrained``, the path real
weights take.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tiny_pipelines import _TEXT_DIM, _t5_encoder, _t5_tokenizer

# The SDXL IP-Adapter's layout mirrors h94/IP-Adapter: weights and image encoder in a
# subfolder of the adapter's repository.
IP_ADAPTER_SUBFOLDER = "sdxl_models"
IP_ADAPTER_WEIGHTS = "ip-adapter_tiny.safetensors"
_CLIP_VOCAB = 64


def _clip_tokenizer() -> Any:
    """A CLIP BPE tokenizer without merges: every word is spelled letter by letter."""
    from transformers import CLIPTokenizer

    pieces = ["<|startoftext|>", "<|endoftext|>"]
    for letter in "abcdefghijklmnopqrstuvwxyz":
        pieces += [letter, letter + "</w>"]
    pieces += [".", ",", ".</w>", ",</w>"]
    assert len(pieces) <= _CLIP_VOCAB
    return CLIPTokenizer(vocab={piece: i for i, piece in enumerate(pieces)}, merges=[],
                         model_max_length=77)


def _clip_config(projection_dim: int = _TEXT_DIM) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=_TEXT_DIM,
                          intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                          vocab_size=_CLIP_VOCAB, projection_dim=projection_dim)


def _vae(latent_channels: int, **scaling: float) -> Any:
    """Four blocks: 8x spatial downsampling like the real VAEs."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=latent_channels, norm_num_groups=4, sample_size=64, **scaling)


def build_flux(folder: Path) -> Path:
    """FLUX.1-schnell-like: no guidance embedding; CLIP pooled + T5 text conditioning."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    # 4 latent channels packed 2x2 -> 16 transformer channels; rope axes sum to the head dim.
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=_TEXT_DIM, pooled_projection_dim=_TEXT_DIM,
        guidance_embeds=False, axes_dims_rope=(4, 4, 8))
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_config()).eval()
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=_vae(4, shift_factor=0.0609,
                                                              scaling_factor=1.5035),
        text_encoder=text_encoder, tokenizer=_clip_tokenizer(), text_encoder_2=_t5_encoder(),
        tokenizer_2=_t5_tokenizer(), transformer=transformer)
    pipe.save_pretrained(folder)
    return folder


def _sdxl_unet() -> Any:
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    # Cross attention sees both text encoders' states side by side; the added embedding
    # is six time ids of 8 plus the second encoder's pooled projection.
    return UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + _TEXT_DIM,
        cross_attention_dim=2 * _TEXT_DIM, norm_num_groups=4)


def build_sdxl(folder: Path) -> Path:
    """Stable Diffusion XL: a UNet conditioned on two CLIP text encoders."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_config()).eval()
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config()).eval()
    pipe = StableDiffusionXLPipeline(
        vae=_vae(4), text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=_clip_tokenizer(), tokenizer_2=_clip_tokenizer(), unet=_sdxl_unet(),
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                         beta_schedule="scaled_linear", timestep_spacing="leading"),
        image_encoder=None, feature_extractor=None)
    pipe.save_pretrained(folder)
    return folder


_IMAGE_DIM = 16


def _adapter_weight(generator: Any, *shape: int) -> Any:
    import torch

    return torch.randn(*shape, generator=generator) * 0.3


def _image_projection(generator: Any, tokens_dim: int) -> dict[str, Any]:
    """``image_proj.*``: the CLIP image embedding projected to four tokens."""
    return {"image_proj.proj.weight": _adapter_weight(generator, 4 * tokens_dim, _IMAGE_DIM),
            "image_proj.proj.bias": _adapter_weight(generator, 4 * tokens_dim),
            "image_proj.norm.weight": 1 + _adapter_weight(generator, tokens_dim),
            "image_proj.norm.bias": _adapter_weight(generator, tokens_dim)}


def _save_adapter(weights: dict[str, Any], target: Path) -> None:
    """The weights file, and a tiny CLIP image encoder in ``image_encoder`` beside it."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    target.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(target / IP_ADAPTER_WEIGHTS))
    torch.manual_seed(0)
    # The pipeline makes a feature extractor for the encoder's own image size.
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, projection_dim=_IMAGE_DIM, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, image_size=32, patch_size=8)).eval()
    encoder.save_pretrained(target / "image_encoder")


def build_sdxl_ip_adapter(folder: Path) -> Path:
    """An IP-Adapter for the tiny SDXL UNet, in the published (h94) file layout:
    ``ip_adapter.<n>.to_{k,v}_ip.weight`` for each cross-attention layer, numbered 1, 3,
    5, ... as the original checkpoints count self- and cross-attention alike."""
    import torch

    unet = _sdxl_unet()
    generator = torch.Generator().manual_seed(0)
    cross_dim = unet.config.cross_attention_dim
    weights = _image_projection(generator, cross_dim)
    cross_attention = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for index, name in enumerate(cross_attention):
        hidden = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
        for projection in ("to_k_ip", "to_v_ip"):
            weights[f"ip_adapter.{2 * index + 1}.{projection}.weight"] = _adapter_weight(
                generator, hidden, cross_dim)
    _save_adapter(weights, folder / IP_ADAPTER_SUBFOLDER)
    return folder


def build_flux_ip_adapter(folder: Path) -> Path:
    """An IP-Adapter for the tiny FLUX transformer, in the diffusers-converted (XLabs)
    layout: ``ip_adapter.<n>.to_{k,v}_ip.{weight,bias}`` for each double-stream block;
    its image encoder is named separately (``ip_adapter.image_encoder``)."""
    import torch

    generator = torch.Generator().manual_seed(1)
    weights = _image_projection(generator, _TEXT_DIM)
    inner = 2 * 16  # heads x head dim of `build_flux`'s transformer
    for block in range(1):  # its one double-stream block
        for projection in ("to_k_ip", "to_v_ip"):
            weights[f"ip_adapter.{block}.{projection}.weight"] = _adapter_weight(
                generator, inner, _TEXT_DIM)
            weights[f"ip_adapter.{block}.{projection}.bias"] = _adapter_weight(generator, inner)
    _save_adapter(weights, folder)
    return folder


# folder name -> builder
_BUILDERS = {"flux": build_flux, "sdxl": build_sdxl, "sdxl-ip-adapter": build_sdxl_ip_adapter,
             "flux-ip-adapter": build_flux_ip_adapter}


def build_tiny_image_pipelines(root: Path) -> dict[str, Path]:
    """Builds each tiny pipeline under `root` (once; later calls reuse the folders).

    Returns:
        Folder per name: ``flux`` and ``sdxl`` hold an engine's ``model``;
        ``sdxl-ip-adapter`` the ``ip_adapter.model`` of the SDXL engine (its file
        `IP_ADAPTER_WEIGHTS` in `IP_ADAPTER_SUBFOLDER`), ``flux-ip-adapter`` the FLUX
        engine's (the file at its top, the image encoder in ``image_encoder``).
    """
    root = Path(root)
    folders = {}
    for name, build in _BUILDERS.items():
        folder = root / name
        if not folder.is_dir():
            build(folder)
        folders[name] = folder
    return folders


if __name__ == "__main__":  # python tests/tiny_image_pipelines.py OUT_DIR
    import sys

    print(json.dumps({k: str(v) for k, v in build_tiny_image_pipelines(Path(sys.argv[1])).items()},
                     indent=2))
