"""The video VLM: one wrapper for clips and images (an image is a one-frame clip, never pruned).

Where the configured reducer acts decides who runs it: the vision tower for in-ViT (and post-ViT)
methods, the fusion arch for in-LLM ones (`FusionModel.attach_drop`); the VLM hands the arch the
probing query of each clip, the last prompt token (`core.pruning.in_llm.probe_query`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core import budget
from core.config.experiment import ExperimentConfig
from core.models.fusion import build_fusion
from core.models.vision_tower import VisionTower
from core.models.visual_tokens import VisualTokens
from core.pruning.base import Stage
from core.pruning.in_llm import probe_query
from core.registry import REDUCERS


@dataclass
class VLMOutput:
    logits: torch.Tensor  # (B, T, V): text positions only
    loss: torch.Tensor  # lm_loss + aux losses
    lm_loss: torch.Tensor
    aux_loss: torch.Tensor
    visual: VisualTokens
    stats: dict = field(default_factory=dict)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over supervised positions (labels are already next-token targets; −100 ignored).

    A batch with no supervised token (e.g. only undecodable clips) gives 0 with a graph attached.
    """
    mask = labels != -100
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask].float(), labels[mask])


class VideoVLM(nn.Module):
    def __init__(self, cfg: ExperimentConfig, vocab_size: int) -> None:
        super().__init__()
        frames, per_frame = cfg.data.max_frames, cfg.tokens_per_frame
        budget.check_sequence_budget(
            cfg.fusion.arch,
            frames,
            per_frame,
            cfg.kept_tokens(),
            cfg.data.max_text_len,
            cfg.lm.max_seq_len,
        )
        self.cfg = cfg
        self.vision = VisionTower(cfg)
        self.fusion = build_fusion(cfg.fusion, cfg.lm, vocab_size)
        reducer = REDUCERS.get(cfg.pruning.method)
        if reducer.stage is Stage.IN_LLM and cfg.pruning.ratio > 0:
            self.fusion.attach_drop(reducer.for_experiment(cfg))
        if self.vision.num_tokens(frames) != cfg.kept_tokens():
            raise RuntimeError("vision tower and core.budget disagree on the kept-token count")

    def encode(self, batch: dict, step: int = 0) -> VisualTokens:
        pixels = batch["pixel_values"]
        if pixels.dim() == 4:  # images: (B, 3, S, S) → one-frame clips
            pixels = pixels[:, None]
        frame_mask = batch.get("frame_mask")
        if frame_mask is None:
            frame_mask = torch.ones(pixels.shape[:2], dtype=torch.bool, device=pixels.device)
        visual = self.vision(
            pixels,
            frame_mask,
            sample_keys=batch.get("sample_key"),
            object_mask=batch.get("object_mask"),
            step=step,
        )
        expected = self.vision.num_tokens(pixels.shape[1])
        if visual.num_tokens != expected:
            raise RuntimeError(f"{visual.num_tokens} visual tokens, budget says {expected}")
        return visual

    def forward(self, batch: dict, step: int = 0) -> VLMOutput:
        visual = self.encode(batch, step)
        input_ids = batch["input_ids"]
        text_mask = batch.get("text_mask")
        if text_mask is None:
            text_mask = torch.ones_like(input_ids, dtype=torch.bool)
        query = None
        if self.fusion.drop is not None:
            query = probe_query(batch.get("labels"), text_mask)
        out = self.fusion(visual, input_ids, text_mask, query=query)
        if out.visual_kept is not None:  # which visual tokens survived the in-LLM drops
            visual.diagnostics["llm_kept"] = out.visual_kept
            visual.diagnostics["llm_kept_valid"] = out.visual_kept_valid
        lm_loss = next_token_loss(out.logits, batch["labels"]) if "labels" in batch else None
        aux = out.logits.new_zeros(())
        for extra in (visual.aux_loss, out.aux_loss):
            if extra is not None:
                aux = aux + extra
        loss = aux if lm_loss is None else lm_loss + aux
        reducer_stats = {
            f"reducer/{k}": float(v)
            for k, v in visual.diagnostics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        return VLMOutput(
            out.logits,
            loss,
            lm_loss if lm_loss is not None else aux * 0,
            aux,
            visual,
            {**reducer_stats, **out.stats},
        )
