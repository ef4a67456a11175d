"""Tiny random-weight diffusers pipelines, saved the way real checkpoints are.

Each builder makes a pipeline whose components are a few thousand parameters but keep
the real models' compression ratios (so frame-count and size rules are the real ones),
saves it with ``save_pretrained``, and the engines load it back with ``from_pretrained``,
the same path real weights take. Everything is built offline from configs.

`build_tiny_pipelines(root)` builds them all; `tiny_engine_settings(root)` gives the
storyboard ``engines:`` settings that point each diffusion engine at them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# A small Unigram vocabulary: enough pieces that prompts tokenize to different ids.
_WORDS = ("a the of and in on with at to sea beach city night day sun rain forest "
          "road car walk run slow fast camera red blue green light dark sky cloud "
          "water fire man woman dog cat bird tree house street mountain river").split()
_TEXT_DIM = 32


def _t5_tokenizer() -> Any:
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + word, -float(i) / 10 - 1) for i, word in enumerate(_WORDS)]
    vocab += [(ch, -10.0) for ch in "abcdefghijklmnopqrstuvwxyz.,"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _t5_encoder(umt5: bool = False) -> Any:
    import torch
    from transformers import T5Config, T5EncoderModel, UMT5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=len(_WORDS) + 40, d_model=_TEXT_DIM, d_kv=8, d_ff=32,
                      num_layers=1, num_heads=4, relative_attention_num_buckets=8)
    return (UMT5EncoderModel if umt5 else T5EncoderModel)(config).eval()


def _save(pipe: Any, folder: Path) -> Path:
    pipe.save_pretrained(folder)
    return folder


def build_ltx(folder: Path) -> Path:
    """LTX-Video: 32x spatial, 8x temporal VAE; loads as T2V, I2V or Condition."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=8, cross_attention_dim=16, num_layers=1, caption_channels=_TEXT_DIM)
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False, patch_size=4, patch_size_t=1, encoder_causal=True,
        decoder_causal=False)
    pipe = LTXConditionPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=_t5_encoder(),
        tokenizer=_t5_tokenizer(), transformer=transformer)
    return _save(pipe, folder)


def _wan_vae() -> Any:
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def _wan_transformer(in_channels: int) -> Any:
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
        in_channels=in_channels, out_channels=16, text_dim=_TEXT_DIM, freq_dim=32, ffn_dim=32,
        num_layers=1, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)


def build_wan_t2v(folder: Path) -> Path:
    """Wan 2.1 text-to-video."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    pipe = WanPipeline(tokenizer=_t5_tokenizer(), text_encoder=_t5_encoder(umt5=True),
                       vae=_wan_vae(), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                       transformer=_wan_transformer(16))
    return _save(pipe, folder)


def build_wan_i2v(folder: Path) -> Path:
    """Wan 2.2-style image-to-video: no CLIP image encoder, takes a first and a last frame."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    # 16 noise channels + 4 mask channels + 16 condition channels.
    pipe = WanImageToVideoPipeline(
        tokenizer=_t5_tokenizer(), text_encoder=_t5_encoder(umt5=True), vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), image_processor=None,
        image_encoder=None, transformer=_wan_transformer(36))
    return _save(pipe, folder)


def build_svd(folder: Path) -> Path:
    """Stable Video Diffusion: image-to-video, no text encoder."""
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=8, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 32), down_block_types=("CrossAttnDownBlockSpatioTemporal",
                                                       "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=16, num_attention_heads=(2, 2), addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=12, num_frames=25)
    torch.manual_seed(0)
    # Four blocks: 8x spatial downsampling like the real VAE (and much faster to run);
    # group norms of 32 groups set the channel counts.
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32, 32), layers_per_block=1, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4)
    torch.manual_seed(0)
    # SVD resizes its input to 224x224 for the image encoder.
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, projection_dim=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, image_size=224, patch_size=32))
    feature_extractor = CLIPImageProcessor(crop_size=224, size=224)
    pipe = StableVideoDiffusionPipeline(
        vae=vae, image_encoder=image_encoder, unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            prediction_type="v_prediction", timestep_spacing="leading",
            interpolation_type="linear", use_karras_sigmas=True, sigma_min=0.002,
            sigma_max=700.0, steps_offset=1, timestep_type="continuous"),
        feature_extractor=feature_extractor)
    return _save(pipe, folder)


def _cogvideox_parts(in_channels: int) -> dict[str, Any]:
    import torch
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    # Rotary positions: learned ones would fix the frame size.
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=in_channels, out_channels=4,
        time_embed_dim=8, text_embed_dim=_TEXT_DIM, num_layers=1, sample_width=8,
        sample_height=8, sample_frames=9, patch_size=2, temporal_compression_ratio=4,
        max_text_seq_length=16, use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False)
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1,
        norm_num_groups=2, temporal_compression_ratio=4)
    return {"tokenizer": _t5_tokenizer(), "text_encoder": _t5_encoder(), "vae": vae,
            "transformer": transformer, "scheduler": CogVideoXDDIMScheduler()}


def build_cogvideox_t2v(folder: Path) -> Path:
    from diffusers import CogVideoXPipeline

    return _save(CogVideoXPipeline(**_cogvideox_parts(4)), folder)


def build_cogvideox_i2v(folder: Path) -> Path:
    from diffusers import CogVideoXImageToVideoPipeline

    # Noise latents and the image latents are concatenated on channels.
    return _save(CogVideoXImageToVideoPipeline(**_cogvideox_parts(8)), folder)


# folder name -> builder
_BUILDERS = {
    "ltx-video": build_ltx,
    "wan": build_wan_t2v,
    "wan-i2v": build_wan_i2v,
    "svd": build_svd,
    "cogvideox": build_cogvideox_t2v,
    "cogvideox-i2v": build_cogvideox_i2v,
}


def build_tiny_pipelines(root: Path) -> dict[str, Path]:
    """Builds every tiny pipeline under `root` (once; later calls reuse the folders).

    Returns:
        Folder per name: the engine names ``ltx-video``, ``wan``, ``svd``, ``cogvideox``
        hold the engine's ``model``; ``wan-i2v`` and ``cogvideox-i2v`` its ``image_model``.
    """
    root = Path(root)
    folders = {}
    for name, build in _BUILDERS.items():
        folder = root / name
        if not (folder / "model_index.json").is_file():
            build(folder)
        folders[name] = folder
    return folders


def tiny_engine_settings(root: Path, **overrides: Any) -> dict[str, dict[str, Any]]:
    """The storyboard ``engines:`` mapping that runs each diffusion engine on the tiny models."""
    folders = build_tiny_pipelines(root)
    common = {"device": "cpu", "dtype": "fp32", "steps": 2, **overrides}
    return {
        "ltx-video": {"model": str(folders["ltx-video"]), **common},
        "wan": {"model": str(folders["wan"]), "image_model": str(folders["wan-i2v"]), **common},
        "svd": {"model": str(folders["svd"]), **common},
        "cogvideox": {"model": str(folders["cogvideox"]),
                      "image_model": str(folders["cogvideox-i2v"]), **common},
    }


if __name__ == "__main__":  # python tests/tiny_pipelines.py OUT_DIR
    import sys

    print(json.dumps({k: str(v) for k, v in build_tiny_pipelines(Path(sys.argv[1])).items()},
                     indent=2))
