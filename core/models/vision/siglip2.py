"""`siglip2`: a local SigLIP / SigLIP2 vision tower (Hugging Face format) loaded into our ViT.

Our ViT has SigLIP's shape, so a real checkpoint becomes a `ViT` that can host in-ViT reducers (STTS)
like the randomly initialised one. `transformers` is an optional extra, imported only here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from core.config._build import fail
from core.config.data import SIGLIP_PIXEL_STATS
from core.config.vision import VisionConfig
from core.models.vision.vit import ViT
from core.registry import VISION_ENCODERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


def _transformers():
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "vision.type=siglip2 needs the optional 'hf' extra: pip install -e '.[hf]'"
        ) from exc
    return transformers


def _vision_config(hf_config):
    return getattr(hf_config, "vision_config", hf_config)


@VISION_ENCODERS.register("siglip2")
class SigLIP2Encoder(ViT):
    """A ViT shaped like the checkpoint at `vision.checkpoint`, with its weights copied in."""

    def __init__(self, cfg: VisionConfig, image_size: int) -> None:
        tf = _transformers()
        hf_cfg = _vision_config(
            tf.AutoConfig.from_pretrained(cfg.checkpoint, local_files_only=True)
        )
        hidden, layers = hf_cfg.hidden_size, hf_cfg.num_hidden_layers
        shaped = dataclasses.replace(
            cfg,
            type="vit",
            checkpoint="",
            patch_size=hf_cfg.patch_size,
            dim=hidden,
            depth=layers,
            heads=hf_cfg.num_attention_heads,
            mlp_ratio=hf_cfg.intermediate_size / hidden,
        )
        if image_size % hf_cfg.patch_size:
            raise ValueError(
                f"data.frame_size={image_size} is not a multiple of the checkpoint's patch size "
                f"{hf_cfg.patch_size}. Fix: set data.frame_size to a multiple of {hf_cfg.patch_size}."
            )
        super().__init__(shaped, image_size)
        hf_model = tf.AutoModel.from_pretrained(cfg.checkpoint, local_files_only=True)
        load_siglip_state(self, getattr(hf_model, "vision_model", hf_model).state_dict())

    @classmethod
    def check_experiment(cls, cfg: ExperimentConfig) -> None:
        v, d = cfg.vision, cfg.data
        if not v.checkpoint:
            fail(
                "vision.checkpoint",
                v.checkpoint,
                "siglip2 needs a local checkpoint directory",
                "set vision.checkpoint=/path/to/siglip2 (no downloads happen at run time)",
            )
        stats = list(SIGLIP_PIXEL_STATS)
        if list(d.pixel_mean) != stats or list(d.pixel_std) != stats:
            fail(
                "data.pixel_mean",
                d.pixel_mean,
                "a SigLIP2 checkpoint expects SigLIP's preprocessing, (x - 0.5) / 0.5",
                "set data.pixel_mean=[0.5,0.5,0.5] data.pixel_std=[0.5,0.5,0.5]",
            )


def load_siglip_state(model: ViT, sd: dict[str, torch.Tensor]) -> None:
    """Copy a SiglipVisionTransformer / Siglip2VisionTransformer state dict into `model`.

    A position grid of another size is resized as Hugging Face resizes it for that layout: SigLIP
    (and SigLIP2's fixed-resolution checkpoints, a Conv2d patch embedding) bicubically, as
    `interpolate_pos_encoding=True`; SigLIP2 NaFlex (a Linear patch embedding) bilinearly with
    antialiasing, as its `resize_positional_embeddings`."""
    sd = {k.removeprefix("vision_model."): v for k, v in sd.items()}
    p, d = model.patch_size, model.dim
    w = sd["embeddings.patch_embedding.weight"]
    naflex = w.dim() == 2
    if naflex:  # Linear over (p, p, 3)-flattened patches
        w = w.view(d, p, p, 3).permute(0, 3, 1, 2)
    pos = sd["embeddings.position_embedding.weight"]
    n = model.grid * model.grid
    if pos.shape[0] != n:
        side = int(round(pos.shape[0] ** 0.5))
        grid = pos.view(side, side, d).permute(2, 0, 1)[None]
        size = (model.grid, model.grid)
        if naflex:
            grid = F.interpolate(
                grid, size=size, mode="bilinear", align_corners=False, antialias=True
            )
        else:
            grid = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)
        pos = grid[0].permute(1, 2, 0).reshape(n, d)
    ours = {
        "patch_embed.weight": w,
        "patch_embed.bias": sd["embeddings.patch_embedding.bias"],
        "pos_embed": pos,
        "norm.weight": sd["post_layernorm.weight"],
        "norm.bias": sd["post_layernorm.bias"],
    }
    for i in range(model.depth):
        pre = f"encoder.layers.{i}."
        att = pre + "self_attn."
        for kind in ("weight", "bias"):
            ours[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(
                [sd[f"{att}{n}_proj.{kind}"] for n in ("q", "k", "v")]
            )
            ours[f"blocks.{i}.attn.proj.{kind}"] = sd[f"{att}out_proj.{kind}"]
            ours[f"blocks.{i}.norm1.{kind}"] = sd[f"{pre}layer_norm1.{kind}"]
            ours[f"blocks.{i}.norm2.{kind}"] = sd[f"{pre}layer_norm2.{kind}"]
            ours[f"blocks.{i}.fc1.{kind}"] = sd[f"{pre}mlp.fc1.{kind}"]
            ours[f"blocks.{i}.fc2.{kind}"] = sd[f"{pre}mlp.fc2.{kind}"]
    model.load_state_dict(ours, strict=True)
