"""The whole experiment: every section plus the checks that span sections.

`ExperimentConfig.from_dict` is how resolved configs (from Hydra, YAML or code) become validated
objects; every error names the field, the value and the fix, before any data or model is built.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from core import budget
from core.config._build import ConfigError, build, fail, flatten, to_dict
from core.config.connector import ConnectorConfig
from core.config.data import DataConfig
from core.config.fusion import FusionConfig
from core.config.language_model import LanguageModelConfig
from core.config.pruning import PruningConfig
from core.config.train import EvalConfig, LoggingConfig, TrainConfig
from core.config.vision import VisionConfig
from core.registry import CONNECTORS, FUSION_ARCHS, REDUCERS, VISION_ENCODERS
from core.results import RUNTIME_KEYS

SECTIONS = {
    "data": DataConfig,
    "vision": VisionConfig,
    "connector": ConnectorConfig,
    "lm": LanguageModelConfig,
    "fusion": FusionConfig,
    "pruning": PruningConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "logging": LoggingConfig,
}


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    lm: LanguageModelConfig = field(default_factory=LanguageModelConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self) -> None:
        self.check()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExperimentConfig:
        data = dict(data or {})
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ConfigError(
                f"{unknown[0]}: unknown config section. Fix: use one of {', '.join(SECTIONS)}."
            )
        return cls(**{name: build(sc, data.get(name), name) for name, sc in SECTIONS.items()})

    def to_dict(self) -> dict[str, Any]:
        return {name: to_dict(getattr(self, name)) for name in SECTIONS}

    def flat(self) -> dict[str, Any]:
        """Dotted keys at any depth → values (lists kept), e.g. {"pruning.scorer.aux_coef": 0.5}."""
        return flatten(self.to_dict())

    def identity_hash(self, length: int = 10) -> str:
        """Short hash of the canonical config minus runtime-only keys (the cell id)."""
        flat = {k: v for k, v in self.flat().items() if k not in RUNTIME_KEYS}
        blob = json.dumps(flat, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:length]

    # ---- derived quantities (single source: core.budget) ---------------------------------
    @property
    def grid(self) -> int:
        return budget.patch_grid(self.data.frame_size, self.vision.patch_size)

    @property
    def tokens_per_frame(self) -> int:
        return budget.tokens_per_frame(self.grid, self.connector.window)

    @property
    def effective_ratio(self) -> float:
        """The fraction of visual tokens removed before the LLM input: none for the reference
        (whatever its ratio) and for an in-LLM reducer (it drops inside the LLM)."""
        reducer = REDUCERS.get(self.pruning.method)
        if reducer.is_reference or reducer.stage == "in_llm":
            return 0.0
        return self.pruning.ratio

    def kept_tokens(self, frames: int | None = None) -> int:
        f = self.data.max_frames if frames is None else frames
        return budget.kept_tokens(
            f, self.tokens_per_frame, self.effective_ratio, self.pruning.prune_from_frame
        )

    # ---- cross-section checks -------------------------------------------------------------
    def check(self) -> None:
        d, v, c, p = self.data, self.vision, self.connector, self.pruning
        if d.frame_size % v.patch_size:
            fail(
                "data.frame_size",
                d.frame_size,
                f"is not a multiple of vision.patch_size={v.patch_size}",
                f"use data.frame_size={d.frame_size - d.frame_size % v.patch_size or v.patch_size}",
            )
        grid = self.grid
        if c.window > grid:
            fail(
                "connector.window",
                c.window,
                f"is larger than the {grid}×{grid} patch grid",
                "use a smaller window",
            )
        encoder = VISION_ENCODERS.get(v.type)
        reducer = REDUCERS.get(p.method)
        for ext in (encoder, CONNECTORS.get(c.type), FUSION_ARCHS.get(self.fusion.arch), reducer):
            ext.check_experiment(self)
        if not reducer.is_reference and reducer.stage != "in_llm":  # in-LLM: its own checks
            self._check_reducer(reducer, encoder)
        budget.check_sequence_budget(
            self.fusion.arch,
            d.max_frames,
            self.tokens_per_frame,
            self.kept_tokens(),
            d.max_text_len,
            self.lm.max_seq_len,
        )

    def _check_reducer(self, reducer: Any, encoder: Any) -> None:
        """The reducer's capability flags against the encoder, the windows and the data."""
        d, v, c, p = self.data, self.vision, self.connector, self.pruning
        grid = self.grid
        if not encoder.hosts_reducers:
            hosts = [n for n in VISION_ENCODERS.names() if VISION_ENCODERS.get(n).hosts_reducers]
            reference = [n for n in REDUCERS.names() if REDUCERS.get(n).is_reference]
            fail(
                "pruning.method",
                p.method,
                f"in-ViT reducers need a ViT with blocks; the {v.type} encoder has none",
                f"use vision.type={' or '.join(hosts)}, or pruning.method={' or '.join(reference)}",
            )
        # hard removal comes after block prune_at + delay; at least one block must run after it,
        # or the ViT saves nothing (and a soft key bias would sit in the block the LLM reads)
        delay = reducer.hard_prune_delay
        last = v.depth - 2 - delay
        if p.prune_at > last:
            fail(
                "pruning.prune_at",
                p.prune_at,
                f"leaves no ViT block after {p.method}'s hard removal (vision.depth={v.depth}; "
                f"removal follows block prune_at+{delay}, so vision.depth must be at least "
                f"prune_at+{delay + 2})",
                f"use pruning.prune_at between 0 and {last}"
                if last >= 0
                else f"use vision.depth ≥ {delay + 2}",
            )
        if reducer.needs_divisible_grid and grid % c.window:
            fail(
                "connector.window",
                c.window,
                f"does not divide the {grid}×{grid} patch grid, which {p.method} needs "
                "(its scoring unit is the connector window)",
                f"use a window that divides {grid} or another frame_size/patch_size",
            )
        if reducer.needs_ground_truth and not d.ground_truth:
            fail(
                "pruning.method",
                p.method,
                "needs per-clip ground-truth object masks, but data.ground_truth is false",
                "set data.ground_truth=true with a dataset that ships masks (the synthetic "
                "benchmark does)",
            )
        if reducer.protects_first_frame and d.max_frames > 1:
            pruned = budget.pruned_tokens(
                d.max_frames, self.tokens_per_frame, p.ratio, p.prune_from_frame
            )
            room = (d.max_frames - 1) * self.tokens_per_frame
            if pruned > room:
                fail(
                    "pruning.ratio",
                    p.ratio,
                    f"asks to prune {pruned} tokens but {p.method} keeps the first frame "
                    f"whole, leaving only {room} prunable",
                    f"use a ratio ≤ {room / (d.max_frames * self.tokens_per_frame):.3f}",
                )
