"""The contract every fusion arch implements: visual tokens + text → text logits.

`FusionModel.forward(visual, input_ids, text_mask, query=None)` returns logits for TEXT positions
only; labels are next-token labels built by the data side, so archs never shift. Parameters fall
into named groups ("lm", "vision_adapters", "router") that partition the module's parameters, so
training can log or freeze them by name.

In-LLM drops (core.pruning.in_llm): an attached reducer (`attach_drop`) plans drops between
layers; each arch runs them with a `DropRun`, which hands the ranking layer an `AttentionProbe`
for the probing query (`query`: its text position) and, right after that layer, cuts the visual
tokens to the kept ones. Residual archs drop the visual POSITIONS (hidden states, RoPE positions,
masks, routing), so the remaining layers run on a shorter sequence; `cross_attention` prunes the
visual K/V its later cross-attention blocks read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from core.budget import residual_visual_tokens
from core.extensions import Display, Extension, TokenFlow
from core.models.attention import AttentionProbe, Rope, RotaryEmbedding, causal_with_key_padding
from core.models.language_model import DecoderBlock, DecoderLM
from core.pruning.in_llm import DropPlan, InLLMReducer, probe_query, within_clip_budget

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig
    from core.config.fusion import FusionConfig
    from core.config.language_model import LanguageModelConfig
    from core.models.visual_tokens import VisualTokens

PARAMETER_GROUPS = ("lm", "vision_adapters", "router")
MODALITIES = ("visual", "text")  # the token groups of archs with per-modality parameters


@dataclass
class FusionOutput:
    """Text logits (B, T, V), an optional scalar auxiliary loss, float diagnostics, and after
    in-LLM drops the original indices (B, K′) of the visual tokens the last layer still saw with
    their validity (a short clip's own budget leaves filler among them)."""

    logits: torch.Tensor
    aux_loss: torch.Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)
    visual_kept: torch.Tensor | None = None
    visual_kept_valid: torch.Tensor | None = None


class FusionModel(Extension, nn.Module):
    """Base class: input checks, residual-token accounting and parameter groups.

    A registered arch declares `display`, `residual_visual` (whether its visual tokens occupy the
    LM residual stream, and so the sequence budget), `flops(cfg, flow)` and optionally `Config`.
    """

    arch: ClassVar[str]
    display: ClassVar[Display]
    residual_visual: ClassVar[bool]

    def __init__(self, fusion: FusionConfig, lm: LanguageModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.fusion_cfg = fusion
        self.options = fusion.options  # this arch's own settings (fusion.<arch>.*)
        self.lm_cfg = lm
        self.vocab_size = vocab_size
        self.drop: InLLMReducer | None = None  # an in-LLM reducer (`attach_drop`)

    # ---- in-LLM drops ------------------------------------------------------------------------
    def attach_drop(self, reducer: InLLMReducer) -> None:
        """Run `reducer`'s drops inside this arch's layers (it holds no parameters)."""
        for step in reducer.plan(2).steps:  # the layers do not depend on the clip length
            if self.probe_layer(self.fusion_cfg, self.lm_cfg.n_layers, step.layer) is None:
                raise ValueError(
                    f"fusion.arch={self.arch} cannot rank a drop before LLM layer {step.layer}"
                )
        self.drop = reducer

    @classmethod
    def probe_layer(cls, fusion: FusionConfig, n_layers: int, drop_layer: int) -> int | None:
        """The layer whose attention ranks the visual tokens for a drop before `drop_layer`: in a
        residual arch the layer right before it."""
        return drop_layer - 1 if drop_layer >= 1 else None

    @classmethod
    def probe_keys(cls, cfg: ExperimentConfig, flow: TokenFlow, layer: int) -> int:
        """Keys of the probing query's row in `layer`: that layer's visual tokens and the text."""
        return flow.llm_visual[layer] + flow.text_len

    @classmethod
    def drop_refusal(cls, cfg: ExperimentConfig, drop_layer: int) -> tuple[str, str] | None:
        """(problem, fix) when a drop before `drop_layer` makes no sense in this arch, else None."""
        return None

    def num_residual_visual_tokens(self, k: int) -> int:
        """Visual tokens this arch puts in the LM residual stream for K kept tokens."""
        return residual_visual_tokens(self.arch, k)

    def parameter_group(self, name: str) -> str:
        """Group of the parameter called `name`; archs override for their special parameters."""
        return "lm"

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """All parameters, each in exactly one of PARAMETER_GROUPS (some groups may be empty)."""
        groups: dict[str, list[nn.Parameter]] = {g: [] for g in PARAMETER_GROUPS}
        for name, p in self.named_parameters():
            groups[self.parameter_group(name)].append(p)
        return groups

    def decoder_key_targets(self, key: str) -> list[str]:
        """Names of this model's parameters that DecoderLM parameter `key` initialises."""
        return [key]

    def load_text_decoder(self, state: dict[str, torch.Tensor]) -> None:
        """Warm-start from a DecoderLM state dict (e.g. a mapped Qwen3 checkpoint).

        Every "lm"-group parameter must be covered; arch-specific parameters that have no text
        counterpart (cross-attention blocks, routers) keep their initialisation.
        """
        mapped = {t: v for key, v in state.items() for t in self.decoder_key_targets(key)}
        missing, unexpected = self.load_state_dict(mapped, strict=False)
        missing = [m for m in missing if self.parameter_group(m) == "lm"]
        if missing or unexpected:
            raise ValueError(
                f"text decoder weights do not fit fusion.arch={self.arch}: missing "
                f"{missing[:5]}, unexpected {unexpected[:5]}. Fix: check that lm.* "
                "matches the checkpoint."
            )

    def forward(
        self,
        visual: VisualTokens,
        input_ids: torch.Tensor,
        text_mask: torch.Tensor,
        query: torch.Tensor | None = None,
    ) -> FusionOutput:
        """Logits for the text positions of `input_ids` (B, T) after `visual`; `query` (B,) is the
        text position that probes in-LLM drops (default: `probe_query`). Checks the inputs, then
        runs the arch's `fuse` with this forward's `DropRun`."""
        self.check_inputs(visual, input_ids, text_mask)
        run = DropRun(self, visual, text_mask, query, residual=self.residual_visual)
        return self.fuse(visual, input_ids, text_mask, run)

    def fuse(
        self, visual: VisualTokens, input_ids: torch.Tensor, text_mask: torch.Tensor, run: DropRun
    ) -> FusionOutput:
        """The arch's forward on checked inputs; subclasses override."""
        raise TypeError(f"{type(self).__name__} does not define fuse()")

    def check_inputs(
        self, visual: VisualTokens, input_ids: torch.Tensor, text_mask: torch.Tensor
    ) -> None:
        """Shape/dtype checks that need no host sync; raise with the offending field named."""
        if input_ids.dim() != 2 or input_ids.dtype != torch.long:
            raise ValueError(
                f"input_ids must be a (B, T) long tensor, got {input_ids.dtype} "
                f"{tuple(input_ids.shape)}"
            )
        if text_mask.shape != input_ids.shape or text_mask.dtype != torch.bool:
            raise ValueError(
                f"text_mask must be a bool tensor shaped like input_ids "
                f"{tuple(input_ids.shape)}, got {text_mask.dtype} "
                f"{tuple(text_mask.shape)}"
            )
        b, k, d = visual.features.shape
        if b != input_ids.shape[0]:
            raise ValueError(f"visual batch {b} != text batch {input_ids.shape[0]}")
        if d != self.lm_cfg.dim:
            raise ValueError(
                f"visual.features dim {d} != lm.dim={self.lm_cfg.dim}. Fix: the "
                "connector must project to lm.dim."
            )
        total = self.num_residual_visual_tokens(k) + input_ids.shape[1]
        if total > self.lm_cfg.max_seq_len:
            raise ValueError(
                f"fusion.arch={self.arch}: {self.num_residual_visual_tokens(k)} residual visual "
                f"tokens + {input_ids.shape[1]} text tokens = {total} > lm.max_seq_len="
                f"{self.lm_cfg.max_seq_len}. Fix: raise lm.max_seq_len or keep fewer tokens."
            )


def residual_decoder_flops(cfg: ExperimentConfig, flow: TokenFlow) -> int:
    """Layer l is a DecoderBlock on its visual tokens plus the text (`DecoderBlock.flops`); the LM
    head runs on the text positions."""
    lm, t = cfg.lm, flow.text_len
    layers = sum(DecoderBlock.flops(lm, visual + t) for visual in flow.llm_visual)
    return layers + DecoderLM.head_flops(lm, t, flow.vocab)


def prefix_key_valid(valid: torch.Tensor, text_len: int) -> torch.Tensor:
    """(B, K+T) key validity for a [visual | text] residual: the visual tokens' `valid` (B, K),
    then all text True.

    Text padding is right padding: under causality no real text query sees it, so it stays valid.
    """
    ones = torch.ones(valid.shape[0], text_len, dtype=torch.bool, device=valid.device)
    return torch.cat((valid, ones), dim=1)


def prefix_attention_mask(valid: torch.Tensor, text_len: int) -> torch.Tensor | None:
    """Causal + key-padding mask for [visual | text] given the visual `valid` (B, K), or None
    (is_causal fast path) when every visual token is valid. The all-valid check is one host sync
    per call (once per forward, and once more after each in-LLM drop)."""
    if bool(valid.all()):
        return None
    return causal_with_key_padding(prefix_key_valid(valid, text_len))


class DropRun:
    """One forward's in-LLM drops for a batch: the probes to request and what survives.

    `index` (B, K′) holds the original visual index of each surviving token, `valid` its
    validity. A residual arch calls `probe(i)` before layer i and `cut(i, probe)` after it; when
    layer i ranks a drop, `cut` returns the (B, keep) selection among the current visual tokens
    (apply it with `take_prefix` / `take`) and updates positions and masks.
    """

    def __init__(
        self,
        model: FusionModel,
        visual: VisualTokens,
        text_mask: torch.Tensor,
        query: torch.Tensor | None,
        residual: bool = True,
    ) -> None:
        self.drop = model.drop
        self.tokens = visual.num_tokens
        plan = self.drop.plan(visual.num_frames) if self.drop is not None else DropPlan(self.tokens)
        if plan.tokens != self.tokens:
            raise RuntimeError(
                f"the in-LLM plan expects {plan.tokens} visual tokens, the batch has {self.tokens}"
            )
        fusion, n_layers = model.fusion_cfg, model.lm_cfg.n_layers
        self.steps = {model.probe_layer(fusion, n_layers, s.layer): s for s in plan.steps}
        self.residual = residual
        self.text_len = text_mask.shape[1]
        self.query = probe_query(None, text_mask) if query is None else query.to(text_mask.device)
        b = visual.valid.shape[0]
        self.index = torch.arange(self.tokens, device=visual.valid.device).expand(b, -1)
        self.valid = visual.valid
        self.limits = {}  # layer → (B,) valid survivors of each clip's own plan
        if self.drop is not None and visual.real_frames is not None:
            self.limits = {
                model.probe_layer(fusion, n_layers, layer): counts
                for layer, counts in self.drop.clip_limits(
                    visual.real_frames, visual.num_frames
                ).items()
            }
        self.device = visual.features.device  # the hidden states' (a mask may live elsewhere)
        self.renumbered = False  # positions renumbered 0..S′−1 after a drop (keeps_positions off)

    @property
    def n_visual(self) -> int:
        return self.valid.shape[1]

    @property
    def dropped(self) -> bool:
        return self.n_visual < self.tokens

    def probe(self, layer: int) -> AttentionProbe | None:
        """The probe for `layer` when it ranks a drop, else None."""
        if layer not in self.steps:
            return None
        if not self.residual:  # cross-attention: text queries over the visual keys
            return AttentionProbe(self.query, self.valid, causal=False)
        key_valid = prefix_key_valid(self.valid, self.text_len)
        return AttentionProbe(self.n_visual + self.query, key_valid, causal=True)

    def cut(self, layer: int, probe: AttentionProbe | None) -> torch.Tensor | None:
        """After `layer`: the (B, keep) kept visual tokens (current indices), or None."""
        step = self.steps.get(layer)
        if step is None:
            return None
        if probe is None or probe.row is None:
            raise RuntimeError(f"layer {layer} ranks a drop but its probe recorded no row")
        row = probe.row[:, : self.n_visual]
        sel = self.drop.rank(row, self.valid, step.keep)
        valid = self.valid.gather(1, sel)
        if layer in self.limits:  # a short clip keeps only its own plan's count valid
            valid = valid & within_clip_budget(row, self.valid, sel, self.limits[layer])
        self.index = self.index.gather(1, sel)
        self.valid = valid
        self.renumbered = self.renumbered or not self.drop.keeps_positions
        return sel

    def positions(self) -> torch.Tensor:
        """RoPE position ids of [visual | text]: (S,) while contiguous, else (B, S) with the
        survivors' original positions."""
        if not self.dropped or self.renumbered:
            return torch.arange(self.n_visual + self.text_len, device=self.device)
        text = self.tokens + torch.arange(self.text_len, device=self.index.device)
        return torch.cat((self.index, text.expand(self.index.shape[0], -1)), dim=1).to(self.device)

    def rope(self, rotary: RotaryEmbedding) -> Rope:
        return rotary(self.positions())

    def mask(self) -> torch.Tensor | None:
        return prefix_attention_mask(self.valid, self.text_len)

    def kept(self) -> dict[str, torch.Tensor | None]:
        """FusionOutput's `visual_kept` (the survivors' original visual indices (B, K′)) and
        `visual_kept_valid`, once something was dropped."""
        if not self.dropped:
            return {"visual_kept": None, "visual_kept_valid": None}
        return {"visual_kept": self.index, "visual_kept_valid": self.valid}


def take(x: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """x (B, K, ...) → (B, keep, ...) at the selected (B, keep) indices."""
    idx = sel.view(*sel.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return x.gather(1, idx)


def take_prefix(x: torch.Tensor, sel: torch.Tensor, n_visual: int) -> torch.Tensor:
    """x (B, K+T, ...) [visual | text] → (B, keep+T, ...): the selected visual prefix, the text."""
    return torch.cat((take(x[:, :n_visual], sel), x[:, n_visual:]), dim=1)


def split_rope(rope: Rope, k: int) -> tuple[Rope, Rope]:
    """Rope tables over [visual | text] ((S, d) or (B, 1, S, d)) → the visual and text parts."""
    cos, sin = rope
    return (cos[..., :k, :], sin[..., :k, :]), (cos[..., k:, :], sin[..., k:, :])
